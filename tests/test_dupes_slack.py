"""Duplicate flagging against a loopback Slack (tests/slack_fake.py), with the real model, on each store.

The end-to-end test runs what `kb-bot serve` runs: signed events into the real
WSGI app over HTTP, the scheduler started by `Services.start_background_jobs`, then a
restart on the same database, and a backfill of messages posted while
the bot was down.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from click.testing import CliRunner

from bot.cli import cli
from bot.dupes.match import Pair
from bot.dupes.rules import DupRules
from bot.dupes.scan import backfill, scan_and_flag
from bot.embeddings import LocalEmbedder
from bot.scheduler import JOB_ID, build_scheduler
from bot.services import Services
from bot.settings import Settings
from bot.slack import chat as slack_chat
from bot.slack.chat import SlackChat
from bot.slack.server import EVENTS_PATH, create_app, http_server, make_web_client
from bot.store import open_store
from tests.conftest import make_settings, stop_http_server
from tests.slack_fake import Call, FakeSlack, event_envelope, post_signed

SECRET = "signing-secret"
VPN = "How do I reset my VPN password? It expired over the weekend."
VPN_AGAIN = "my vpn password expired, how do I reset it?"
VPN_THIRD = "VPN password expired again, what is the way to reset my VPN password?"
OFFSITE = "Who is going to the offsite in Lisbon? Trying to coordinate flights."
NOW = time.time()


def stamp(minutes_ago: float) -> str:
    return f"{NOW - minutes_ago * 60:.6f}"


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.channels = [{"id": "C1", "name": "general"}, {"id": "C2", "name": "it-help"}]
        yield fake


def slack_settings(tmp_path: Path, fake: FakeSlack, **overrides: object) -> Settings:
    return make_settings(
        tmp_path, slack_bot_token=fake.bot_token, slack_signing_secret=SECRET, slack_api_url=fake.api_url, **overrides
    )


@pytest.fixture
def settings(tmp_path: Path, fake: FakeSlack, kb_db: Path | str) -> Settings:
    return slack_settings(tmp_path, fake, db_path=kb_db)


def scan(settings: Settings, embedder: LocalEmbedder) -> list[Pair]:
    with open_store(settings.db_path) as store:
        return scan_and_flag(store, embedder, DupRules.from_settings(settings), SlackChat(make_web_client(settings)))


def post(settings: Settings, channel: str, ts: str, text: str, user: str) -> None:
    with open_store(settings.db_path) as store:
        store.messages.record_message(channel=channel, ts=ts, user=user, text=text)


def replies(fake: FakeSlack) -> list[Call]:
    return fake.calls_to("chat.postMessage")


def unscanned(settings: Settings) -> list[str]:
    with open_store(settings.db_path) as store:
        return [m.ts for m in store.messages.unscanned_messages()]


def flagged_rows(settings: Settings) -> list[tuple]:
    with open_store(settings.db_path) as store:
        return [tuple(r) for r in store.conn.execute("SELECT later_ts, earlier_ts, action FROM flagged_pairs")]


# --- end to end ---------------------------------------------------------------------


def message_event(channel: str, ts: str, text: str, user: str) -> dict:
    return {"type": "message", "channel": channel, "channel_type": "channel", "user": user, "text": text,
            "ts": ts, "event_ts": ts}


@contextmanager
def serving(settings: Settings, embedder: LocalEmbedder) -> Iterator[tuple[Services, str]]:
    """What `kb-bot serve` runs over HTTP, on a free port; background jobs are started by the caller."""
    client = make_web_client(settings)
    services = Services(settings, embedder, SlackChat(client))
    services.store().stats()  # as serve does: the schema is migrated before listeners run
    app = create_app(services, client)
    server = http_server(app, "127.0.0.1", 0, SECRET)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield services, f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}"
    finally:
        app.listener_runner.listener_executor.shutdown(wait=True)  # events delivered are handled
        services.close()  # stops the scheduler, waiting for a scan in progress
        stop_http_server(server, thread)


def deliver(url: str, event: dict, event_id: str) -> None:
    reply = post_signed(url, json.dumps(event_envelope(event, event_id=event_id)), SECRET,
                        content_type="application/json")
    assert reply.status == 200, reply.body


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def run_background_scan(services: Services, fake: FakeSlack) -> None:
    """Start the serve-time jobs and wait until their start-up scan has read the channels."""
    before = len(fake.calls_to("conversations.history"))
    services.start_background_jobs()
    fake.wait_calls("conversations.history", before + len(fake.channels))


def test_end_to_end_events_scheduler_restart_and_backfill(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    first, other, again = stamp(30), stamp(20), stamp(10)
    events = [("C1", first, VPN, "U1"), ("C1", other, OFFSITE, "U2"), ("C2", again, VPN_AGAIN, "U3")]
    for channel, ts, text, user in events:
        fake.history.setdefault(channel, []).append(message_event(channel, ts, text, user))

    # 1. Messages arrive as signed events; the scheduler's start-up scan flags the repeat once.
    with serving(settings, embedder) as (services, url):
        for n, (channel, ts, text, user) in enumerate(events):
            deliver(url, message_event(channel, ts, text, user), f"Ev{n}")
        wait_until(lambda: len(unscanned(settings)) == 3)
        run_background_scan(services, fake)
    [reply] = replies(fake)
    assert reply.params["channel"] == "C2" and reply.params["thread_ts"] == again
    link = f"https://fake.slack.com/archives/C1/p{first.replace('.', '')}"
    assert reply.params["text"].startswith(f"This looks like <{link}>: the same question about “")
    assert [c.params["message_ts"] for c in fake.calls_to("chat.getPermalink")] == [first]
    assert flagged_rows(settings) == [(again, first, "thread")]
    assert unscanned(settings) == []

    # 2. A second run flags nothing new.
    assert scan(settings, embedder) == []
    assert len(replies(fake)) == 1

    # 3. A restart on the same file flags nothing new, even if Slack redelivers an event.
    with serving(settings, embedder) as (services, url):
        deliver(url, message_event("C2", again, VPN_AGAIN, "U3"), "Ev2")
        run_background_scan(services, fake)
    assert len(replies(fake)) == 1

    # 4. Messages posted while the bot was down come from conversations.history and are flagged.
    down = stamp(5)
    fake.history["C1"].append(message_event("C1", down, VPN_THIRD, "U4"))
    with serving(settings, embedder) as (services, url):
        run_background_scan(services, fake)
    assert len(replies(fake)) == 2
    late = replies(fake)[-1]
    assert late.params["channel"] == "C1" and late.params["thread_ts"] == down
    [since] = [c for c in fake.calls_to("conversations.history")[-2:] if c.params["channel"] == "C1"]
    assert since.params["oldest"] == other  # from the cursor on
    with open_store(settings.db_path) as store:
        assert store.messages.channel_cursor("C1") == down
    assert unscanned(settings) == []


# --- flagging rules ----------------------------------------------------------------------


def test_a_failed_reply_is_retried_by_the_next_run(settings: Settings, fake: FakeSlack, embedder: LocalEmbedder) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C1", stamp(10), VPN_AGAIN, "U2")
    fake.fail("chat.postMessage", "internal_error")
    assert scan(settings, embedder) == []
    assert unscanned(settings) == [stamp(10)] and flagged_rows(settings) == []
    [pair] = scan(settings, embedder)
    assert pair.later.ts == stamp(10)
    assert len(replies(fake)) == 2 and unscanned(settings) == []


def test_a_permanent_failure_is_given_up(settings: Settings, fake: FakeSlack, embedder: LocalEmbedder) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C1", stamp(10), VPN_AGAIN, "U2")
    fake.fail("chat.postMessage", "is_archived")
    assert scan(settings, embedder) == []
    assert unscanned(settings) == [] and flagged_rows(settings) == []


def test_an_earlier_twin_deleted_in_slack_is_not_flagged(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C1", stamp(10), VPN_AGAIN, "U2")
    fake.fail("chat.getPermalink", "message_not_found")  # deleted while the bot was down
    assert scan(settings, embedder) == []
    with open_store(settings.db_path) as store:
        assert store.messages.get_message("C1", stamp(20)) is None
    assert unscanned(settings) == [stamp(10)]  # judged again, without the deleted twin
    assert scan(settings, embedder) == []
    assert replies(fake) == [] and unscanned(settings) == []


def test_each_later_message_is_flagged_once_against_its_best_match(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    post(settings, "C1", stamp(30), VPN, "U1")
    post(settings, "C2", stamp(20), VPN_AGAIN, "U2")
    post(settings, "C1", stamp(10), VPN_THIRD, "U3")
    pairs = scan(settings, embedder)
    assert [(p.later.ts, p.earlier.ts) for p in pairs] == [(stamp(20), stamp(30)), (stamp(10), stamp(20))]
    assert [c.params["thread_ts"] for c in replies(fake)] == [stamp(20), stamp(10)]


def test_a_scan_cut_short_after_posting_never_posts_twice(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C1", stamp(10), VPN_AGAIN, "U2")
    assert len(scan(settings, embedder)) == 1
    with open_store(settings.db_path) as store:  # as if the process died before marking it scanned
        store.conn.execute("UPDATE messages SET scanned_at = NULL")
    assert scan(settings, embedder) == []
    assert len(replies(fake)) == 1 and unscanned(settings) == []


@pytest.mark.parametrize("action", ["digest", "both"])
def test_digest_lists_the_pairs_in_the_report_channel(
    tmp_path: Path, kb_db: Path | str, fake: FakeSlack, embedder: LocalEmbedder, action: str
) -> None:
    settings = slack_settings(tmp_path, fake, db_path=kb_db, dup_action=action, dup_report_channel="CREPORT")
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C2", stamp(10), VPN_AGAIN, "U2")
    scan(settings, embedder)
    digest = [c for c in replies(fake) if c.params["channel"] == "CREPORT"]
    threaded = [c for c in replies(fake) if c.params.get("thread_ts")]
    assert len(digest) == 1 and len(threaded) == (1 if action == "both" else 0)
    text = digest[0].params["text"]
    assert f"archives/C2/p{stamp(10).replace('.', '')}|This message>" in text
    assert f"archives/C1/p{stamp(20).replace('.', '')}|an earlier one>" in text
    assert flagged_rows(settings) == [(stamp(10), stamp(20), action)]
    assert scan(settings, embedder) == [] and len(replies(fake)) == len(digest) + len(threaded)


def test_a_failed_digest_is_retried(tmp_path: Path, kb_db: Path | str, fake: FakeSlack, embedder: LocalEmbedder) -> None:
    settings = slack_settings(tmp_path, fake, db_path=kb_db, dup_action="digest", dup_report_channel="CREPORT")
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C2", stamp(10), VPN_AGAIN, "U2")
    fake.fail("chat.postMessage", "service_unavailable")
    assert scan(settings, embedder) == []
    assert flagged_rows(settings) == [] and unscanned(settings) == [stamp(10)]
    assert len(scan(settings, embedder)) == 1


# --- backfill ------------------------------------------------------------------------------


def test_backfill_pages_through_history_and_waits_out_rate_limits(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_chat, "HISTORY_PAGE", 2)
    old = [message_event("C1", stamp(50 - i), f"old message number {i} about nothing much", "U1") for i in range(5)]
    fake.history["C1"] = [*old, {"type": "message", "subtype": "channel_join", "user": "U9", "ts": stamp(44)}]
    chat = SlackChat(make_web_client(settings))
    fake.rate_limit("conversations.history")
    with open_store(settings.db_path) as store:
        assert backfill(store, chat, DupRules.from_settings(settings), ["C1"]) == 5  # the join is not a post
        assert store.messages.unscanned_messages() == []  # a first look is context only
        assert store.messages.channel_cursor("C1") == stamp(44)
        fake.history["C1"].append(message_event("C1", stamp(3), VPN, "U2"))
        assert backfill(store, chat, DupRules.from_settings(settings), ["C1"]) == 1
        assert [m.ts for m in store.messages.unscanned_messages()] == [stamp(3)]
    calls = fake.calls_to("conversations.history")
    assert len(calls) == 1 + 3 + 1  # the 429, three pages, then one page since the cursor
    assert calls[-1].params["oldest"] == stamp(44)


def test_dup_channels_narrow_the_channels_the_bot_is_in(
    tmp_path: Path, kb_db: Path | str, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    settings = slack_settings(tmp_path, fake, db_path=kb_db, dup_channels=("C2", "C5"))  # the bot is not in C5
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C2", stamp(10), VPN_AGAIN, "U2")
    assert scan(settings, embedder) == []  # C1 is not watched
    assert {c.params["channel"] for c in fake.calls_to("conversations.history")} == {"C2"}


def tombstone(channel: str, ts: str) -> dict:
    """What Slack leaves of a deleted message that has replies."""
    return {"type": "message", "subtype": "tombstone", "text": "This message was deleted.", "user": "USLACKBOT",
            "hidden": True, "ts": ts, "thread_ts": ts, "reply_count": 1}


@pytest.mark.parametrize("seen_by", ["event", "backfill"])
def test_a_deleted_thread_parent_is_never_linked_as_the_earlier_question(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder, seen_by: str
) -> None:
    parent, later = stamp(30), stamp(10)
    with serving(settings, embedder) as (services, url):
        deliver(url, message_event("C1", parent, VPN, "U1"), "EvParent")
        wait_until(lambda: parent in unscanned(settings))  # events are handled on a pool, in any order
        if seen_by == "event":
            deliver(url, {"type": "message", "subtype": "message_changed", "channel": "C1", "channel_type": "channel",
                          "hidden": True, "message": tombstone("C1", parent), "ts": stamp(11)}, "EvDeleted")
            wait_until(lambda: parent not in unscanned(settings))
        else:  # deleted while the bot was down: the history shows the placeholder
            fake.history["C1"] = [tombstone("C1", parent)]
        deliver(url, message_event("C2", later, VPN_AGAIN, "U2"), "EvLater")
        wait_until(lambda: later in unscanned(settings))
    assert scan(settings, embedder) == []
    assert replies(fake) == [] and unscanned(settings) == []


def test_a_scan_drops_messages_a_week_past_the_window(settings: Settings, fake: FakeSlack,
                                                       embedder: LocalEmbedder) -> None:
    window = settings.dup_window_days * 24 * 60
    post(settings, "C1", stamp(window + 7 * 24 * 60 + 5), OFFSITE, "U1")  # out of every window for over a week
    post(settings, "C1", stamp(window + 7 * 24 * 60 - 5), VPN, "U2")  # out of the window, within the week
    post(settings, "C2", stamp(10), VPN_AGAIN, "U3")
    scan(settings, embedder)
    with open_store(settings.db_path) as store:
        kept = sorted(ts for (ts,) in store.conn.execute("SELECT ts FROM messages"))
    assert kept == [stamp(window + 7 * 24 * 60 - 5), stamp(10)]


@pytest.mark.usefixtures("slack_env")
def test_dry_run_lists_exactly_what_a_scan_flags(settings: Settings, fake: FakeSlack, embedder: LocalEmbedder) -> None:
    post(settings, "C9", stamp(30), VPN, "U1")  # a channel the bot has left
    post(settings, "C1", stamp(20), VPN_AGAIN, "U2")
    post(settings, "C2", stamp(10), VPN_THIRD, "U3")
    with serving(settings, embedder) as (services, url):  # a private channel's event without channel_type
        private = message_event("G7", stamp(25), VPN, "U4")
        del private["channel_type"]
        deliver(url, private, "EvPrivate")
    args = ["--env-file", "/nonexistent", "dupes", "scan", "--json", "--db", str(settings.db_path)]

    dry = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert replies(fake) == [] and len(unscanned(settings)) == 3  # nothing posted or marked
    real = CliRunner().invoke(cli, args)

    assert real.exit_code == 0, real.output
    assert json.loads(dry.output) == json.loads(real.output)
    [pair] = json.loads(dry.output)["pairs"]
    assert pair["later"] == {"channel": "C2", "ts": stamp(10), "text": VPN_THIRD}
    assert pair["earlier"] == {"channel": "C1", "ts": stamp(20), "text": VPN_AGAIN}
    assert "G7" not in dry.output and "C9" not in dry.output


@pytest.mark.parametrize("allowed", [False, True])
def test_a_private_channel_in_dup_channels_is_watched_only_when_allowed(
    tmp_path: Path, kb_db: Path | str, fake: FakeSlack, embedder: LocalEmbedder, caplog: pytest.LogCaptureFixture,
    allowed: bool,
) -> None:
    fake.channels.append({"id": "G1", "name": "hr-private", "is_private": True})
    settings = slack_settings(tmp_path, fake, db_path=kb_db, dup_channels=("C1", "G1"),
                              **({"dup_allow_private": True} if allowed else {}))
    private = {**message_event("G1", stamp(30), VPN, "U1"), "channel_type": "group"}
    fake.history["G1"] = [private]
    with serving(settings, embedder) as (services, url):
        deliver(url, private, "EvPrivate")
        deliver(url, message_event("C1", stamp(10), VPN_AGAIN, "U2"), "EvPublic")
        wait_until(lambda: stamp(10) in unscanned(settings))
    scan(settings, embedder)

    links = [c.params["text"] for c in replies(fake)]
    if allowed:
        assert len(links) == 1 and "/archives/G1/" in links[0]
    else:
        assert links == []
        assert {c.params["channel"] for c in fake.calls_to("conversations.history")} == {"C1"}
        assert "not watching G1 from DUP_CHANNELS" in caplog.text and "DUP_ALLOW_PRIVATE=true" in caplog.text


def test_a_channel_that_fails_does_not_stop_the_others(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    fake.fail("conversations.history", "not_in_channel")
    fake.history["C2"] = [message_event("C2", stamp(5), VPN, "U1")]
    with open_store(settings.db_path) as store:
        assert backfill(store, SlackChat(make_web_client(settings)), DupRules.from_settings(settings), ["C1", "C2"]) == 1
        assert store.messages.channel_cursor("C1") is None and store.messages.channel_cursor("C2") == stamp(5)


# --- scheduler and CLI -----------------------------------------------------------------


def test_the_scheduler_never_overlaps_and_survives_a_failed_run(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C1", stamp(10), VPN_AGAIN, "U2")
    fake.fail("users.conversations", "internal_error")  # the start-up run fails
    runs: list[JobExecutionEvent] = []
    ran = threading.Semaphore(0)

    def record(event: JobExecutionEvent) -> None:
        runs.append(event)
        ran.release()

    scheduler = build_scheduler(settings, embedder, SlackChat(make_web_client(settings)))
    scheduler.add_listener(record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    job = scheduler.get_job(JOB_ID)
    assert job.max_instances == 1 and job.coalesce is True
    scheduler.start()
    try:
        assert ran.acquire(timeout=30)
        assert runs[0].exception is not None and replies(fake) == []
        assert unscanned(settings) == [stamp(20), stamp(10)]
        scheduler.get_job(JOB_ID).modify(next_run_time=datetime.now(UTC))  # the next run, now
        assert ran.acquire(timeout=30)
        assert runs[1].exception is None and len(replies(fake)) == 1
        assert scheduler.get_job(JOB_ID) is not None  # still scheduled
    finally:
        scheduler.shutdown()


@pytest.fixture
def slack_env(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)
    monkeypatch.setenv("SLACK_API_URL", fake.api_url)


@pytest.mark.usefixtures("slack_env")
def test_cli_scan_flags_and_prints_json(settings: Settings, fake: FakeSlack) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C2", stamp(10), VPN_AGAIN, "U2")
    args = ["--env-file", "/nonexistent", "dupes", "scan", "--json", "--db", str(settings.db_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    [pair] = json.loads(result.output)["pairs"]
    assert (pair["later"]["ts"], pair["earlier"]["ts"]) == (stamp(10), stamp(20))
    assert len(replies(fake)) == 1
    again = CliRunner().invoke(cli, args)
    assert json.loads(again.output) == {"pairs": []} and len(replies(fake)) == 1


@pytest.mark.usefixtures("slack_env")
def test_cli_backfill_fetches_without_flagging(settings: Settings, fake: FakeSlack) -> None:
    fake.history["C1"] = [message_event("C1", stamp(20), VPN, "U1"), message_event("C1", stamp(10), VPN_AGAIN, "U2")]
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "dupes", "backfill", "--db", str(settings.db_path)])
    assert result.exit_code == 0, result.output
    assert "Fetched 2 new message(s) from 2 channel(s)." in result.output
    assert replies(fake) == []
