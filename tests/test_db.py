"""db.connect on real SQLite files: sqlite-vec loaded, WAL, the driver choice, transactions."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import sqlite_vec
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import DatabaseError
from bot.lock import index_lock, lock_path
from bot.store import open_store
from bot.store.sqlite.db import connect, sqlite_module, transaction
from bot.store.sqlite.migrations import MIGRATIONS, migrate
from bot.store.sqlite.store import SqliteStore

# Set by .ci/run to the module each of its test runs must use: sqlean or sqlite3.
CI_EXPECTED_SQLITE = "CI_EXPECTED_SQLITE_MODULE"


def _can_load_extensions(module: ModuleType) -> bool:
    probe = module.connect(":memory:")
    try:
        if not hasattr(probe, "enable_load_extension"):
            return False
        try:
            probe.enable_load_extension(True)
        except module.DatabaseError:
            return False
        return True
    finally:
        probe.close()


def _module(name: str) -> ModuleType:
    try:
        module = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed")
    if not _can_load_extensions(module):
        pytest.skip(f"{name} (SQLite {module.sqlite_version}) was built without extension loading")
    return module


@pytest.fixture(params=["sqlite3", "sqlean"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return _module(request.param)


def test_sqlite_module_prefers_stdlib_when_it_can_load_extensions() -> None:
    expected = sqlite3 if _can_load_extensions(sqlite3) else importlib.import_module("sqlean")
    assert sqlite_module() is expected
    assert _can_load_extensions(sqlite_module())


def test_connect_loads_sqlite_vec_with_each_capable_module(module: ModuleType, tmp_path: Path) -> None:
    conn = connect(tmp_path / "kb.sqlite3", module=module)
    try:
        assert isinstance(conn, module.Connection)
        (version,) = conn.execute("select vec_version()").fetchone()
        assert version == f"v{sqlite_vec.__version__}"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        # sqlite-vec works, not just loads: a cosine KNN query over a vec0 table.
        conn.execute("CREATE VIRTUAL TABLE v USING vec0(id INTEGER PRIMARY KEY, e float[3] distance_metric=cosine)")
        for i, vec in enumerate([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0]], start=1):
            conn.execute("INSERT INTO v (id, e) VALUES (?, ?)", (i, np.asarray(vec, dtype=np.float32).tobytes()))
        rows = conn.execute(
            "SELECT id FROM v WHERE e MATCH ? AND k = 2 ORDER BY distance",
            (np.asarray([1, 0, 0], dtype=np.float32).tobytes(),),
        ).fetchall()
        assert [r[0] for r in rows] == [1, 3]
        # extensions are switched off again after sqlite-vec is in
        with pytest.raises(module.OperationalError, match="not authorized"):
            conn.execute("select load_extension('/nonexistent/ext')")
    finally:
        conn.close()


def test_connect_default_module(tmp_path: Path) -> None:
    conn = connect(tmp_path / "sub" / "dir" / "kb.sqlite3")  # parent folders are created
    try:
        assert isinstance(conn, sqlite_module().Connection)
        assert conn.execute("select vec_version()").fetchone()[0].startswith("v")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert not conn.in_transaction
        row = conn.execute("select 1 as one").fetchone()
        assert row["one"] == 1  # Row factory: columns by name
    finally:
        conn.close()
    assert (tmp_path / "sub" / "dir" / "kb.sqlite3").is_file()


def test_connect_memory() -> None:
    conn = connect(":memory:")
    try:
        assert conn.execute("select vec_version()").fetchone()[0].startswith("v")
    finally:
        conn.close()


def test_wal_is_persistent_for_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite3"
    connect(path).close()
    plain = sqlite3.connect(path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_connect_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_bytes(b"this is a text file, not SQLite " * 100)
    with pytest.raises(DatabaseError, match="notes.sqlite3"):
        connect(path)


# --- transactions ---------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path):
    path = tmp_path / "tx.sqlite3"
    conn = connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    yield conn, path
    conn.close()


def committed(path: Path) -> list[int]:
    """What another connection sees: only committed rows."""
    other = connect(path)
    try:
        return [r[0] for r in other.execute("SELECT x FROM t ORDER BY x")]
    finally:
        other.close()


def test_transaction_commits(db) -> None:
    conn, path = db
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.in_transaction
        assert committed(path) == []  # not visible before commit
    assert not conn.in_transaction
    assert committed(path) == [1]


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt, SystemExit])
def test_transaction_rolls_back_on_any_exception(db, exc_type: type[BaseException]) -> None:
    conn, path = db
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(exc_type), transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise exc_type()
    assert not conn.in_transaction
    assert committed(path) == [1]
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [1]


def test_nested_failure_rolls_back_only_the_savepoint(db) -> None:
    conn, path = db
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(RuntimeError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("inner")
        assert conn.in_transaction  # the outer transaction goes on
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (3)")
        conn.execute("INSERT INTO t VALUES (4)")
    assert committed(path) == [1, 3, 4]


def test_outer_failure_rolls_back_committed_savepoints(db) -> None:
    conn, path = db
    with pytest.raises(KeyboardInterrupt), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
        raise KeyboardInterrupt
    assert not conn.in_transaction
    assert committed(path) == []


def test_doubly_nested_savepoints(db) -> None:
    conn, path = db
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            with pytest.raises(KeyboardInterrupt), transaction(conn):
                conn.execute("INSERT INTO t VALUES (3)")
                raise KeyboardInterrupt
            conn.execute("INSERT INTO t VALUES (4)")
    assert committed(path) == [1, 2, 4]


def test_transaction_usable_after_rollback(db) -> None:
    conn, path = db
    for _ in range(3):
        with pytest.raises(ValueError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (9)")
            raise ValueError
    with transaction(conn):
        conn.execute("INSERT INTO t VALUES (5)")
    assert committed(path) == [5]


def test_a_commit_that_fails_rolls_back_and_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A COMMIT refused (a deferred foreign key still broken) must not leave the connection in a transaction.

    Otherwise the next `transaction()` silently becomes a savepoint inside the
    failed one, and nothing written afterwards is ever committed.
    """
    path = tmp_path / "fk.sqlite3"
    conn = connect(path)
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE t (x INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    try:
        with pytest.raises(sqlite_module().IntegrityError), transaction(conn):
            conn.execute("INSERT INTO t VALUES (7)")  # no parent 7: refused only at COMMIT
        assert not conn.in_transaction
        conn.execute("INSERT INTO parent VALUES (1)")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        assert committed(path) == [1]
    finally:
        conn.close()


def test_a_busy_commit_rolls_back_and_the_next_transaction_commits(tmp_path: Path) -> None:
    """SQLITE_BUSY at COMMIT (a reader holds the file in rollback-journal mode) ends the transaction."""
    path = tmp_path / "busy.sqlite3"
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")  # a reader then blocks a writer's COMMIT
    conn.execute("PRAGMA busy_timeout=50")
    conn.execute("CREATE TABLE t (x INTEGER)")
    reader = sqlite_module().connect(str(path), isolation_level=None)  # not connect(): it turns WAL on
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()  # holds a shared lock
        with pytest.raises(sqlite_module().OperationalError, match="locked"), transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        assert not conn.in_transaction
        reader.execute("COMMIT")
        with transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
        assert committed(path) == [2]
    finally:
        reader.close()
        conn.close()


def test_a_savepoint_whose_transaction_is_gone_reraises_the_block_error(db) -> None:
    """When SQLite already rolled the whole transaction back, `ROLLBACK TO` is skipped, not failed."""
    conn, path = db
    with pytest.raises(ValueError, match="the block's own"), transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
        with transaction(conn):
            conn.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL or an I/O error
            raise ValueError("the block's own error")
    assert not conn.in_transaction
    assert committed(path) == []


def test_store_atomic_is_one_transaction(tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        with pytest.raises(RuntimeError), store.atomic() as conn:
            conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            raise RuntimeError
        assert not store.conn.in_transaction
        assert store.conn.execute("SELECT count(*) FROM meta").fetchone()[0] == 0


# --- every SQLite sqlite-vec supports, and which one is in use ---------------------


def test_a_new_database_records_each_migration_with_its_time(tmp_path: Path) -> None:
    # unixepoch('subsec') is NULL before SQLite 3.42 (Debian 12's python3.11 has 3.40.1):
    # creating a database failed there with "NOT NULL constraint failed: _migrations.applied_at".
    before = time.time()
    with open_store(tmp_path / "kb.sqlite3") as store:
        rows = store.conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()
    assert [name for name, _ in rows] == [m.__name__ for m in MIGRATIONS]
    assert all(before - 1 <= applied_at <= time.time() + 1 for _, applied_at in rows)


def test_migrate_stops_before_the_named_migration_and_the_next_open_finishes(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with SqliteStore(path, stop_before=MIGRATIONS[2].__name__) as old:
        assert [name for name, in old.conn.execute("SELECT name FROM _migrations ORDER BY name")] == [
            m.__name__ for m in MIGRATIONS[:2]]
        with pytest.raises(ValueError, match="no migration named m999"):
            migrate(old.conn, stop_before="m999")
    with open_store(path) as store:
        assert len(store.conn.execute("SELECT name FROM _migrations").fetchall()) == len(MIGRATIONS)


def test_stats_names_the_sqlite_in_use(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "stats", "--db", str(tmp_path / "kb.sqlite3"), "--json"])
    assert result.exit_code == 0, result.output
    module = sqlite_module()
    assert json.loads(result.output)["sqlite"] == f"{module.__name__} (SQLite {module.sqlite_version})"


def test_the_sqlite_path_ci_expects_is_in_use() -> None:
    # .ci/run runs the suite twice and says which connection path each run must take,
    # so CI proves both the sqlean.py fallback and the stdlib sqlite3 path ran.
    expected = os.environ.get(CI_EXPECTED_SQLITE)
    if not expected:
        pytest.skip(f"{CI_EXPECTED_SQLITE} is not set (only .ci/run sets it)")
    assert sqlite_module().__name__ == expected


# --- file permissions -------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever kb-bot creates must be private anyway."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_shm_lock_and_new_folder_are_private_whatever_the_umask(tmp_path: Path, open_umask) -> None:
    db = tmp_path / "new" / "data" / "kb.sqlite3"
    with open_store(db) as store:
        with transaction(store.conn):
            store.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        with index_lock(db):
            assert _mode(lock_path(db)) == 0o600
        assert {p.name: _mode(p) for p in db.parent.iterdir()} == {
            "kb.sqlite3": 0o600, "kb.sqlite3-wal": 0o600, "kb.sqlite3-shm": 0o600, "kb.sqlite3.index.lock": 0o600,
        }
    assert _mode(tmp_path / "new") == _mode(db.parent) == 0o700


def test_an_existing_database_readable_by_others_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "kb.sqlite3"
    open_store(db).close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    os.chmod(db, 0o644)
    with caplog.at_level(logging.WARNING, logger="bot.store.sqlite.db"):
        open_store(db).close()
        open_store(db).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "readable by other users" in warnings[0] and "chmod 600" in warnings[0]
    assert _mode(db) == 0o644  # warned, not changed behind the operator's back
