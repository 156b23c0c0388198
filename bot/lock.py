"""A file lock so two re-indexes of one database never run at once.

The lock file sits beside the database and names its holder (pid, host, start
time), so the second caller can say who has it. The OS releases the lock when
the holder exits, even after a crash or `kill -9`. Like the database, it is
created readable by its owner only.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.errors import LockHeldError
from bot.store import POSTGRES_SCHEMES
from bot.store.sqlite.db import open_private


def lock_path(db_path: Path) -> Path:
    return Path(str(db_path) + ".index.lock")


@contextmanager
def index_lock(db_path: Path | str) -> Iterator[None]:
    """Hold the re-index lock of `db_path`, or raise `LockHeldError` at once.

    For a postgresql:// URL it is the database's own lock, so replicas on other machines are refused too.
    """
    if str(db_path).startswith(POSTGRES_SCHEMES):
        from bot.store.postgres.locks import index_lock as database_lock

        with database_lock(str(db_path)):
            yield
        return
    with open(open_private(lock_path(db_path)), "r+") as handle:  # 0600: it sits beside the database
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockHeldError(f"a re-index of {db_path} is already running ({holder})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime())}"
        )
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def leads(db_path: Path | str, job: str, seconds: float) -> bool:
    """Whether this process should run `job` now: on PostgreSQL, only the replica holding its lease
    (`bot.store.postgres.locks.lead`); an SQLite file has one machine, whose flag claims suffice."""
    if not str(db_path).startswith(POSTGRES_SCHEMES):
        return True
    from bot.store.postgres.locks import lead

    return lead(str(db_path), job, seconds)
