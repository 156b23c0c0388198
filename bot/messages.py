"""The store of channel messages the duplicate scan reads.

Filled by Slack message events (and by the backfill in `bot.duplicates`);
edits replace the text and make the message new again for the scan, deletions
hide it from every later comparison.
"""

from __future__ import annotations

import time
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


def record_message(
    store: Store, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
) -> None:
    """Keep a message (idempotent: a redelivered event changes nothing)."""
    with transaction(store.conn):
        store.conn.execute(
            "INSERT INTO messages (channel, ts, thread_ts, user, text, posted_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(channel, ts) DO NOTHING",
            (channel, ts, thread_ts if thread_ts != ts else None, user, text, float(ts)),
        )


def edit_message(store: Store, *, channel: str, ts: str, text: str) -> None:
    """Apply an edit; the message is scanned again with its new text."""
    with transaction(store.conn):
        store.conn.execute(
            "UPDATE messages SET text = ?, edited_at = ?, scanned_at = NULL "
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
