"""The Bolt app: routes /ask, mentions, channel messages and the Share button.

Every listener acks at once in the request thread (Slack waits 3 s at most) and
does its work on the listener pool (a lazy listener, or for /ask the bounded
`AskQueue`), so neither a slow search nor a busy pool can delay an ack. Nothing is answered in silence: a
`KbError` is shown as written, anything else becomes a short apology carrying
an error id, and the traceback goes to the log under that id.

Slack redelivers an event it thinks was missed (X-Slack-Retry-Num); Bolt has
no setting to skip those, so answers to events are keyed on the event id
(`remember_event`), which also covers retries that arrive after a restart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.dupe_feedback import NOT_SAME_ACTION, not_same_text, record_not_same
from bot.dupe_scan import watches_event
from bot.duplicates import receive
from bot.errors import KbError
from bot.reports import format_report
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.chat import change_from_event

log = logging.getLogger(__name__)

# Answers are CPU-bound (embedding, scoring): more threads than cores only compete
# with the request threads that must ack within Slack's 3 s. Measured with 20
# concurrent /ask on 2 cores (benchmarks/serving.py): 8 threads, ack p99 101-201 ms;
# one per core with onnxruntime spin-waiting off, 25 ms, and more answers/s.
LISTENER_THREADS = max(2, os.cpu_count() or 2)
# A flood of /ask must not queue answers that arrive a minute late: at most ASK_QUEUE_LIMIT
# answers wait or run at once (20 clients asking back to back need 20), the rest are told at
# once to try again; an answer that could not start within ASK_MAX_WAIT_SECONDS says the same.
ASK_QUEUE_LIMIT = 32
ASK_MAX_WAIT_SECONDS = 10.0
WORKING_REACTION = "eyes"
NOT_A_MEMBER = {"not_in_channel", "channel_not_found", "is_archived"}

Reply = Callable[[fmt.Message], object]


def build_app(services: Services, client: WebClient) -> App:
    """A Bolt app wired to `services`; `client` must carry a valid bot token (auth.test runs here)."""
    settings = services.settings
    pool = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="kb-bot-listener")
    asks = AskQueue(pool, ASK_QUEUE_LIMIT, ASK_MAX_WAIT_SECONDS)
    # Under "slack_bolt", which bot.server keeps at INFO or above: Bolt's DEBUG lines carry bodies.
    # Bolt copies this logger's own level (not its effective one) to the loggers it makes.
    logger = logging.getLogger("slack_bolt.kb-bot")
    logger.setLevel(logger.getEffectiveLevel())
    app = App(
        name="kb-bot",
        client=client,
        logger=logger,
        signing_secret=settings.slack_signing_secret,
        process_before_response=True,  # ack in the request thread; the work runs on `pool`
        listener_executor=pool,
    )

    def take_command(ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext) -> None:
        """/ask, in the request thread: queue the answer, or say at once that the bot is busy."""
        if not asks.reserve():
            ack(response_type="ephemeral", **fmt.busy_message())
            return
        ack()
        asks.start(lambda in_time: answer_command(command, respond, context, in_time))

    def answer_command(command: dict[str, Any], respond: Respond, context: BoltContext, in_time: bool) -> None:
        """/ask: usage, an admin's re-index, or a private answer with a Share button."""
        reply = _responder(respond)
        text = fmt.from_slack(command.get("text") or "").strip()
        with _errors_shown(reply, settings.ask_command):
            if not in_time:
                reply(fmt.busy_message())
            elif text.lower() in ("", "help"):
                reply(fmt.usage_message(settings.ask_command, context.bot_user_id))
            elif text.lower() == "reindex":
                reindex(command["user_id"], reply)
            else:
                reply(fmt.answer_message(services.search(text), shareable=True))

    def reindex(user_id: str, reply: Reply) -> None:
        if user_id not in settings.admin_user_ids:
            reply(fmt.reindex_refused_message())
            return
        report = services.reindex(on_start=lambda: reply(fmt.reindex_started_message()))
        reply(fmt.reindex_done_message(format_report(report)))

    def share_answer(body: dict[str, Any], action: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """Share in channel: the same answer, posted publicly for the person who asked."""
        reply = _responder(respond)
        with _errors_shown(reply, settings.ask_command):
            channel = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
            message = fmt.answer_message(services.search(action["value"]), asker=body["user"]["id"])
            client.chat_postMessage(channel=channel, **message)
            respond(delete_original=True)  # the private copy is no longer needed

    def not_same(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """"Not the same question" on a duplicate flag: record the pair, and say so on the flag."""
        user, container = body["user"]["id"], body["container"]
        if record_not_same(services.store().messages, action["value"], user) is not None:
            client.chat_update(channel=container["channel_id"], ts=container["message_ts"],
                               text=not_same_text(user), blocks=[])

    def answer_mention(event: dict[str, Any], body: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        """@kb-bot question: answered in the thread, with 👀 on the question while working."""
        channel, ts = event["channel"], event["ts"]
        thread_ts = event.get("thread_ts") or ts

        def reply(message: fmt.Message) -> None:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, **message)

        question = fmt.from_slack(fmt.strip_mention(event.get("text") or "", context.bot_user_id)).strip()
        with _errors_shown(reply, settings.ask_command):
            if not _first_delivery(services, body):
                return
            _react(client.reactions_add, channel, ts)
            try:
                if question.lower() in ("", "help"):
                    reply(fmt.usage_message(settings.ask_command, context.bot_user_id))
                else:
                    reply(fmt.answer_message(services.search(question), asker=event.get("user")))
            finally:
                _react(client.reactions_remove, channel, ts)

    def store_message(event: dict[str, Any]) -> None:
        """Channel messages feed duplicate detection: posts are kept, edits and deletions applied."""
        channel = event.get("channel", "")
        if not watches_event(settings, channel, event.get("channel_type")):
            return
        change = change_from_event(event)
        if change is not None:
            receive(services.store(), services.embedder, settings, change, to_plain=fmt.from_slack)

    app.command(settings.ask_command)(take_command)
    app.action(fmt.SHARE_ACTION)(ack=_ack, lazy=[share_answer])
    app.action(NOT_SAME_ACTION)(ack=_ack, lazy=[not_same])
    app.event("app_mention")(ack=_ack, lazy=[answer_mention])
    app.event("message")(ack=_ack, lazy=[_logged(store_message)])
    return app


def _ack(ack: Ack) -> None:
    ack()


class AskQueue:
    """Bounded admission of /ask answers to the listener pool; safe across threads."""

    def __init__(self, pool: Executor, limit: int, max_wait: float) -> None:
        self._pool = pool
        self._limit = limit
        self._max_wait = max_wait
        self._pending = 0
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        """Take a place in the queue; False when it is full. Each place must be used by `start`."""
        with self._lock:
            if self._pending >= self._limit:
                return False
            self._pending += 1
            return True

    def start(self, work: Callable[[bool], object]) -> None:
        """Run `work(in_time)` on the pool; `in_time` is False if it waited longer than `max_wait`."""
        queued = time.monotonic()

        def run() -> None:
            try:
                work(time.monotonic() - queued <= self._max_wait)
            finally:
                with self._lock:
                    self._pending -= 1

        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shutting down: give the place back
            with self._lock:
                self._pending -= 1
            raise


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
