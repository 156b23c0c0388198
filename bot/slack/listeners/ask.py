"""/ask: usage or "busy" in the ack, else a private answer (with Share) or an admin's re-index, queued."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from slack_bolt import Ack, BoltContext, Respond

from bot.reports import format_report
from bot.services import Services
from bot.slack import format as fmt
from bot.slack.listeners.common import Send, errors_shown, is_usage, private_sender

# A flood of /ask must not queue answers that arrive a minute late: at most ASK_QUEUE_LIMIT
# answers wait or run at once (20 clients asking back to back need 20), the rest are told at
# once to try again; an answer that could not start within ASK_MAX_WAIT_SECONDS says the same.
ASK_QUEUE_LIMIT = 32
ASK_MAX_WAIT_SECONDS = 10.0


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


def take_command(
    services: Services, asks: AskQueue, ack: Ack, command: dict[str, Any], respond: Respond, context: BoltContext
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
            channel = command.get("channel_id")
            result = services.search(text, channel)
            asked = services.log_question(result, channel=channel, user=command.get("user_id"))
            send(fmt.answer_message(result, shareable=True, question_id=asked))


def reindex(services: Services, user_id: str, send: Send) -> None:
    """/ask reindex: admins only; says when it starts and replies the indexer's report."""
    if user_id not in services.settings.admin_user_ids:
        send(fmt.reindex_refused_message())
        return
    report = services.reindex(on_start=lambda: send(fmt.reindex_started_message()))
    send(fmt.reindex_done_message(format_report(report)))
