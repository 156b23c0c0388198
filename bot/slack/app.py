"""The Bolt app: one App over the Web API client, its listeners (`bot.slack.listeners`) on a bounded pool.

/ask answers are admitted to that pool through `bot.slack.listeners.ask.AskQueue`,
so a flood of questions is refused at once rather than answered a minute late.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from slack_bolt import App
from slack_sdk import WebClient

from bot.services import Services
from bot.slack.listeners import register

# Answers are CPU-bound (embedding, scoring): more threads than cores only compete
# with the request threads that must ack within Slack's 3 s. Measured with 20
# concurrent /ask on 2 cores (benchmarks/serving.py): 8 threads, ack p99 101-201 ms;
# one per core with onnxruntime spin-waiting off, 25 ms, and more answers/s.
LISTENER_THREADS = max(2, os.cpu_count() or 2)


def build_app(services: Services, client: WebClient) -> App:
    """A Bolt app wired to `services`; `client` must carry a valid bot token (auth.test runs here)."""
    settings = services.settings
    pool = ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="kb-bot-listener")
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
    register(app, services)
    return app
