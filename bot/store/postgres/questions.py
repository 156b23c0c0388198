"""The question log in PostgreSQL: `bot.store.QuestionStore`, the same behaviour as the SQLite one.

A vote is one row per (question, voter), replaced by `INSERT … ON CONFLICT`,
so replicas voting at once never double-count.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import psycopg

from bot.store.postgres.connection import transaction
from bot.store.records import QuestionRecord

_SELECT = (
    "SELECT q.id, q.text, q.model, q.vector_key, q.asked_at, q.channel, q.asker, q.confident, q.sources, "
    "COUNT(v.voter) FILTER (WHERE NOT v.helpful), COUNT(v.voter) FILTER (WHERE v.helpful) "
    "FROM questions q LEFT JOIN votes v ON v.question_id = q.id WHERE q.asked_at >= %s GROUP BY q.id"
)


class PostgresQuestionStore:
    """The questions and votes tables, on the calling thread's connection of the store."""

    def __init__(self, connection: Callable[[], psycopg.Connection]) -> None:
        self._connection = connection

    @property
    def conn(self) -> psycopg.Connection:
        return self._connection()

    def salt(self) -> str:
        return str(self.conn.execute("SELECT salt FROM question_salt").fetchone()[0])

    def add(
        self, *, text: str, model: str, vector_key: bytes, asked_at: float, channel: str | None,
        asker: str | None, confident: bool, sources: list[dict[str, object]], thread: str | None = None,
    ) -> int:
        with transaction(self.conn) as conn:
            row = conn.execute(
                "INSERT INTO questions (text, model, vector_key, asked_at, channel, asker, confident, sources, thread) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (text, model, vector_key, asked_at, channel, asker, confident, json.dumps(sources), thread),
            ).fetchone()
        return int(row[0])

    def vote(self, question_id: int, voter: str, helpful: bool, at: float) -> bool:
        with transaction(self.conn) as conn:
            if not conn.execute("SELECT 1 FROM questions WHERE id = %s", (question_id,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO votes (question_id, voter, helpful, voted_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (question_id, voter) DO UPDATE SET helpful = excluded.helpful, voted_at = excluded.voted_at",
                (question_id, voter, helpful, at),
            )
        return True

    def votes(self, question_id: int) -> dict[str, bool]:
        rows = self.conn.execute("SELECT voter, helpful FROM votes WHERE question_id = %s", (question_id,))
        return {voter: bool(helpful) for voter, helpful in rows}

    def since(self, asked_after: float) -> list[QuestionRecord]:
        rows = self.conn.execute(_SELECT + " ORDER BY q.asked_at, q.id", (asked_after,)).fetchall()
        return [QuestionRecord.from_row(r) for r in rows]

    def in_thread(self, channel: str, thread: str, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT text FROM questions WHERE channel = %s AND thread = %s ORDER BY id DESC LIMIT %s",
            (channel, thread, limit),
        ).fetchall()
        return [r[0] for r in reversed(rows)]

    def vectors(self, model: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        rows = self.conn.execute(
            "SELECT key, vector FROM embedding_cache WHERE model = %s AND key = ANY(%s)", (model, keys)
        ).fetchall()
        return {bytes(key): np.frombuffer(blob, dtype=np.float32) for key, blob in rows}

    def prune(self, questions_before: float, votes_before: float) -> tuple[int, int]:
        with transaction(self.conn) as conn:
            votes = conn.execute("DELETE FROM votes WHERE voted_at < %s", (votes_before,)).rowcount
            questions = conn.execute("DELETE FROM questions WHERE asked_at < %s", (questions_before,)).rowcount
        return questions, votes

    def mark(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = %s", (f"questions.{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_mark(self, key: str, value: str) -> None:
        with transaction(self.conn) as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"questions.{key}", value),
            )
