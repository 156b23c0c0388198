"""Channel messages: the feed of duplicate detection (posts kept, edits and deletions applied)."""

from __future__ import annotations

from typing import Any

from bot.dupes.prepare import receive
from bot.dupes.scan import watches_event
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.chat import change_from_event


def store_message(services: Services, event: dict[str, Any]) -> None:
    """Channel messages feed duplicate detection: posts are kept, edits and deletions applied."""
    if not watches_event(services.dup_rules, event.get("channel", ""), event.get("channel_type")):
        return
    change = change_from_event(event)
    if change is not None:
        receive(services.store(), services.embedder, services.dup_rules, change, to_plain=fmt.from_slack)
