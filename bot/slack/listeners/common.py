"""What every listener shares: binding to `Services`, the bare ack, visible errors, first deliveries.

Nothing is answered in silence: a `KbError` is shown as written, anything
else becomes a short apology carrying an error id, and the traceback goes to
the log under that id. Slack redelivers an event it thinks was missed
(X-Slack-Retry-Num); Bolt has no setting to skip those, so answers to events
are keyed on the event id (`first_delivery`), which also covers retries that
arrive after a restart.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Ack, Respond
from slack_sdk.errors import SlackApiError

from bot.errors import KbError
from bot.services import Services
from bot.slack import format as fmt

log = logging.getLogger(__name__)

NOT_A_MEMBER = {"not_in_channel", "channel_not_found", "is_archived"}

Send = Callable[[fmt.Reply], object]  # how a listener delivers a reply where it belongs


def bound(listener: Callable[..., None], *leading: object) -> Callable[..., None]:
    """`listener` with its leading arguments given; Bolt injects the rest by their names."""
    partial = functools.partial(listener, *leading)
    partial.__name__ = listener.__name__  # type: ignore[attr-defined]  # Bolt names listeners in its logs
    return partial


def ack_only(ack: Ack) -> None:
    """The ack of a lazy listener: at once, in the request thread, before any work."""
    ack()


def is_usage(text: str) -> bool:
    return text.lower() in ("", "help")


def private_sender(respond: Respond) -> Send:
    """Private replies through the response_url (ephemeral, for the person who asked)."""

    def send(reply: fmt.Reply) -> None:
        response = respond(response_type="ephemeral", replace_original=False, **reply)
        if response.status_code != 200:
            log.warning("response_url refused a reply: HTTP %s %s", response.status_code, response.body[:200])

    return send


@contextmanager
def errors_shown(send: Send, command: str) -> Iterator[None]:
    """Turn a failure into a visible reply; unexpected ones are logged under an error id."""
    try:
        yield
    except KbError as exc:
        _deliver(send, fmt.problem_message(str(exc)))
    except SlackApiError as exc:
        if exc.response.get("error") not in NOT_A_MEMBER:
            _deliver(send, fmt.apology_message(log_error()))
        else:
            _deliver(send, fmt.not_in_channel_message(command))
    except Exception:
        _deliver(send, fmt.apology_message(log_error()))


def log_error() -> str:
    """Log the exception being handled under a new error id, and return the id."""
    error_id = uuid.uuid4().hex[:8]
    log.exception("error_id=%s", error_id)
    return error_id


def _deliver(send: Send, reply: fmt.Reply) -> None:
    try:
        send(reply)
    except Exception:
        log.exception("could not deliver an error reply")


def logged(listener: Callable[..., None]) -> Callable[..., None]:
    """Log a silent listener's failures with their traceback (Bolt logs only the message)."""

    def run(event: dict[str, Any]) -> None:
        try:
            listener(event)
        except Exception:
            log_error()

    run.__name__ = listener.__name__
    return run


def first_delivery(services: Services, body: dict[str, Any]) -> bool:
    """False for a redelivery (a Slack retry) of an event already handled."""
    event_id = body.get("event_id")
    return not event_id or services.store().messages.remember_event(event_id)
