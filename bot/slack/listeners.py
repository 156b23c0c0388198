"""The Bolt listeners, as module-level functions; `register` wires them to an app and its `Services`.

Every listener acks at once in the request thread (Slack waits 3 s at most) and
does its work on the listener pool (a lazy listener, or for /ask the bounded
`AskQueue`), so neither a slow search nor a busy pool can delay an ack; /ask
with no question gets its usage in the ack itself. Nothing is answered in
silence: a `KbError` is shown as written, anything else becomes a short
apology carrying an error id, and the traceback goes to the log under that id.

Slack redelivers an event it thinks was missed (X-Slack-Retry-Num); Bolt has
no setting to skip those, so answers to events are keyed on the event id
(`remember_event`), which also covers retries that arrive after a restart.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.dupes.feedback import NOT_SAME_ACTION, not_same_text, record_not_same
from bot.dupes.flag import receive
from bot.dupes.scan import watches_event
from bot.errors import KbError
from bot.reports import format_report
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.chat import change_from_event

log = logging.getLogger(__name__)

WORKING_REACTION = "eyes"
NOT_A_MEMBER = {"not_in_channel", "channel_not_found", "is_archived"}

Reply = Callable[[fmt.Message], object]


class Admission(Protocol):
    """Bounded admission of /ask answers to the listener pool (`bot.slack.app.AskQueue`)."""

    def reserve(self) -> bool: ...
    def start(self, work: Callable[[bool], object]) -> None: ...


def register(app: App, services: Services, asks: Admission) -> None:
    """Route /ask, its buttons, mentions and channel messages of `app` to the listeners below."""
    app.command(services.settings.ask_command)(_bound(take_command, services, asks))
    app.action(fmt.SHARE_ACTION)(ack=_ack, lazy=[_bound(share_answer, services)])
    app.action(NOT_SAME_ACTION)(ack=_ack, lazy=[_bound(not_same, services)])
    app.event("app_mention")(ack=_ack, lazy=[_bound(answer_mention, services)])
    app.event("message")(ack=_ack, lazy=[_logged(_bound(store_message, services))])


def _bound(listener: Callable[..., None], *leading: object) -> Callable[..., None]:
    """`listener` with its leading arguments given; Bolt injects the rest by their names."""
    bound = functools.partial(listener, *leading)
    bound.__name__ = listener.__name__  # type: ignore[attr-defined]  # Bolt names listeners in its logs
    return bound


def _ack(ack: Ack) -> None:
    ack()


def _is_usage(text: str) -> bool:
    return text.lower() in ("", "help")


def take_command(
    services: Services, asks: Admission, ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
) -> None:
    """/ask, in the request thread: usage in the ack, else queue the answer or say at once that the bot is busy."""
    if _is_usage(fmt.from_slack(command.get("text") or "").strip()):
        ack(response_type="ephemeral", **fmt.usage_message(services.settings.ask_command, context.bot_user_id))
        return
    if not asks.reserve():
        ack(response_type="ephemeral", **fmt.busy_message())
        return
    ack()
    asks.start(lambda in_time: answer_command(services, command, respond, in_time))


def answer_command(services: Services, command: dict[str, Any], respond: Respond, in_time: bool) -> None:
    """/ask: an admin's re-index, or a private answer with a Share button."""
    reply = _responder(respond)
    text = fmt.from_slack(command.get("text") or "").strip()
    with _errors_shown(reply, services.settings.ask_command):
        if not in_time:
            reply(fmt.busy_message())
        elif text.lower() == "reindex":
            reindex(services, command["user_id"], reply)
        else:
            reply(fmt.answer_message(services.search(text), shareable=True))


def reindex(services: Services, user_id: str, reply: Reply) -> None:
    if user_id not in services.settings.admin_user_ids:
        reply(fmt.reindex_refused_message())
        return
    report = services.reindex(on_start=lambda: reply(fmt.reindex_started_message()))
    reply(fmt.reindex_done_message(format_report(report)))


