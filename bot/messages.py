"""Channel messages as the duplicate scan sees them, and the `MessageStore` protocol that keeps them.

Filled by Slack message events (and by the backfill in `bot.dupes.scan`);
edits replace the text and make the message new again for the scan, deletions
hide it from every later comparison. `bot.store.sqlite.messages.SqliteMessageStore` is
the SQLite implementation (`Store.messages`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    text: str
    posted_at: float


@dataclass(frozen=True)
class WindowRow:
    """A prepared message worth judging: what a scan compares it by."""

    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    posted_at: float


@dataclass(frozen=True)
class Feedback:
    """A flagged pair someone said is not the same question (`bot.dupes.feedback`)."""

    later_channel: str
    later_ts: str
    earlier_channel: str
    earlier_ts: str
    later_text: str
    earlier_text: str
    score: float
    reported_by: str
    reported_at: float

    def as_dict(self) -> dict[str, object]:
        """One training row: the pair, labelled not the same question."""
        return {
            "later": {"channel": self.later_channel, "ts": self.later_ts, "text": self.later_text},
            "earlier": {"channel": self.earlier_channel, "ts": self.earlier_ts, "text": self.earlier_text},
            "score": round(self.score, 4), "same": False,
            "reported_by": self.reported_by, "reported_at": self.reported_at,
        }


class MessageStore(Protocol):
    """What the duplicate scan, the Slack listeners and the CLI need from a database; see SqliteMessageStore."""

    def record_message(
        self, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
    ) -> None: ...
    def record_messages(self, messages: Iterable[Message], *, scanned_at: float | None = None) -> int: ...
    def edit_message(self, *, channel: str, ts: str, text: str) -> None: ...
    def delete_message(self, *, channel: str, ts: str) -> None: ...
    def get_message(self, channel: str, ts: str) -> Message | None: ...
    def unscanned_messages(self, channels: Collection[str] | None = None) -> list[Message]: ...
    def unprepared_messages(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> list[Message]: ...
    def set_prepared(self, prepared: Iterable[tuple[Message, bytes | None]], prepared_as: str) -> None: ...
    def prepared_window(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> Iterator[tuple[WindowRow, bytes | None]]: ...
    def mark_scanned(self, messages: Iterable[Message]) -> None: ...
    def remember_event(self, event_id: str) -> bool: ...
    def channel_cursor(self, channel: str) -> str | None: ...
    def set_channel_cursor(self, channel: str, last_ts: str) -> None: ...
    def flagged_laters(self) -> set[tuple[str, str]]: ...
    def claim_flag(self, later: Message, earlier: Message, score: float, action: str) -> bool: ...
    def release_flags(self, pairs: Iterable[tuple[Message, Message]]) -> None: ...
    def record_not_same(self, channel: str, ts: str, user: str) -> Feedback | None: ...
    def all_feedback(self) -> list[Feedback]: ...
