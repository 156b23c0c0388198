"""The "Not the same question" button of a duplicate flag (`bot.dupes.feedback`)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from bot.dupes.feedback import not_same_text, record_not_same
from bot.services import Services


def not_same(services: Services, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
    """"Not the same question" on a duplicate flag: record the pair, and say so on the flag."""
    user, container = body["user"]["id"], body["container"]
    if record_not_same(services.store().messages, action["value"], user) is not None:
        client.chat_update(channel=container["channel_id"], ts=container["message_ts"],
                           text=not_same_text(user), blocks=[])
