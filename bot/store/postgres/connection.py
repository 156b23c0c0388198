"""Connections to PostgreSQL: one pool per URL per process, pgvector's adapters, snapshots and transactions.

Every thread's store holds one pooled connection in autocommit mode; `atomic()`
opens a transaction (a savepoint when nested) and `snapshot()` a REPEATABLE READ
read-only one, so a search never sees a re-index half-way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from bot.errors import DatabaseError
from bot.redact import redact

# Connections a process keeps open per database: a serving replica uses one per
# listener thread plus the scheduler's; more wait for a free one.
POOL_SIZE = 10

_pools: dict[tuple[str, int], ConnectionPool] = {}
_pools_lock = threading.Lock()


DEFAULT_EF_SEARCH = 100


def pool(url: str, ef_search: int) -> ConnectionPool:
    """The process's pool for `url`, opened on first use."""
    with _pools_lock:
        found = _pools.get((url, ef_search))
        if found is None:

            def configure(conn: psycopg.Connection) -> None:
                conn.autocommit = True
                conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")

            try:  # one plain connection first: a refused or mistyped URL fails now, with the server's reason
                psycopg.connect(url, connect_timeout=10).close()
            except psycopg.Error as exc:
                reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                raise DatabaseError(f"cannot connect to {redact(url)}: {reason}") from None
            found = ConnectionPool(url, min_size=1, max_size=POOL_SIZE, configure=configure, open=True)
            _pools[(url, ef_search)] = found
        return found


def close_pools() -> None:
    """Close every pool (tests stopping their server, a process shutting down)."""
    with _pools_lock:
        for found in _pools.values():
            found.close()
        _pools.clear()


@contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A block whose reads all see one committed state; nested use joins the outer transaction."""
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        yield conn
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield conn


@contextmanager
def transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A block written in one transaction or not at all (a savepoint when nested)."""
    with conn.transaction():
        yield conn
