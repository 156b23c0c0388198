"""The PostgreSQL + pgvector store (KB_DB=postgresql://…), for big indexes and several bot replicas.

Needs the `postgres` extra (`pip install 'kb-bot[postgres]'`): psycopg 3, its pool, pgvector's adapters.
"""

from bot.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
