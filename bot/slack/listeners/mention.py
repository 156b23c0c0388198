"""@kb-bot question in a channel: answered in the thread, with 👀 on the question while working."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import errors_shown, first_delivery, is_usage

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"


def answer_mention(
    services: Services, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """@kb-bot question: answered in the thread, with 👀 on the question while working."""
    channel, ts = event["channel"], event["ts"]
    thread_ts = event.get("thread_ts") or ts
    settings = services.settings

    def send(reply: fmt.Reply) -> None:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, **reply)

    question = fmt.from_slack(fmt.strip_mention(event.get("text") or "", context.bot_user_id)).strip()
    with errors_shown(send, settings.ask_command):
        if not first_delivery(services, body):
            return
        _react(client.reactions_add, channel, ts)
        try:
            if is_usage(question):
                send(fmt.usage_message(settings.ask_command, context.bot_user_id))
            else:
                send(fmt.answer_message(services.search(question), asker=event.get("user")))
        finally:
            _react(client.reactions_remove, channel, ts)


def _react(call: Callable[..., Any], channel: str, ts: str) -> None:
    """Add or remove the working reaction; a failure here must not stop the answer."""
    try:
        call(channel=channel, timestamp=ts, name=WORKING_REACTION)
    except SlackApiError as exc:
        log.warning("%s failed: %s", call.__name__, exc.response.get("error"))