def share_answer(
    services: Services, body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond
) -> None:
    """Share in channel: the same answer, posted publicly for the person who asked."""
    reply = _responder(respond)
    with _errors_shown(reply, services.settings.ask_command):
        channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        message = fmt.answer_message(services.search(action["value"]), asker=body["user"]["id"])
        client.chat_postMessage(channel=channel, **message)
        respond(delete_original=True)  # the private copy is no longer needed


def not_same(services: Services, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
    """"Not the same question" on a duplicate flag: record the pair, and say so on the flag."""
    user, container = body["user"]["id"], body["container"]
    if record_not_same(services.store().messages, action["value"], user) is not None:
        client.chat_update(channel=container["channel_id"], ts=container["message_ts"],
                           text=not_same_text(user), blocks=[])


def answer_mention(
    services: Services, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    """@kb-bot question: answered in the thread, with 👀 on the question while working."""
    channel, ts = event["channel"], event["ts"]
    thread_ts = event.get("thread_ts") or ts
    settings = services.settings

    def reply(message: fmt.Message) -> None:
        client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)

    question = fmt.from_slack(fmt.strip_mention(event.get("text") or "", context.bot_user_id)).strip()
    with _errors_shown(reply, settings.ask_command):
        if not _first_delivery(services, body):
            return
        _react(client.reactions_add, channel, ts)
        try:
            if _is_usage(question):
                reply(fmt.usage_message(settings.ask_command, context.bot_user_id))
            else:
                reply(fmt.answer_message(services.search(question), asker=event.get("user")))
        finally:
            _react(client.reactions_remove, channel, ts)


def store_message(services: Services, event: dict[str, Any]) -> None:
    """Channel messages feed duplicate detection: posts are kept, edits and deletions applied."""
    if not watches_event(services.settings, event.get("channel", ""), event.get("channel_type")):
        return
    change = change_from_event(event)
    if change is not None:
        receive(services.store(), services.embedder, services.settings, change, to_plain=fmt.from_slack)


def _responder(respond: Respond) -> Reply:
    """Private replies through the response_url (ephemeral, for the person who asked)."""

    def reply(message: fmt.Message) -> None:
        response = respond(response_type="ephemeral", replace_original=False, **message)
        if response.status_code != 200:
            log.warning("response_url refused a reply: HTTP %s %s", response.status_code, response.body[:200])

    return reply


@contextmanager
def _errors_shown(reply: Reply, command: str) -> Iterator[None]:
    """Turn a failure into a visible reply; unexpected ones are logged under an error id."""
    try:
        yield
    except KbError as exc:
        _deliver(reply, fmt.problem_message(str(exc)))
    except SlackApiError as exc:
        if exc.response.get("error") not in NOT_A_MEMBER:
            _deliver(reply, fmt.apology_message(_log_error()))
        else:
            _deliver(reply, fmt.not_in_channel_message(command))
    except Exception:
        _deliver(reply, fmt.apology_message(_log_error()))


def _log_error() -> str:
    error_id = uuid.uuid4().hex[:8]
    log.exception("error_id=%s", error_id)
    return error_id


def _deliver(reply: Reply, message: fmt.Message) -> None:
    try:
        reply(message)
    except Exception:
        log.exception("could not deliver an error reply")


def _logged(listener: Callable[..., None]) -> Callable[..., None]:
    """Log a silent listener's failures with their traceback (Bolt logs only the message)."""

    def run(event: dict[str, Any]) -> None:
        try:
            listener(event)
        except Exception:
            _log_error()

    run.__name__ = listener.__name__
    return run


def _first_delivery(services: Services, body: dict[str, Any]) -> bool:
    """False for a redelivery (a Slack retry) of an event already handled."""
    event_id = body.get("event_id")
    return not event_id or services.store().messages.remember_event(event_id)


def _react(call: Callable[..., Any], channel: str, ts: str) -> None:
    """Add or remove the working reaction; a failure here must not stop the answer."""
    try:
        call(channel=channel, timestamp=ts, name=WORKING_REACTION)
    except SlackApiError as exc:
        log.warning("%s failed: %s", call.__name__, exc.response.get("error"))
