"""Open SQLite connections that can load sqlite-vec, on every Python build.

Many Python builds (this project's CI machine, python.org and Homebrew builds on
macOS) compile `sqlite3` without `enable_load_extension`, so sqlite-vec cannot
be loaded through the standard library. We detect that once and fall back to
`sqlean.py`: a drop-in DB-API module bundling a recent SQLite (with FTS5) that
allows extensions, with wheels for Linux x86_64/aarch64, macOS (Intel and Apple
silicon) and Windows. `pysqlite3-binary` ships Linux x86_64 wheels only and
`apsw` has a different API, so sqlean.py is the portable choice.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeAlias

import sqlite_vec

from bot.errors import DatabaseError

if TYPE_CHECKING:
    import sqlean

log = logging.getLogger(__name__)
_savepoint_ids = itertools.count(1)

# Whichever driver `sqlite_module()` picked: both have the same DB-API surface.
Connection: TypeAlias = "sqlite3.Connection | sqlean.Connection"


def _stdlib_can_load_extensions() -> bool:
    probe = sqlite3.connect(":memory:")
    try:
        return hasattr(probe, "enable_load_extension")
    finally:
        probe.close()


@cache
def sqlite_module() -> ModuleType:
    """The DB-API module used for every connection: stdlib if it can load extensions."""
    if _stdlib_can_load_extensions():
        return sqlite3
    try:
        import sqlean
    except ImportError:  # pragma: no cover - sqlean.py is a hard dependency
        raise DatabaseError(
            "this Python's sqlite3 cannot load extensions; install sqlean.py "
            "(pip install sqlean.py) so kb-bot can load sqlite-vec"
        ) from None
    log.debug("stdlib sqlite3 cannot load extensions; using sqlean.py")
    return sqlean


def sqlite_description(module: ModuleType | None = None) -> str:
    """Which driver and SQLite library kb-bot uses, e.g. `sqlite3 (SQLite 3.40.1)`."""
    db = module or sqlite_module()
    return f"{db.__name__} (SQLite {db.sqlite_version})"


# Permissions of what kb-bot creates: the database holds private Slack messages and the
# whole knowledge base. SQLite gives -wal and -shm the database file's mode.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def make_private_dir(folder: Path) -> None:
    """Create `folder` and any missing parents as 0700, whatever the umask; leave existing ones alone."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """An fd on `path`, created 0600 (whatever the umask) if it does not exist yet."""
    make_private_dir(path.parent)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, PRIVATE_FILE)
    return fd


_warned_readable: set[Path] = set()


def _prepare_file(path: Path) -> None:
    """A new database file is created 0600; an existing one readable by others gets one warning."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077 and path not in _warned_readable:
            _warned_readable.add(path)
            log.warning(
                "the database %s is readable by other users (mode %o): it holds the knowledge base "
                "and Slack messages; run `chmod 600 %s*`", path, mode, path,
            )
        return
    os.close(open_private(path))


def connect(path: str | Path, *, module: ModuleType | None = None) -> Connection:
    """Open `path` with sqlite-vec loaded, WAL journaling and foreign keys on.

    Transactions are explicit (`isolation_level=None` plus `transaction()`), so
    nothing is committed half-way by the driver's implicit transactions. A new
    file (and any folder created for it) is private to the user: 0600 / 0700.
    """
    db = module or sqlite_module()
    if str(path) != ":memory:":
        try:
            _prepare_file(Path(path))
        except OSError as exc:
            raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from None
    try:
        conn = db.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    except db.DatabaseError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from None
    try:
        conn.enable_load_extension(True)
        sqlite_vec.load(conn)
        conn.enable_load_extension(False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
    except AttributeError:
        conn.close()
        raise DatabaseError(f"{db.__name__} cannot load SQLite extensions, so sqlite-vec cannot load") from None
    except db.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"cannot open database {path}: {exc}") from None
    conn.row_factory = db.Row
    return conn


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, None when there is none."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def database_bytes(path: Path) -> int:
    """The size of the database at `path` with its -wal and -shm files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


@contextmanager
def read_snapshot(conn: Connection) -> Iterator[Connection]:
    """Run a block's reads in one read transaction: one consistent snapshot of the file.

    In WAL mode a writer that commits meanwhile (a re-index swapping generations,
    dropping tables) is invisible to the block, so several queries never mix
    two states. Nested use joins the outer transaction.
    """
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN DEFERRED")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """Run a block in one write transaction (or a savepoint when nested).

    Rolls back on any exception, KeyboardInterrupt included, so a file is either
    fully replaced or untouched. A COMMIT that fails (SQLITE_BUSY, a deferred
    constraint) is rolled back too, so the connection never stays inside a
    transaction that the next `transaction()` would silently join. SQLite may
    already have rolled everything back (SQLITE_FULL, an I/O error): then there
    is nothing to undo and the block's own error is what surfaces.
    """
    if conn.in_transaction:
        yield from _savepoint(conn)
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _savepoint(conn: Connection) -> Iterator[Connection]:
    name = f"sp_{next(_savepoint_ids)}"
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")
