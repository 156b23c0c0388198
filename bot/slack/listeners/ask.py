"""/ask: usage or "busy" in the ack, else a private answer (with Share) or an admin's re-index, queued."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from slack_bolt import Ack, BoltContext, Respond

from bot.reports import format_report
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import Send, errors_shown, is_usage, private_sender


class Admission(Protocol):
    """Bounded admission of /ask answers to the listener pool (`bot.slack.app.AskQueue`)."""

    def reserve(self) -> bool: ...
    def start(self, work: Callable[[bool], object]) -> None: ...


def take_command(
    services: Services, asks: Admission, ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    """/ask, in the request thread: usage in the ack, else queue the answer or say at once that the bot is busy."""
    if is_usage(fmt.from_slack(command.get("text") or "").strip()):
        ack(response_type="ephemeral", **fmt.usage_message(services.settings.ask_command, context.bot_user_id))
        return
    if not asks.reserve():
        ack(response_type="ephemeral", **fmt.busy_message())
        return
    ack()
    asks.start(lambda in_time: answer_command(services, command, respond, in_time))


def answer_command(services: Services, command: dict[str, Any], respond: Respond, in_time: bool) -> None:
    """/ask: an admin's re-index, or a private answer with a Share button."""
    send = private_sender(respond)
    text = fmt.from_slack(command.get("text") or "").strip()
    with errors_shown(send, services.settings.ask_command):
        if not in_time:
            send(fmt.busy_message())
        elif text.lower() == "reindex":
            reindex(services, command["user_id"], send)
        else:
            send(fmt.answer_message(services.search(text), shareable=True))


def reindex(services: Services, user_id: str, send: Send) -> None:
    """/ask reindex: admins only; says when it starts and replies the indexer's report."""
    if user_id not in services.settings.admin_user_ids:
        send(fmt.reindex_refused_message())
        return
    report = services.reindex(on_start=lambda: send(fmt.reindex_started_message()))
    send(fmt.reindex_done_message(format_report(report)))
