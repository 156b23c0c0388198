"""The duplicate scan's state in PostgreSQL: `bot.store.MessageStore` for replicas sharing one database.

The same behaviour as `bot.store.sqlite.messages.SqliteMessageStore`; what two
replicas could race on is decided by a unique constraint, never read-then-write:
a flag is claimed by `INSERT … ON CONFLICT DO NOTHING` on the later message's
key, an event id likewise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator

import psycopg

from bot.store.postgres.connection import transaction
from bot.store.records import Claim, Feedback, Message, WindowRow
from bot.store.sqlite.messages import drop_vectors_sql, forgettable_sql, unposted_claims_sql

_COLUMNS = 'channel, ts, thread_ts, "user", text, posted_at'
_FEEDBACK_COLUMNS = ("later_channel, later_ts, earlier_channel, earlier_ts, later_text, earlier_text, score, "
                     "reported_by, reported_at")
EVENT_MEMORY = 7 * 86400  # seconds a Slack event id is remembered: Slack retries within minutes


def _in_channels(channels: Collection[str] | None, column: str = "channel") -> tuple[str, list[object]]:
    """An `AND channel = ANY(...)` clause and its argument; nothing for every channel."""
    return ("", []) if channels is None else (f" AND {column} = ANY(%s)", [list(channels)])


class PostgresMessageStore:
    """The messages tables, on the calling thread's connection of the store."""

    def __init__(self, connection: Callable[[], psycopg.Connection]) -> None:
        self._connection = connection

    @property
    def conn(self) -> psycopg.Connection:
        return self._connection()

    def record_message(
        self, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
    ) -> None:
        """Keep a message (idempotent: a redelivered event changes nothing)."""
        self.record_messages([Message(channel, ts, thread_ts, user, text, float(ts))])

    def record_messages(self, messages: Iterable[Message], *, scanned_at: float | None = None) -> int:
        """Keep messages in one transaction; return how many were new (`scanned_at`: context, never flagged)."""
        rows = [
            (m.channel, m.ts, m.thread_ts if m.thread_ts != m.ts else None, m.user, m.text, m.posted_at, scanned_at)
            for m in messages
        ]
        if not rows:
            return 0
        with transaction(self.conn), self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO messages ({_COLUMNS}, scanned_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (channel, ts) DO NOTHING",
                rows,
            )
            return cursor.rowcount

    def edit_message(self, *, channel: str, ts: str, text: str) -> None:
        """Apply an edit; the message is scanned again with its new text."""
        self.conn.execute(
            "UPDATE messages SET text = %s, edited_at = %s, scanned_at = NULL, prepared_as = NULL, vector_key = NULL "
            "WHERE channel = %s AND ts = %s AND text != %s AND NOT deleted",
            (text, time.time(), channel, ts, text),
        )

    def delete_message(self, *, channel: str, ts: str) -> None:
        """Hide a deleted message from every later comparison (an unknown one kept as a deleted row)."""
        with transaction(self.conn):
            self.conn.execute(drop_vectors_sql("channel = %s AND ts = %s"), (channel, ts) * 2)
            self.conn.execute(
                "INSERT INTO messages (channel, ts, text, posted_at, deleted) VALUES (%s, %s, '', %s, true) "
                "ON CONFLICT (channel, ts) DO UPDATE SET deleted = true, text = '', prepared_as = NULL, "
                "vector_key = NULL",
                (channel, ts, float(ts)),
            )

    def forget_messages_before(self, cutoff: float) -> int:
        gone = forgettable_sql("%s")
        with transaction(self.conn):
            self.conn.execute(drop_vectors_sql(gone), (cutoff, cutoff))
            return self.conn.execute(f"DELETE FROM messages WHERE {gone}", (cutoff,)).rowcount

    def get_message(self, channel: str, ts: str) -> Message | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE channel = %s AND ts = %s AND NOT deleted", (channel, ts)
        ).fetchone()
        return Message(*row) if row else None

    def _messages(self, where: str, args: list[object]) -> list[Message]:
        """Live messages matching `where`, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE NOT deleted AND {where} ORDER BY posted_at, ts", args
        )
        return [Message(*row) for row in rows]

    def unscanned_messages(self, channels: Collection[str] | None = None) -> list[Message]:
        """Messages the duplicate scan has not judged yet, oldest first."""
        clause, args = _in_channels(channels)
        return self._messages(f"scanned_at IS NULL{clause}", args)

    def unprepared_messages(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> list[Message]:
        """Live messages posted in [start, end] not prepared as `prepared_as` (new, edited, or other rules)."""
        clause, args = _in_channels(channels)
        return self._messages(f"posted_at BETWEEN %s AND %s{clause} AND prepared_as IS DISTINCT FROM %s",
                              [start, end, *args, prepared_as])

    def set_prepared(self, prepared: Iterable[tuple[Message, bytes | None]], prepared_as: str) -> None:
        """Record each message's vector key (None: not worth judging); a message edited since stays unprepared."""
        self._update_each(
            "UPDATE messages SET prepared_as = %s, vector_key = %s WHERE channel = %s AND ts = %s AND text = %s",
            [(prepared_as, key, m.channel, m.ts, m.text) for m, key in prepared],
        )

    def _update_each(self, statement: str, rows: list[tuple[object, ...]]) -> None:
        if rows:
            with transaction(self.conn), self.conn.cursor() as cursor:
                cursor.executemany(statement, rows)

    def prepared_window(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> Iterator[tuple[WindowRow, bytes | None]]:
        """The messages worth judging posted in [start, end], oldest first, each with its cached vector."""
        clause, args = _in_channels(channels, "m.channel")
        with self.conn.cursor() as cursor:
            cursor.execute(
                'SELECT m.channel, m.ts, m.thread_ts, m."user", m.posted_at, c.vector FROM messages m '
                "LEFT JOIN embedding_cache c ON c.key = m.vector_key "
                f"WHERE NOT m.deleted AND m.posted_at BETWEEN %s AND %s{clause} "
                "AND m.prepared_as = %s AND m.vector_key IS NOT NULL ORDER BY m.posted_at, m.ts",
                [start, end, *args, prepared_as],
            )
            for *row, vector in cursor:
                yield WindowRow(*row), None if vector is None else bytes(vector)

    def mark_scanned(self, messages: Iterable[Message]) -> None:
        """Record that the scan judged these texts; a message edited since stays new."""
        now = time.time()
        self._update_each(
            "UPDATE messages SET scanned_at = %s WHERE channel = %s AND ts = %s AND text = %s",
            [(now, m.channel, m.ts, m.text) for m in messages],
        )

    def remember_event(self, event_id: str) -> bool:
        """Record a Slack event id; False if any replica already handled it (a retry)."""
        with transaction(self.conn):
            new = self.conn.execute(
                "INSERT INTO slack_events (event_id, received_at) VALUES (%s, %s) ON CONFLICT (event_id) DO NOTHING",
                (event_id, time.time()),
            ).rowcount
            self.conn.execute("DELETE FROM slack_events WHERE received_at < %s", (time.time() - EVENT_MEMORY,))
        return new == 1

    def channel_cursor(self, channel: str) -> str | None:
        """The newest ts the backfill has fetched from `channel`, if it ever has."""
        row = self.conn.execute("SELECT last_ts FROM channel_cursors WHERE channel = %s", (channel,)).fetchone()
        return row[0] if row else None

    def set_channel_cursor(self, channel: str, last_ts: str) -> None:
        self.conn.execute(
            "INSERT INTO channel_cursors (channel, last_ts, updated_at) VALUES (%s, %s, %s) ON CONFLICT (channel) "
            "DO UPDATE SET last_ts = excluded.last_ts, updated_at = excluded.updated_at",
            (channel, last_ts, time.time()),
        )

    def flagged_laters(self) -> set[tuple[str, str]]:
        """Unscanned messages that were flagged already (edited since, or a scan cut short)."""
        return {(channel, ts) for channel, ts in self.conn.execute(
            "SELECT later_channel, later_ts FROM flagged_pairs JOIN messages "
            "ON channel = later_channel AND ts = later_ts WHERE scanned_at IS NULL"
        )}

    def claim_flag(self, later: Message, earlier: Message, score: float, action: str) -> bool:
        """Record the pair before posting, unless its later message was ever flagged (by any replica)."""
        return self.conn.execute(
            "INSERT INTO flagged_pairs (later_channel, later_ts, earlier_channel, earlier_ts, score, action, flagged_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (later_channel, later_ts) DO NOTHING",
            (later.channel, later.ts, earlier.channel, earlier.ts, score, action, time.time()),
        ).rowcount == 1

    def release_flags(self, pairs: Iterable[tuple[Message, Message]]) -> None:
        """Forget claimed (later, earlier) pairs whose flag never reached anyone."""
        self._update_each(
            "DELETE FROM flagged_pairs WHERE later_channel = %s AND later_ts = %s "
            "AND earlier_channel = %s AND earlier_ts = %s",
            [(later.channel, later.ts, earlier.channel, earlier.ts) for later, earlier in pairs],
        )

    def mark_posted(self, posts: Iterable[tuple[Message, str]]) -> None:
        """Record that the chat accepted each later message's flag, as the post `ts`."""
        now = time.time()
        self._update_each(
            "UPDATE flagged_pairs SET posted_at = %s, posted_ts = %s WHERE later_channel = %s AND later_ts = %s",
            [(now, ts, later.channel, later.ts) for later, ts in posts],
        )

    def unposted_claims(self, claimed_before: float) -> list[Claim]:
        """Claims older than `claimed_before` never marked posted, whose two messages are still there."""
        return [Claim.from_row(row) for row in self.conn.execute(unposted_claims_sql(_COLUMNS, "%s"), (claimed_before,))]

    def record_not_same(self, channel: str, ts: str, user: str) -> Feedback | None:
        """Keep the pair flagged for the later message (channel, ts); None if there is no such flag."""
        self.conn.execute(
            f"INSERT INTO dupe_feedback ({_FEEDBACK_COLUMNS}) "
            "SELECT f.later_channel, f.later_ts, f.earlier_channel, f.earlier_ts, l.text, e.text, f.score, %s, %s "
            "FROM flagged_pairs f JOIN messages l ON l.channel = f.later_channel AND l.ts = f.later_ts "
            "JOIN messages e ON e.channel = f.earlier_channel AND e.ts = f.earlier_ts "
            "WHERE f.later_channel = %s AND f.later_ts = %s ON CONFLICT DO NOTHING",
            (user, time.time(), channel, ts),
        )
        row = self.conn.execute(
            f"SELECT {_FEEDBACK_COLUMNS} FROM dupe_feedback WHERE later_channel = %s AND later_ts = %s", (channel, ts)
        ).fetchone()
        return Feedback(*row) if row else None

    def all_feedback(self) -> list[Feedback]:
        """Every reported pair, oldest report first."""
        return [Feedback(*row) for row in self.conn.execute(
            f"SELECT {_FEEDBACK_COLUMNS} FROM dupe_feedback ORDER BY reported_at, later_ts"
        )]
