"""Helpful / Not helpful on an answer: one vote per person per answer, confirmed privately."""

from __future__ import annotations

from typing import Any

from slack_bolt import Respond

from bot.questions import record_vote
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import errors_shown, private_sender


def vote(services: Services, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
    """A vote on the answer whose question id the button carries; a second click changes it.

    Confirmed by an ephemeral message only the voter sees: no channel noise.
    """
    send = private_sender(respond)
    with errors_shown(send, services.settings.ask_command):
        helpful = fmt.VOTE_ACTIONS[action["action_id"]]
        kept = record_vote(services.store(), int(action["value"]), body["user"]["id"], helpful)
        send(fmt.vote_message(helpful, kept))
