"""Locks across replicas: the re-index lock (a session advisory lock) and job leases (a row with an expiry).

Both work for processes on different machines, because they live in the
database: a crashed holder's session ends and frees the lock; a dead leader
stops renewing its lease, which passes on once it expires.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from psycopg_pool import ConnectionPool

from bot.errors import LockHeldError
from bot.redact import redact
from bot.store.postgres.connection import DEFAULT_EF_SEARCH, pool
from bot.store.postgres.migrations import migrate

# Session advisory-lock key of the re-index lock.
INDEX_LOCK = 0x6B62626F74_02
# Who holds a lease: this process, on this machine.
HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@contextmanager
def index_lock(url: str) -> Iterator[None]:
    """Hold the re-index lock of the database at `url`, or raise `LockHeldError` at once.

    A session advisory lock: the server lets go of it when the holder's
    connection ends, a crash or `kill -9` included.
    """
    with _advisory(pool(url, DEFAULT_EF_SEARCH), INDEX_LOCK) as held:
        if not held:
            raise LockHeldError(f"a re-index of {redact(url)} is already running (another replica or process)")
        yield


@contextmanager
def _advisory(connections: ConnectionPool, key: int) -> Iterator[bool]:
    # A connection of its own: the lock lives as long as that session, whatever the store's connections do.
    with connections.connection() as conn:
        held = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        try:
            yield held
        finally:
            if held:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def lead(url: str, job: str, seconds: float) -> bool:
    """Whether this process leads `job` now: it takes the lease if free or expired, renews it if its own.

    One statement, so two replicas never both win; a dead leader stops renewing
    and its lease passes on once `seconds` have run out.
    """
    now = time.time()
    with pool(url, DEFAULT_EF_SEARCH).connection() as conn:
        migrate(conn)  # a replica may ask before it ever opened the store
        row = conn.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
            "SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at < %s RETURNING holder",
            (job, HOLDER, now + seconds, now),
        ).fetchone()
    return row is not None
