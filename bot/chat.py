"""The chat platform as the duplicate scan needs it: `ChatPort`, implemented for Slack by `bot.slack.chat`.

The scan's rules (which channels, what to post, when to retry) stay in core
code; a platform only moves messages. Another platform implements this
protocol, and its events become the `MessageChange`s `bot.dupes.prepare.receive`
applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bot.store import Message

ToPlain = Callable[[str], str]  # a platform's markup (links, mentions, entities) → the words people see


class ChatError(Exception):
    """A platform call failed; `code` names why (the platform's error name, or the exception's type)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class MessageGone(ChatError):
    """The message asked about was deleted."""


@dataclass(frozen=True)
class History:
    """A channel's messages after a point: people's posts, deleted thread parents, and the newest ts seen."""

    posts: list[Message]
    deleted: list[str]
    newest: str | None


@dataclass(frozen=True)
class OwnPost:
    """A message this bot posted: its ts and the blocks it was posted with (as the platform returns them)."""

    ts: str
    blocks: list[dict[str, object]]


class ChatPort(Protocol):
    """What the duplicate scan asks of a chat platform. Every call but `channels` raises only `ChatError`."""

    def to_plain(self, text: str) -> str:
        """The platform's markup as the words people see."""
        ...

    def channels(self, *, private: bool) -> dict[str, bool]:
        """The channels the bot is in, each with whether it is private (private ones only if asked)."""
        ...

    def history(self, channel: str, oldest: str) -> History:
        """Everything in `channel` after `oldest` (all pages)."""
        ...

    def permalink(self, channel: str, ts: str) -> str: ...

    def own_replies(self, channel: str, thread_ts: str) -> list[OwnPost]:
        """What this bot posted in the thread of `thread_ts` (all pages); `MessageGone` if that message is gone."""
        ...

    def reply_in_thread(self, channel: str, thread_ts: str, text: str, blocks: list[dict[str, object]]) -> str:
        """Post in a thread; returns the post's ts."""
        ...

    def post(self, channel: str, text: str) -> str:
        """Post in a channel; returns the post's ts."""
        ...

    def is_transient(self, error: ChatError) -> bool:
        """Whether a later try may succeed (rate limits, outages) or the failure is permanent."""
        ...


@dataclass(frozen=True)
class Posted:
    message: Message


@dataclass(frozen=True)
class Edited:
    channel: str
    ts: str
    text: str


@dataclass(frozen=True)
class Deleted:
    channel: str
    ts: str


MessageChange = Posted | Edited | Deleted  # what a platform's message event means for the scan
