"""The Bolt app: one App over the Web API client, its listeners (`bot.slack.listeners`) on a bounded pool.

/ask answers go through `AskQueue`, so a flood of questions is refused at once
rather than answered a minute late.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.services import Services
from bot.slack.listeners import register

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


def build_app(services: Services, client: WebClient) -> App:
    """A Bolt app wired to `services`; `client` must carry a valid bot token (auth.test runs here)."""
    settings = services.settings
    pool = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="kb-bot-listener")
    asks = AskQueue(pool, ASK_QUEUE_LIMIT, ASK_MAX_WAIT_SECONDS)
    # Under "slack_bolt", which bot.slack.server keeps at INFO or above: Bolt's DEBUG lines carry bodies.
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
    register(app, services, asks)
    return app


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
