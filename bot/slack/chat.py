"""Slack as the duplicate scan's chat: `SlackChat` implements `bot.chat.ChatPort` over a WebClient.

Also the one place a Slack message event becomes a core `Message` or
`MessageChange` (`message_from_event`, `change_from_event`), for both the
history the backfill reads and the events the app receives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.chat import ChatError, Deleted, Edited, History, MessageChange, MessageGone, OwnPost, Posted
from bot.slack.format import from_slack
from bot.store import Message

HISTORY_PAGE = 200  # messages per conversations.history/replies call (Slack allows up to 999; 200 is its advice)

# Subtypes that are still a person's post; everything else (joins, bot posts,
# topic changes…) is not a candidate for duplicate detection.
USER_POST_SUBTYPES = {None, "thread_broadcast", "file_share", "me_message"}

# Slack errors worth retrying on the next scan; any other API error is permanent.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def is_user_post(event: dict[str, Any]) -> bool:
    """True for a message a person posted (not a bot, not a system subtype)."""
    return (
        event.get("subtype") in USER_POST_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and bool(event.get("ts"))
    )


def is_tombstone(message: dict[str, Any]) -> bool:
    """A deleted thread parent: Slack keeps it as a "This message was deleted." placeholder."""
    return message.get("subtype") == "tombstone"


def message_from_event(channel: str, event: dict[str, Any]) -> Message:
    """A person's post (`is_user_post`) as the scan keeps it."""
    return Message(channel, event["ts"], event.get("thread_ts"), event["user"], event.get("text") or "",
                   float(event["ts"]))


def change_from_event(event: dict[str, Any]) -> MessageChange | None:
    """What a `message` event means for the scan: a post, an edit, a deletion, or nothing (None)."""
    channel = event.get("channel", "")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        edited = event.get("message") or {}
        if is_tombstone(edited):  # a thread parent deleted: its replies keep a placeholder
            return Deleted(channel, edited["ts"]) if edited.get("ts") else None
        if is_user_post(edited):
            return Edited(channel, edited["ts"], edited.get("text") or "")
        return None
    if subtype == "message_deleted":
        return Deleted(channel, event["deleted_ts"])
    return Posted(message_from_event(channel, event)) if is_user_post(event) else None


def _code(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__


@contextmanager
def _as_chat_errors(gone: Callable[[str], bool] = lambda code: False) -> Iterator[None]:
    """Slack's and the network's failures as `ChatError` (the Slack exception kept as its cause)."""
    try:
        yield
    except (SlackClientError, OSError) as exc:
        code = _code(exc)
        raise (MessageGone if gone(code) else ChatError)(code) from exc


class SlackChat:
    """`ChatPort` over a Slack WebClient (rate limits waited out by the client's retry handlers)."""

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self._bot_id: str | None = None  # who "own" posts are by, asked once

    def to_plain(self, text: str) -> str:
        return from_slack(text)

    def channels(self, *, private: bool) -> dict[str, bool]:
        """users.conversations: a failure here propagates as Slack raised it (a scan cannot start without it)."""
        pages = self.client.users_conversations(
            types="public_channel,private_channel" if private else "public_channel", exclude_archived=True,
            limit=200,
        )
        return {channel["id"]: bool(channel.get("is_private")) for page in pages for channel in page["channels"]}

    def history(self, channel: str, oldest: str) -> History:
        posts: list[Message] = []
        deleted: list[str] = []
        stamps: list[str] = []
        with _as_chat_errors():
            for page in self.client.conversations_history(channel=channel, oldest=oldest, limit=HISTORY_PAGE):
                for event in page["messages"]:
                    stamps.append(event["ts"])
                    if is_user_post(event):
                        posts.append(message_from_event(channel, event))
                    elif is_tombstone(event):
                        deleted.append(event["ts"])
        return History(posts, deleted, max(stamps, key=float, default=None))

    def permalink(self, channel: str, ts: str) -> str:
        with _as_chat_errors(gone=lambda code: code == "message_not_found"):
            return self.client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"]

    def own_replies(self, channel: str, thread_ts: str) -> list[OwnPost]:
        """conversations.replies, keeping the messages posted by this app's bot (auth.test's bot_id)."""
        with _as_chat_errors(gone=lambda code: code == "thread_not_found"):
            if self._bot_id is None:
                self._bot_id = self.client.auth_test()["bot_id"]
            return [OwnPost(message["ts"], message.get("blocks") or [])
                    for page in self.client.conversations_replies(channel=channel, ts=thread_ts, limit=HISTORY_PAGE)
                    for message in page["messages"] if message.get("bot_id") == self._bot_id]

    def reply_in_thread(self, channel: str, thread_ts: str, text: str, blocks: list[dict[str, object]]) -> str:
        with _as_chat_errors():
            return self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)["ts"]

    def post(self, channel: str, text: str) -> str:
        with _as_chat_errors():
            return self.client.chat_postMessage(channel=channel, text=text)["ts"]

    def is_transient(self, error: ChatError) -> bool:
        """Network failures and Slack's passing errors are; any other Slack API error is not."""
        return not isinstance(error.__cause__, SlackApiError) or error.code in _TRANSIENT
