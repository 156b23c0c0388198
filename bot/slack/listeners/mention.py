"""@kb-bot question in a channel: answered in the thread, with 👀 on the question while working.

A later reply in that thread (a mention, or any reply once the bot answered there) is a follow-up:
searched together with the thread's last questions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.questions import FOLLOW_UP_TURNS, follow_up_query
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import errors_shown, first_delivery, is_usage

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"


def answer_mention(
    services: Services, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """@kb-bot question: answered in the thread, with 👀 on the question while working."""
    question = fmt.from_slack(fmt.strip_mention(event.get("text") or "", context.bot_user_id)).strip()
    _answer_in_thread(services, event, body, client, context, question)


def answer_follow_up(
    services: Services, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """A reply in a thread the bot answered in, not addressed to it, is a follow-up: answered there too.

    Replies that mention the bot come as `app_mention` too and are answered
    there; other threads, the bot's own posts and edits are left alone.
    """
    thread, bot_user = event.get("thread_ts"), context.bot_user_id
    text = event.get("text") or ""
    if (
        not thread or thread == event.get("ts") or event.get("subtype") or event.get("bot_id")
        or event.get("user") in (None, bot_user) or (bot_user and f"<@{bot_user}" in text)
        or not services.store().questions.in_thread(event.get("channel", ""), thread, 1)
    ):
        return
    _answer_in_thread(services, event, body, client, context, fmt.from_slack(text).strip())


def _answer_in_thread(
    services: Services, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext,
    question: str,
) -> None:
    channel, ts = event["channel"], event["ts"]
    thread_ts = event.get("thread_ts") or ts
    settings = services.settings

    def send(reply: fmt.Reply) -> None:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, **reply)

    with errors_shown(send, settings.ask_command):
        if not first_delivery(services, body):
            return
        _react(client.reactions_add, channel, ts)
        try:
            if is_usage(question):
                send(fmt.usage_message(settings.ask_command, context.bot_user_id))
            else:
                send(thread_answer(services, question, channel=channel, thread=thread_ts, user=event.get("user")))
        finally:
            _react(client.reactions_remove, channel, ts)


def thread_answer(services: Services, question: str, *, channel: str, thread: str, user: str | None) -> fmt.Reply:
    """The answer posted in a thread: searched with the thread's last questions (a follow-up), logged
    under the thread, and shown with the words the person wrote."""
    earlier = services.store().questions.in_thread(channel, thread, FOLLOW_UP_TURNS)
    result = services.search(follow_up_query(earlier, question), channel)
    asked = services.log_question(result, channel=channel, user=user, thread=thread)
    return fmt.answer_message(replace(result, query=question), asker=user, question_id=asked)


def _react(call: Callable[..., Any], channel: str, ts: str) -> None:
    """Add or remove the working reaction; a failure here must not stop the answer."""
    try:
        call(channel=channel, timestamp=ts, name=WORKING_REACTION)
    except SlackApiError as exc:
        log.warning("%s failed: %s", call.__name__, exc.response.get("error"))
