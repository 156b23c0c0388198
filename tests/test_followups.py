"""Follow-ups in a thread, through the loopback Slack with signed events: searched with the thread's questions."""

from __future__ import annotations

from typing import Any

import pytest

from bot.questions import follow_up_query
from tests import test_slack_app as slack
from tests.test_slack_app import TAXI, Bot, wait_until

fake, bot_db, start_bot = slack.fake, slack.bot_db, slack.start_bot  # the loopback Slack app's fixtures

ROOT = "1700000100.000100"
FOLLOW_UP = "what about contractors?"


@pytest.fixture
def app(start_bot) -> Bot:
    return start_bot()


def event(text: str, ts: str, *, kind: str = "message", thread_ts: str | None = None, user: str = "U123") -> dict[str, Any]:
    data = {"type": kind, "user": user, "text": text, "ts": ts, "channel": "C0001", "event_ts": ts,
            "channel_type": "channel"}
    return {**data, "thread_ts": thread_ts} if thread_ts else data


def first_source(text: str) -> str:
    """The path of the first source in an answer's text (`*1.* `NN`  *path › heading*`)."""
    line = next(line for line in text.splitlines() if line.startswith("*1.*"))
    return line.split("*")[3].split(" › ")[0]


def posts(bot: Bot, count: int) -> list[Any]:
    wait_until(lambda: len(bot.fake.calls_to("chat.postMessage")) >= count)
    return bot.fake.calls_to("chat.postMessage")


def test_a_reply_in_the_bots_thread_finds_what_the_bare_reply_does_not(app: Bot) -> None:
    app.event(event(f"<@UBOT> {FOLLOW_UP}", "1700000050.000100", kind="app_mention"), "EvBare")
    bare = posts(app, 1)[0]
    assert first_source(bare.text) != "hr/expenses.md"  # alone, "contractors" means the customers

    app.event(event(f"<@UBOT> {TAXI}", ROOT, kind="app_mention"), "EvRoot")
    posts(app, 2)
    app.event(event(FOLLOW_UP, "1700000200.000100", thread_ts=ROOT), "EvFollow")  # not addressed to the bot
    reply = posts(app, 3)[2]
    assert reply.params["thread_ts"] == ROOT
    assert reply.text.startswith(f"<@U123> asked: {FOLLOW_UP}")  # shown as written
    assert first_source(reply.text) == "hr/expenses.md"  # where contractors' expenses are said
    logged = app.services.store().questions.since(0)[-1]
    assert logged.text == f"{TAXI} {FOLLOW_UP}" and logged.channel == "C0001"


def test_a_mention_in_the_thread_is_answered_once_as_a_follow_up(app: Bot) -> None:
    app.event(event(f"<@UBOT> {TAXI}", ROOT, kind="app_mention"), "EvRoot")
    posts(app, 1)
    # Slack sends a mention in a thread twice: as app_mention and as a message.
    follow = f"<@UBOT> {FOLLOW_UP}"
    app.event(event(follow, "1700000200.000100", kind="app_mention", thread_ts=ROOT), "EvMention")
    app.event(event(follow, "1700000200.000100", thread_ts=ROOT), "EvMessage")
    reply = posts(app, 2)[1]
    app.finish()
    assert len(app.fake.calls_to("chat.postMessage")) == 2
    assert first_source(reply.text) == "hr/expenses.md"


def test_replies_in_threads_the_bot_never_answered_in_are_left_alone(app: Bot) -> None:
    app.event(event("does anyone know the wifi password?", "1700000300.000100", thread_ts="1700000000.000001"), "Ev1")
    app.event(event(f"<@UBOT> {TAXI}", ROOT, kind="app_mention"), "EvRoot")
    posts(app, 1)
    app.event({**event("thanks!", "1700000400.000100", thread_ts=ROOT, user="UBOT"), "bot_id": "B1"}, "EvOwn")
    app.finish()
    assert len(app.fake.calls_to("chat.postMessage")) == 1


def test_a_follow_up_reads_only_the_last_two_questions() -> None:
    assert follow_up_query(["a?", "b?", "c?"], "d?") == "b? c? d?"
    assert follow_up_query([], "d?") == "d?"
