"""The SQL of the duplicate scan's state: channel messages, Slack event ids, backfill cursors, flags, feedback.

`SqliteMessageStore` implements `bot.store.MessageStore` over a `SqliteStore`'s
connections (`SqliteStore.messages`); the rest of the code speaks to that
protocol, so another database can implement it without touching the scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import TypeVar

from bot.store.records import Claim, Feedback, Message, WindowRow
from bot.store.sqlite.db import Connection, transaction

_COLUMNS = "channel, ts, thread_ts, user, text, posted_at"
_FEEDBACK_COLUMNS = ("later_channel, later_ts, earlier_channel, earlier_ts, later_text, earlier_text, score, "
                     "reported_by, reported_at")
R = TypeVar("R")
EVENT_MEMORY = 7 * 86400  # seconds a Slack event id is remembered: Slack retries within minutes


def _in_channels(channels: Collection[str] | None, column: str = "channel") -> tuple[str, list[str]]:
    """An `AND channel IN (...)` clause and its arguments; nothing for every channel."""
    if channels is None:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(channels))})", list(channels)


def unposted_claims_sql(columns: str, mark: str) -> str:
    """The query of `unposted_claims` in SQL both stores speak: `columns` are the store's message columns,
    `mark` its parameter placeholder; rows as `Claim.from_row` reads them."""
    later, earlier = (", ".join(f"{alias}.{column}" for column in columns.split(", ")) for alias in "le")
    return (
        f"SELECT {later}, {earlier}, f.score, f.action, f.flagged_at FROM flagged_pairs f "
        "JOIN messages l ON l.channel = f.later_channel AND l.ts = f.later_ts AND NOT l.deleted "
        "JOIN messages e ON e.channel = f.earlier_channel AND e.ts = f.earlier_ts AND NOT e.deleted "
        f"WHERE f.posted_at IS NULL AND f.flagged_at < {mark} ORDER BY f.flagged_at"
    )


def forgettable_sql(mark: str) -> str:
    """Which messages `forget_messages_before` drops (both stores): scanned or deleted, posted before `mark`."""
    return f"posted_at < {mark} AND (scanned_at IS NOT NULL OR deleted)"


def drop_vectors_sql(gone: str) -> str:
    """Deleting the cached vectors of the messages matching `gone` that no other message shares, in SQL both
    stores speak (pass `gone`'s parameters twice)."""
    return (
        f"DELETE FROM embedding_cache WHERE key IN (SELECT vector_key FROM messages WHERE {gone}) "
        f"AND key NOT IN (SELECT vector_key FROM messages WHERE vector_key IS NOT NULL AND NOT ({gone}))"
    )


class SqliteMessageStore:
    """The messages tables of one SQLite file, on the calling thread's connection."""

    def __init__(self, connection: Callable[[], Connection]) -> None:
        self._connection = connection

    @property
    def conn(self) -> Connection:
        return self._connection()

    # --- messages ---------------------------------------------------------

    def record_message(
        self, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
    ) -> None:
        """Keep a message (idempotent: a redelivered event changes nothing)."""
        self.record_messages([Message(channel, ts, thread_ts, user, text, float(ts))])

    def record_messages(self, messages: Iterable[Message], *, scanned_at: float | None = None) -> int:
        """Keep messages in one transaction; return how many were new.

        `scanned_at` stores them as already scanned: context for later messages
        that is never flagged itself (the backfill's first look at a channel).
        """
        rows = [
            (m.channel, m.ts, m.thread_ts if m.thread_ts != m.ts else None, m.user, m.text, m.posted_at, scanned_at)
            for m in messages
        ]
        with transaction(self.conn):
            cursor = self.conn.executemany(
                "INSERT INTO messages (channel, ts, thread_ts, user, text, posted_at, scanned_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(channel, ts) DO NOTHING",
                rows,
            )
        return cursor.rowcount if rows else 0

    def edit_message(self, *, channel: str, ts: str, text: str) -> None:
        """Apply an edit; the message is scanned again with its new text."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE messages SET text = ?, edited_at = ?, scanned_at = NULL, prepared_as = NULL, "
                "vector_key = NULL WHERE channel = ? AND ts = ? AND text != ? AND NOT deleted",
                (text, time.time(), channel, ts, text),
            )

    def delete_message(self, *, channel: str, ts: str) -> None:
        """Hide a deleted message from every later comparison.

        An unknown message is kept as a deleted row, so its post arriving later
        (events are handled on a pool, in any order) stays hidden.
        """
        with transaction(self.conn):
            self.conn.execute(drop_vectors_sql("channel = ? AND ts = ?"), (channel, ts) * 2)
            self.conn.execute(
                "INSERT INTO messages (channel, ts, text, posted_at, deleted) VALUES (?, ?, '', ?, 1) "
                "ON CONFLICT(channel, ts) DO UPDATE SET deleted = 1, text = '', prepared_as = NULL, vector_key = NULL",
                (channel, ts, float(ts)),
            )

    def forget_messages_before(self, cutoff: float) -> int:
        gone = forgettable_sql("?")
        with transaction(self.conn):
            self.conn.execute(drop_vectors_sql(gone), (cutoff, cutoff))
            return self.conn.execute(f"DELETE FROM messages WHERE {gone}", (cutoff,)).rowcount

    def get_message(self, channel: str, ts: str) -> Message | None:
        return self._record(
            Message, f"SELECT {_COLUMNS} FROM messages WHERE channel = ? AND ts = ? AND deleted = 0", [channel, ts]
        )

    def _records(self, record: Callable[..., R], sql: str, args: Sequence[object] = ()) -> list[R]:
        """The rows of `sql` as `record`s, built from the columns in order."""
        return [record(*row) for row in self.conn.execute(sql, args)]

    def _record(self, record: Callable[..., R], sql: str, args: Sequence[object]) -> R | None:
        """The first row of `sql` as a `record`, if there is one."""
        found = self._records(record, sql, args)
        return found[0] if found else None

    def _messages(self, where: str, args: list[object]) -> list[Message]:
        """Live messages matching `where`, oldest first."""
        return self._records(
            Message, f"SELECT {_COLUMNS} FROM messages WHERE deleted = 0 AND {where} ORDER BY posted_at, ts", args
        )

    def unscanned_messages(self, channels: Collection[str] | None = None) -> list[Message]:
        """Messages the duplicate scan has not judged yet, oldest first."""
        clause, args = _in_channels(channels)
        return self._messages(f"scanned_at IS NULL{clause}", args)

    def unprepared_messages(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> list[Message]:
        """Live messages posted in [start, end] not prepared as `prepared_as` (new, edited, or other rules)."""
        clause, args = _in_channels(channels)
        return self._messages(f"posted_at BETWEEN ? AND ?{clause} AND prepared_as IS NOT ?",
                              [start, end, *args, prepared_as])

    def set_prepared(self, prepared: Iterable[tuple[Message, bytes | None]], prepared_as: str) -> None:
        """Record each message's vector key (None: not worth judging); a message edited since stays unprepared."""
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE messages SET prepared_as = ?, vector_key = ? WHERE channel = ? AND ts = ? AND text = ?",
                [(prepared_as, key, m.channel, m.ts, m.text) for m, key in prepared],
            )

    def prepared_window(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> Iterator[tuple[WindowRow, bytes | None]]:
        """The messages worth judging posted in [start, end], oldest first, each with its cached vector.

        A generator, so a caller can copy each vector out and let go of it (100,000
        vectors are 150 MB). The vector is None when its cache entry is gone.
        """
        clause, args = _in_channels(channels, "m.channel")
        for *row, vector in self.conn.execute(
            "SELECT m.channel, m.ts, m.thread_ts, m.user, m.posted_at, c.vector FROM messages m "
            "LEFT JOIN embedding_cache c ON c.key = m.vector_key "
            f"WHERE m.deleted = 0 AND m.posted_at BETWEEN ? AND ?{clause} "
            "AND m.prepared_as = ? AND m.vector_key IS NOT NULL ORDER BY m.posted_at, m.ts",
            [start, end, *args, prepared_as],
        ):
            yield WindowRow(*row), vector

    def mark_scanned(self, messages: Iterable[Message]) -> None:
        """Record that the scan judged these texts; a message edited since stays new."""
        now = time.time()
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE messages SET scanned_at = ? WHERE channel = ? AND ts = ? AND text = ?",
                [(now, m.channel, m.ts, m.text) for m in messages],
            )

    # --- Slack delivery state -------------------------------------------------

    def remember_event(self, event_id: str) -> bool:
        """Record a Slack event id; False if it was already handled (a retry)."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO slack_events (event_id, received_at) VALUES (?, ?) ON CONFLICT(event_id) DO NOTHING",
                (event_id, time.time()),
            )
            self.conn.execute("DELETE FROM slack_events WHERE received_at < ?", (time.time() - EVENT_MEMORY,))
        return cursor.rowcount == 1

    def channel_cursor(self, channel: str) -> str | None:
        """The newest ts the backfill has fetched from `channel`, if it ever has."""
        row = self.conn.execute("SELECT last_ts FROM channel_cursors WHERE channel = ?", (channel,)).fetchone()
        return row[0] if row else None

    def set_channel_cursor(self, channel: str, last_ts: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO channel_cursors (channel, last_ts, updated_at) VALUES (?, ?, ?) ON CONFLICT(channel) "
                "DO UPDATE SET last_ts = excluded.last_ts, updated_at = excluded.updated_at",
                (channel, last_ts, time.time()),
            )

    # --- flags and feedback -----------------------------------------------------

    def flagged_laters(self) -> set[tuple[str, str]]:
        """Unscanned messages that were flagged already (edited since, or a scan cut short)."""
        return {(channel, ts) for channel, ts in self.conn.execute(
            "SELECT later_channel, later_ts FROM flagged_pairs JOIN messages "
            "ON channel = later_channel AND ts = later_ts WHERE scanned_at IS NULL"
        )}

    def claim_flag(self, later: Message, earlier: Message, score: float, action: str) -> bool:
        """Record the pair before posting, unless its later message was ever flagged."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO flagged_pairs (later_channel, later_ts, earlier_channel, earlier_ts, score, action, "
                "flagged_at) SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM flagged_pairs "
                "WHERE later_channel = ? AND later_ts = ?)",
                (later.channel, later.ts, earlier.channel, earlier.ts, score, action, time.time(),
                 later.channel, later.ts),
            )
        return cursor.rowcount == 1

    def release_flags(self, pairs: Iterable[tuple[Message, Message]]) -> None:
        """Forget claimed (later, earlier) pairs whose flag never reached anyone."""
        with transaction(self.conn):
            self.conn.executemany(
                "DELETE FROM flagged_pairs WHERE later_channel = ? AND later_ts = ? "
                "AND earlier_channel = ? AND earlier_ts = ?",
                [(later.channel, later.ts, earlier.channel, earlier.ts) for later, earlier in pairs],
            )

    def mark_posted(self, posts: Iterable[tuple[Message, str]]) -> None:
        """Record that the chat accepted each later message's flag, as the post `ts`."""
        now = time.time()
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE flagged_pairs SET posted_at = ?, posted_ts = ? WHERE later_channel = ? AND later_ts = ?",
                [(now, ts, later.channel, later.ts) for later, ts in posts],
            )

    def unposted_claims(self, claimed_before: float) -> list[Claim]:
        """Claims older than `claimed_before` never marked posted, whose two messages are still there."""
        return [Claim.from_row(row) for row in self.conn.execute(unposted_claims_sql(_COLUMNS, "?"), (claimed_before,))]

    def record_not_same(self, channel: str, ts: str, user: str) -> Feedback | None:
        """Keep the pair flagged for the later message (channel, ts); None if there is no such flag.

        A second report (anyone's) keeps the first.
        """
        with transaction(self.conn):
            self.conn.execute(
                f"INSERT OR IGNORE INTO dupe_feedback ({_FEEDBACK_COLUMNS}) "
                "SELECT f.later_channel, f.later_ts, f.earlier_channel, f.earlier_ts, l.text, e.text, f.score, ?, ? "
                "FROM flagged_pairs f JOIN messages l ON l.channel = f.later_channel AND l.ts = f.later_ts "
                "JOIN messages e ON e.channel = f.earlier_channel AND e.ts = f.earlier_ts "
                "WHERE f.later_channel = ? AND f.later_ts = ?",
                (user, time.time(), channel, ts),
            )
        return self._record(
            Feedback, f"SELECT {_FEEDBACK_COLUMNS} FROM dupe_feedback WHERE later_channel = ? AND later_ts = ?",
            [channel, ts],
        )

    def all_feedback(self) -> list[Feedback]:
        """Every reported pair, oldest report first."""
        return self._records(Feedback, f"SELECT {_FEEDBACK_COLUMNS} FROM dupe_feedback ORDER BY reported_at, later_ts")
