"""Shared fixtures: real SQLite files in temp folders, a real PostgreSQL, the real bundled model.

A test that asks for `store_kind` (or a fixture built on it: `kb_db`, `new_kb_db`,
`sample_kb_db`, `sample_index`) runs once per store named in KB_TEST_STORES
(default "sqlite,postgresql"), with ids `[sqlite]` and `[postgresql]`. A test
about SQLite itself is marked `@pytest.mark.sqlite_only("why")` and runs on
SQLite alone.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from waitress.server import BaseWSGIServer
from waitress.wasyncore import close_all

from bot.embeddings import LocalEmbedder
from bot.indexer import index_folder
from bot.settings import ENV_NAMES, Settings, load_settings
from bot.store import Store, open_store
from bot.store.sqlite.store import SqliteStore
from bot.store.sqlite.store import vec_table as sqlite_vec_table
from tests.pg_server import (  # noqa: F401  (fixtures for every test)
    create_database,
    postgres_databases_fixture,
    postgres_server_fixture,
    postgres_url_fixture,
)

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"
DATA = Path(__file__).resolve().parent / "data"
SHARED_EVAL = ROOT.parent / "shared" / "eval"

STORE_KINDS = ("sqlite", "postgresql")


def stores_to_test() -> tuple[str, ...]:
    """The stores KB_TEST_STORES names (comma-separated), both by default."""
    raw = os.environ.get("KB_TEST_STORES", ",".join(STORE_KINDS))
    kinds = tuple(kind.strip() for kind in raw.split(",") if kind.strip())
    if not kinds or set(kinds) - set(STORE_KINDS):
        raise pytest.UsageError(f"KB_TEST_STORES={raw!r}: name one or more of {', '.join(STORE_KINDS)}")
    return kinds


TEST_STORES = stores_to_test()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): a test about SQLite itself, run on the SQLite store only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses a store once per store under test (SQLite alone if marked `sqlite_only`)."""
    if "store_kind" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("sqlite_only")
    if marker is not None and not (marker.args and marker.args[0]):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: @pytest.mark.sqlite_only needs the reason")
    if marker is None:
        metafunc.parametrize("store_kind", TEST_STORES)
    elif "sqlite" in TEST_STORES:
        metafunc.parametrize("store_kind", ["sqlite"])
    else:
        skip = pytest.mark.skip(reason=f"SQLite only ({marker.args[0]}), and KB_TEST_STORES leaves SQLite out")
        metafunc.parametrize("store_kind", [pytest.param("sqlite", marks=skip)])


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's KB_*, EMBED_*, OPENAI_*, SLACK_*, DUP_* variables."""
    for name in list(os.environ):
        if name in ENV_NAMES or name.startswith(("KB_", "SLACK_", "DUP_", "EMBED_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The real bundled model, loaded once per test session."""
    return LocalEmbedder.bundled()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values = {"db_path": tmp_path / "kb.sqlite3", "knowledge_dir": KNOWLEDGE}
    values.update(overrides)
    return load_settings(environ={}, env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def knowledge_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample knowledge folder."""
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Path:
    """A database indexing the sample knowledge folder, built once. Copy before writing."""
    folder = tmp_path_factory.mktemp("sample")
    settings = make_settings(folder)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
    return settings.db_path


@pytest.fixture
def sample_store(sample_db: Path) -> Iterator[Store]:
    """A read-only use of the shared sample index."""
    with open_store(sample_db) as store:
        yield store


@pytest.fixture
def sample_store_copy(sample_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the sample index, for a test that writes (questions, votes, messages)."""
    copy = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, copy)
    with open_store(copy) as store:
        yield store


@pytest.fixture
def new_kb_db(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], Path | str]:
    """Make the location of another new, empty store of this test's kind, as KB_DB names it: a file, or a database URL."""
    if store_kind == "postgresql":
        return request.getfixturevalue("postgres_databases")
    numbers = itertools.count(1)

    def new_file() -> Path:
        folder = tmp_path / f"store-{next(numbers)}"
        folder.mkdir()
        return folder / "kb.sqlite3"

    return new_file


@pytest.fixture
def kb_db(new_kb_db: Callable[[], Path | str]) -> Path | str:
    """The location of a new, empty store of this test's kind (for KB_DB, `--db`, `open_store`)."""
    return new_kb_db()


SAMPLE_TEMPLATE = "kb_sample"


@pytest.fixture(scope="session")
def postgres_sample(postgres_server: str, sample_db: Path) -> str:
    """The database name of the sample index on PostgreSQL, built once: the template of every test's copy.

    Filled by `kb-bot store copy`'s code from the SQLite sample (the same documents, chunks and vectors,
    checked), then left closed: PostgreSQL copies a template only while nobody is connected to it.
    """
    from bot.store.postgres.connection import close_pools
    from bot.store.postgres.copy import copy_store

    url = create_database(postgres_server, SAMPLE_TEMPLATE)
    with open_store(sample_db) as source, open_store(url) as target:
        copy_store(source, target)
    close_pools()
    return SAMPLE_TEMPLATE


@pytest.fixture(scope="session")
def postgres_shared_sample(postgres_server: str, postgres_sample: str) -> str:
    """The URL of a copy of the sample index on PostgreSQL that tests only read, made once."""
    return create_database(postgres_server, f"{postgres_sample}_shared", template=postgres_sample)


@pytest.fixture
def sample_kb_db(store_kind: str, new_kb_db: Callable[..., Path | str], request: pytest.FixtureRequest) -> Path | str:
    """The location of a private copy of the sample index on this test's store, for a test that writes."""
    if store_kind == "postgresql":
        return new_kb_db(template=request.getfixturevalue("postgres_sample"))
    sample, target = request.getfixturevalue("sample_db"), new_kb_db()
    for suffix in ("", "-wal"):
        if Path(f"{sample}{suffix}").exists():
            shutil.copy(f"{sample}{suffix}", f"{target}{suffix}")
    return target


@pytest.fixture
def sample_index(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    """A read-only use of the shared sample index on this test's store."""
    shared = request.getfixturevalue("sample_db" if store_kind == "sqlite" else "postgres_shared_sample")
    with open_store(shared) as store:
        yield store


def sql(store: Store, query: str, *params: object) -> list[tuple]:
    """The rows of `query` with `?` placeholders, on either store (PostgreSQL's driver spells them %s)."""
    if not isinstance(store, SqliteStore):
        query = query.replace("?", "%s")
    return [tuple(row) for row in store.conn.execute(query, params).fetchall()]


def table_names(store: Store) -> set[str]:
    """The tables in the store's database."""
    if isinstance(store, SqliteStore):
        return {name for (name,) in sql(store, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    return {name for (name,) in sql(store, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def vector_table(store: Store, generation_id: int) -> str:
    """The table holding a generation's vectors, in either store."""
    from bot.store.postgres.store import vec_table as postgres_vec_table

    return (sqlite_vec_table if isinstance(store, SqliteStore) else postgres_vec_table)(generation_id)


def stop_http_server(server: BaseWSGIServer, thread: threading.Thread) -> None:
    """Stop a waitress server serving on `thread`: its sockets are closed from that thread itself.

    asyncore is not thread-safe: closing them from here makes the serving loop's
    select() fail with EBADF. If the trigger pipe is already gone, the loop is ending.
    """
    try:
        server.trigger.pull_trigger(lambda: close_all(server._map))
    except OSError:
        close_all(server._map)
    thread.join()
    server.task_dispatcher.shutdown()
