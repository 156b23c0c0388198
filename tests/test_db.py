"""db.connect on real SQLite files: sqlite-vec loaded, WAL, the driver choice, transactions."""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import sqlite_vec

from bot.db import connect, sqlite_module, transaction
from bot.errors import DatabaseError


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
