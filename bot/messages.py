"""The store of channel messages the duplicate scan reads.

Filled by Slack message events (and by the backfill in `bot.duplicates`);
edits replace the text and make the message new again for the scan, deletions
hide it from every later comparison.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from bot.db import transaction
from bot.store import Store

# Subtypes that are still a person's post; everything else (joins, bot posts,
# topic changes…) is not a candidate for duplicate detection.
USER_POST_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}


@dataclass(frozen=True)
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    text: str
    posted_at: float


def is_user_post(event: dict) -> bool:
    """True for a message a person posted (not a bot, not a system subtype)."""
    return (
        event.get("subtype") in USER_POST_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and bool(event.get("ts"))
    )


def is_tombstone(message: dict) -> bool:
    """A deleted thread parent: Slack keeps it as a "This message was deleted." placeholder."""
    return message.get("subtype") == "tombstone"


def record_message(
    store: Store, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
) -> None:
    """Keep a message (idempotent: a redelivered event changes nothing)."""
    record_messages(store, [Message(channel, ts, thread_ts, user, text, float(ts))])


def record_messages(
    store: Store, messages: Iterable[Message], *, scanned_at: float | None = None
) -> int:
    """Keep messages in one transaction; return how many were new.

    `scanned_at` stores them as already scanned: context for later messages
    that is never flagged itself (the backfill's first look at a channel).
    """
    rows = [
        (m.channel, m.ts, m.thread_ts if m.thread_ts != m.ts else None, m.user, m.text, m.posted_at, scanned_at)
        for m in messages
    ]
    with transaction(store.conn):
        cursor = store.conn.executemany(
            "INSERT INTO messages (channel, ts, thread_ts, user, text, posted_at, scanned_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(channel, ts) DO NOTHING",
            rows,
        )
    return cursor.rowcount if rows else 0


def edit_message(store: Store, *, channel: str, ts: str, text: str) -> None:
    """Apply an edit; the message is scanned again with its new text."""
    with transaction(store.conn):
        store.conn.execute(
            "UPDATE messages SET text = ?, edited_at = ?, scanned_at = NULL, prepared_as = NULL, vector_key = NULL "
            "WHERE channel = ? AND ts = ? AND text != ?",
            (text, time.time(), channel, ts, text),
        )


def delete_message(store: Store, *, channel: str, ts: str) -> None:
    """Hide a deleted message from every later comparison."""
    with transaction(store.conn):
        store.conn.execute(
            "UPDATE messages SET deleted = 1 WHERE channel = ? AND ts = ?", (channel, ts)
        )


def get_message(store: Store, channel: str, ts: str) -> Message | None:
    row = store.conn.execute(
        "SELECT channel, ts, thread_ts, user, text, posted_at FROM messages "
        "WHERE channel = ? AND ts = ? AND deleted = 0",
        (channel, ts),
    ).fetchone()
    return Message(*row) if row else None


def remember_event(store: Store, event_id: str) -> bool:
    """Record a Slack event id; False if it was already handled (a retry)."""
    with transaction(store.conn):
        cursor = store.conn.execute(
            "INSERT INTO slack_events (event_id, received_at) VALUES (?, ?) "
            "ON CONFLICT(event_id) DO NOTHING",
            (event_id, time.time()),
        )
        store.conn.execute(
            "DELETE FROM slack_events WHERE received_at < ?", (time.time() - 7 * 86400,)
        )
    return cursor.rowcount == 1


_COLUMNS = "channel, ts, thread_ts, user, text, posted_at"


def _in_channels(channels: Collection[str] | None, column: str = "channel") -> tuple[str, list[str]]:
    """An `AND channel IN (...)` clause and its arguments; nothing for every channel."""
    if channels is None:
        return "", []
    return f" AND {column} IN ({','.join('?' * len(channels))})", list(channels)


def unscanned_messages(store: Store, channels: Collection[str] | None = None) -> list[Message]:
    """Messages the duplicate scan has not judged yet, oldest first."""
    clause, args = _in_channels(channels)
    return [
        Message(*row)
        for row in store.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE scanned_at IS NULL AND deleted = 0{clause} "
            "ORDER BY posted_at, ts",
            args,
        )
    ]


def unprepared_messages(
    store: Store, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
) -> list[Message]:
    """Live messages posted in [start, end] not prepared as `prepared_as` (new, edited, or other rules)."""
    clause, args = _in_channels(channels)
    return [
        Message(*row)
        for row in store.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE deleted = 0 AND posted_at BETWEEN ? AND ?{clause} "
            "AND prepared_as IS NOT ? ORDER BY posted_at, ts",
            [start, end, *args, prepared_as],
        )
    ]


def set_prepared(store: Store, prepared: Iterable[tuple[Message, bytes | None]], prepared_as: str) -> None:
    """Record each message's vector key (None: not worth judging); a message edited since stays unprepared."""
    with transaction(store.conn):
        store.conn.executemany(
            "UPDATE messages SET prepared_as = ?, vector_key = ? WHERE channel = ? AND ts = ? AND text = ?",
            [(prepared_as, key, m.channel, m.ts, m.text) for m, key in prepared],
        )


@dataclass(frozen=True)
class WindowRow:
    """A prepared message worth judging: what a scan compares it by."""

    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    posted_at: float


def prepared_window(
    store: Store, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
) -> Iterator[tuple[WindowRow, bytes | None]]:
    """The messages worth judging posted in [start, end], oldest first, each with its cached vector.

    A generator, so a caller can copy each vector out and let go of it (100,000
    vectors are 150 MB). The vector is None when its cache entry is gone.
    """
    clause, args = _in_channels(channels, "m.channel")
    for *row, vector in store.conn.execute(
        "SELECT m.channel, m.ts, m.thread_ts, m.user, m.posted_at, c.vector FROM messages m "
        "LEFT JOIN embedding_cache c ON c.key = m.vector_key "
        f"WHERE m.deleted = 0 AND m.posted_at BETWEEN ? AND ?{clause} "
        "AND m.prepared_as = ? AND m.vector_key IS NOT NULL ORDER BY m.posted_at, m.ts",
        [start, end, *args, prepared_as],
    ):
        yield WindowRow(*row), vector


def mark_scanned(store: Store, messages: Iterable[Message]) -> None:
    """Record that the scan judged these texts; a message edited since stays new."""
    now = time.time()
    with transaction(store.conn):
        store.conn.executemany(
            "UPDATE messages SET scanned_at = ? WHERE channel = ? AND ts = ? AND text = ?",
            [(now, m.channel, m.ts, m.text) for m in messages],
        )


def channel_cursor(store: Store, channel: str) -> str | None:
    """The newest ts the backfill has fetched from `channel`, if it ever has."""
    row = store.conn.execute(
        "SELECT last_ts FROM channel_cursors WHERE channel = ?", (channel,)
    ).fetchone()
    return row[0] if row else None


def set_channel_cursor(store: Store, channel: str, last_ts: str) -> None:
    with transaction(store.conn):
        store.conn.execute(
            "INSERT INTO channel_cursors (channel, last_ts, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(channel) DO UPDATE SET last_ts = excluded.last_ts, updated_at = excluded.updated_at",
            (channel, last_ts, time.time()),
        )
