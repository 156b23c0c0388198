"""The SQL of the question log: questions people asked, their votes, retention.

`SqliteQuestionStore` implements `bot.store.QuestionStore` on the calling
thread's connection (`SqliteStore.questions`); the rules (what is kept,
hashing, grouping) live in `bot.questions` and `bot.gaps`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from bot.store.records import QuestionRecord
from bot.store.sqlite.db import Connection, transaction

_SELECT = (
    "SELECT q.id, q.text, q.model, q.vector_key, q.asked_at, q.channel, q.asker, q.confident, q.sources, "
    "COALESCE(SUM(v.helpful = 0), 0), COALESCE(SUM(v.helpful = 1), 0) "
    "FROM questions q LEFT JOIN votes v ON v.question_id = q.id WHERE q.asked_at >= ? GROUP BY q.id"
)


class SqliteQuestionStore:
    """The questions and votes tables of one SQLite connection."""

    def __init__(self, connection: Callable[[], Connection]) -> None:
        self._connection = connection

    @property
    def conn(self) -> Connection:
        return self._connection()

    def salt(self) -> str:
        """The random salt of asker hashes, made once per database by its migration."""
        return str(self.conn.execute("SELECT salt FROM question_salt").fetchone()[0])

    def add(
        self, *, text: str, model: str, vector_key: bytes, asked_at: float, channel: str | None,
        asker: str | None, confident: bool, sources: list[dict[str, object]], thread: str | None = None,
    ) -> int:
        """Keep a question; return its id (the answer's id in vote buttons)."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO questions (text, model, vector_key, asked_at, channel, asker, confident, sources, thread) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (text, model, vector_key, asked_at, channel, asker, int(confident), json.dumps(sources), thread),
            )
        return int(cursor.lastrowid or 0)

    def in_thread(self, channel: str, thread: str, limit: int) -> list[str]:
        """The texts of the last `limit` questions answered in a thread, oldest first."""
        rows = self.conn.execute(
            "SELECT text FROM questions WHERE channel = ? AND thread = ? ORDER BY id DESC LIMIT ?",
            (channel, thread, limit),
        ).fetchall()
        return [r[0] for r in reversed(rows)]

    def vote(self, question_id: int, voter: str, helpful: bool, at: float) -> bool:
        """One vote per voter per answer: a second one replaces the first. False if the question is gone."""
        with transaction(self.conn):
            if not self.conn.execute("SELECT 1 FROM questions WHERE id = ?", (question_id,)).fetchone():
                return False
            self.conn.execute(
                "INSERT INTO votes (question_id, voter, helpful, voted_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(question_id, voter) DO UPDATE SET helpful = excluded.helpful, voted_at = excluded.voted_at",
                (question_id, voter, int(helpful), at),
            )
        return True

    def votes(self, question_id: int) -> dict[str, bool]:
        """Each voter's vote on an answer (voter hash -> helpful)."""
        rows = self.conn.execute("SELECT voter, helpful FROM votes WHERE question_id = ?", (question_id,))
        return {voter: bool(helpful) for voter, helpful in rows}

    def since(self, asked_after: float) -> list[QuestionRecord]:
        """Questions asked at or after `asked_after`, oldest first, with their vote counts."""
        rows = self.conn.execute(_SELECT + " ORDER BY q.asked_at, q.id", (asked_after,)).fetchall()
        return [QuestionRecord.from_row(r) for r in rows]

    def vectors(self, model: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors of `keys` under `model` (a key whose vector is gone is left out)."""
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            for key, blob in self.conn.execute(
                f"SELECT key, vector FROM embedding_cache WHERE model = ? AND key IN ({','.join('?' * len(part))})",
                [model, *part],
            ):
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return found

    def prune(self, questions_before: float, votes_before: float) -> tuple[int, int]:
        """Remove questions asked before `questions_before` (with their votes) and votes cast before
        `votes_before`; return how many of each went."""
        with transaction(self.conn):
            votes = self.conn.execute("DELETE FROM votes WHERE voted_at < ?", (votes_before,)).rowcount
            questions = self.conn.execute("DELETE FROM questions WHERE asked_at < ?", (questions_before,)).rowcount
        return questions, votes

    def mark(self, key: str) -> str | None:
        """A value the question features keep between runs (e.g. the last question a gaps post covered)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (f"questions.{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_mark(self, key: str, value: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (f"questions.{key}", value),
            )
