"""The Share in channel button of a private answer."""

from __future__ import annotations

from typing import Any

from slack_bolt import Respond
from slack_sdk import WebClient

from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import errors_shown, private_sender


def share_answer(
    services: Services, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond
) -> None:
    """Share in channel: the same answer, posted publicly for the person who asked."""
    send = private_sender(respond)
    with errors_shown(send, services.settings.ask_command):
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        question, asked = fmt.share_request(action["value"])
        reply = fmt.answer_message(services.search(question, channel), asker=body["user"]["id"], question_id=asked)
        client.chat_postMessage(channel=channel, **reply)
        respond(delete_original=True)  # the private copy is no longer needed
