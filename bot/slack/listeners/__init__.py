"""The Bolt listeners, one module per request kind; `register` wires them to an app and its `Services`.

Every listener acks at once in the request thread (Slack waits 3 s at most) and
does its work on the listener pool (a lazy listener, or for /ask the bounded
`AskQueue`), so neither a slow search nor a busy pool can delay an ack; /ask
with no question gets its usage in the ack itself.

Adding a listener: a module here with a module-level function (its first
arguments given by `bound`, the rest injected by Bolt by name), plus one line below.
"""

from __future__ import annotations

import re

from slack_bolt import App

from bot.dupes.feedback import NOT_SAME_ACTION
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners import ask, mention, messages, not_same, share, vote
from bot.slack.listeners.common import ack_only, bound, logged


def register(app: App, services: Services) -> None:
    """Route /ask, its buttons, mentions and channel messages of `app` to the listener modules.

    /ask answers share `app`'s listener pool with the lazy listeners, admitted by an `AskQueue`.
    """
    asks = ask.AskQueue(app.listener_runner.listener_executor, ask.ASK_QUEUE_LIMIT, ask.ASK_MAX_WAIT_SECONDS)
    app.command(services.settings.ask_command)(bound(ask.take_command, services, asks))
    app.action(fmt.SHARE_ACTION)(ack=ack_only, lazy=[bound(share.share_answer, services)])
    app.action(NOT_SAME_ACTION)(ack=ack_only, lazy=[bound(not_same.not_same, services)])
    app.action(re.compile(f"^({'|'.join(fmt.VOTE_ACTIONS)})$"))(ack=ack_only, lazy=[bound(vote.vote, services)])
    app.event("app_mention")(ack=ack_only, lazy=[bound(mention.answer_mention, services)])
    app.event("message")(ack=ack_only, lazy=[
        logged(bound(messages.store_message, services)), bound(mention.answer_follow_up, services),
    ])
