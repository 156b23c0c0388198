"""The Slack bot end to end: signed requests into the real HTTP endpoint (waitress),
the real index and bundled model, and a loopback Slack Web API that records
every reply. Only Slack itself is faked."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from click.testing import CliRunner
from slack_bolt import App

from bot.cli import cli
from bot.dupes.prepare import preparation_label
from bot.embeddings import LocalEmbedder
from bot.errors import LockHeldError, SettingsError
from bot.indexer import index_folder
from bot.lock import index_lock
from bot.services import Services
from bot.settings import Settings
from bot.slack import app as slack_app
from bot.slack import format as fmt
from bot.slack.chat import SlackChat
from bot.slack.gate import MAX_BODY_BYTES
from bot.slack.listeners import ask as ask_listener
from bot.slack.listeners.ask import ASK_QUEUE_LIMIT
from bot.slack.server import create_app, http_server, make_web_client, socket_mode_handler
from bot.store import cache_key, open_store
from tests.conftest import make_settings, sql, stop_http_server, vector_table
from tests.slack_fake import (
    Call,
    FakeSlack,
    Reply,
    command_payload,
    event_envelope,
    form,
    interaction_form,
    iter_blocks_text,
    post_signed,
    share_click_payload,
)

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
ADMIN = "UADMIN"
TAXI = "how do I get reimbursed for a taxi"
SCORE = re.compile(r"^\*1\.\* `\d{1,3}`", re.M)  # the relevance (0-100) that ordered the list
SLACK_LIMIT_SECONDS = 3.0  # Slack gives up on an ack after 3 s


@dataclass
class Bot:
    """The app under test, served by waitress on a free port."""

    fake: FakeSlack
    services: Services
    app: App
    base_url: str

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def post(self, body: str, *, content_type: str = "application/x-www-form-urlencoded", **kwargs: Any) -> Reply:
        return post_signed(self.base_url + "slack/events", body, SECRET, content_type=content_type, **kwargs)

    def ask(self, text: str, reply_to: str, *, user_id: str = "U123") -> Reply:
        url = self.fake.response_url(reply_to)
        return self.post(form(command_payload(text, response_url=url, user_id=user_id)))

    def event(self, event: dict[str, Any], event_id: str, headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps(event_envelope(event, event_id=event_id))
        return self.post(body, content_type="application/json", headers=headers)

    def finish(self) -> None:
        """Wait until every listener has finished; the bot takes no more work after this."""
        self.app.listener_runner.listener_executor.shutdown(wait=True)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as fake:
        yield fake


@pytest.fixture
def bot_db(sample_kb_db: Path | str) -> Path | str:
    """A private copy of the indexed sample database, on each store in turn."""
    return sample_kb_db


def bot_settings(tmp_path: Path, fake: FakeSlack, db: Path | str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db_path": db, "slack_bot_token": BOT_TOKEN, "slack_signing_secret": SECRET,
        "slack_api_url": fake.api_url, "admin_user_ids": (ADMIN,),
    }
    return make_settings(tmp_path, **{**values, **overrides})


@pytest.fixture
def start_bot(
    fake: FakeSlack, bot_db: Path | str, embedder: LocalEmbedder, tmp_path: Path
) -> Iterator[Callable[..., Bot]]:
    stops: list[Callable[[], None]] = []

    def start(**overrides: Any) -> Bot:
        settings = bot_settings(tmp_path, fake, bot_db, **overrides)
        client = make_web_client(settings)
        services = Services(settings, embedder, SlackChat(client))
        app = create_app(services, client)
        server = http_server(app, "127.0.0.1", 0, SECRET)
        thread = threading.Thread(target=server.run, name="waitress", daemon=True)
        thread.start()

        def stop() -> None:
            stop_http_server(server, thread)
            app.listener_runner.listener_executor.shutdown(wait=True)
            services.close()

        stops.append(stop)
        return Bot(fake, services, app, f"http://127.0.0.1:{server.effective_port}/")

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def bot(start_bot: Callable[..., Bot]) -> Bot:
    return start_bot()


def only(calls: list[Call]) -> Call:
    assert len(calls) == 1, [c.params for c in calls]
    return calls[0]


def share_button(call: Call) -> dict[str, Any] | None:
    for block in call.params["blocks"]:
        for element in block.get("elements") or []:
            if element.get("action_id") == "share_answer":
                return element
    return None


def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- /ask --------------------------------------------------------------------------------


def test_ask_acks_within_3_s_then_answers_privately_with_sources_and_scores(bot: Bot) -> None:
    reply = bot.ask(TAXI, "ask-1")

    assert reply.status == 200
    assert reply.seconds < SLACK_LIMIT_SECONDS
    answer = only(bot.fake.wait_responses("ask-1"))
    assert answer.params["response_type"] == "ephemeral"
    first_passage = answer.params["blocks"][1]["text"]["text"]
    assert "hr/expenses.md" in first_passage
    assert SCORE.search(first_passage)
    assert TAXI in answer.text
    assert fmt.share_request(share_button(answer)["value"]) == (TAXI, 1)  # the question and its log id


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP"])
def test_empty_or_help_shows_usage_in_the_ack(bot: Bot, text: str) -> None:
    reply = bot.ask(text, "usage")
    assert reply.status == 200

    usage = Call("ack", "", json.loads(reply.body), {})  # at once, in the ack: no answer follows it
    assert usage.params["response_type"] == "ephemeral"
    assert "/ask how do I get reimbursed for a taxi" in usage.text
    assert "/ask reindex" in usage.text
    assert "<@UBOT>" in usage.text  # how to mention the bot, with its real name
    bot.finish()
    assert bot.fake.responses("usage") == []


def test_a_40_kb_question_is_acked_and_answered_within_slack_limits(bot: Bot) -> None:
    question = "taxi reimbursement receipts " * 1500  # ~42 KB
    reply = bot.ask(question, "long")

    assert reply.status == 200 and reply.seconds < SLACK_LIMIT_SECONDS
    answer = only(bot.fake.wait_responses("long"))
    blocks = answer.params["blocks"]
    assert len(blocks) <= 50
    assert all(len(block["text"]["text"]) <= 3000 for block in blocks if "text" in block)
    assert "first 4,000 characters" in answer.text
    assert "hr/expenses.md" in answer.text
    assert share_button(answer) is None  # too long for a button's value; the answer stays private
    assert len(answer.params["text"]) < 200


def test_share_posts_the_answer_publicly_for_the_asker(bot: Bot) -> None:
    bot.ask(TAXI, "ask")
    button = share_button(only(bot.fake.wait_responses("ask")))
    payload = share_click_payload(button["value"], response_url=bot.fake.response_url("click"), channel_id="C0042")

    reply = bot.post(interaction_form(payload))

    assert reply.status == 200 and reply.seconds < SLACK_LIMIT_SECONDS
    post = only(bot.fake.wait_calls("chat.postMessage"))
    assert post.params["channel"] == "C0042"
    assert "thread_ts" not in post.params
    assert post.text.startswith(f"<@U123> asked: {TAXI}")
    assert "hr/expenses.md" in post.text and SCORE.search(post.text)
    assert share_button(post) is None
    assert only(bot.fake.wait_responses("click")).params["delete_original"] is True


def test_share_where_the_bot_is_not_a_member_says_how_to_invite_it(bot: Bot) -> None:
    bot.fake.fail("chat.postMessage", "not_in_channel")
    payload = share_click_payload(TAXI, response_url=bot.fake.response_url("click"))

    assert bot.post(interaction_form(payload)).status == 200

    hint = only(bot.fake.wait_responses("click"))
    assert hint.params["response_type"] == "ephemeral"
    assert "/invite" in hint.text


def test_twenty_concurrent_asks_are_all_acked_within_3_s_and_answered(bot: Bot) -> None:
    count = 20
    start = threading.Barrier(count)
    replies: list[Reply | None] = [None] * count

    def ask(i: int) -> None:
        start.wait()
        replies[i] = bot.ask(f"{TAXI} ({i})", f"c{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status for r in replies if r] == [200] * count
    assert max(r.seconds for r in replies if r) < SLACK_LIMIT_SECONDS
    bot.fake.wait_responses(count=count)
    for i in range(count):
        assert "hr/expenses.md" in only(bot.fake.responses(f"c{i}")).text


# --- errors ------------------------------------------------------------------------------


def test_unexpected_failure_gets_an_apology_with_an_error_id_found_in_the_log(
    start_bot: Callable[..., Bot], bot_db: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_store(bot_db) as store:  # a damaged index: the active generation's vectors are gone
        store.conn.execute(f"DROP TABLE {vector_table(store, store.active_generation().id)}")
    bot = start_bot()
    caplog.set_level(logging.DEBUG)

    assert bot.ask(TAXI, "broken").status == 200

    apology = only(bot.fake.wait_responses("broken")).text
    error_id = re.search(r"Error id `([0-9a-f]{8})`", apology).group(1)
    bot.finish()
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info, "the full error is logged under the error id"
    assert "Traceback" not in apology and "vec_chunks" not in apology
    assert BOT_TOKEN not in caplog.text and SECRET not in caplog.text


def test_a_user_facing_error_is_shown_as_written(start_bot: Callable[..., Bot], kb_db: Path | str) -> None:
    bot = start_bot(db_path=kb_db)  # a database nobody has indexed yet

    bot.ask(TAXI, "no-index")

    message = only(bot.fake.wait_responses("no-index")).text
    assert "No index yet" in message and "kb-bot index" in message


# --- /ask reindex --------------------------------------------------------------------------


def test_reindex_by_an_admin_reports_the_summary_when_done(bot: Bot) -> None:
    assert bot.ask("reindex", "reindex", user_id=ADMIN).status == 200

    started, done = bot.fake.wait_responses("reindex", count=2)
    assert "Re-indexing" in started.text
    assert "Re-index finished" in done.text
    assert "20 unchanged" in done.text and "```" in done.text


def test_reindex_by_anyone_else_is_politely_refused(bot: Bot) -> None:
    bot.ask("reindex", "refused", user_id="U123")

    refusal = only(bot.fake.wait_responses("refused"))
    assert "only kb-bot admins" in refusal.text
    bot.finish()
    assert len(bot.fake.responses("refused")) == 1


def test_only_one_reindex_runs_at_a_time(bot: Bot) -> None:
    with index_lock(bot.settings.db_path):  # a re-index already running (here, or `kb-bot index` in a shell)
        bot.ask("reindex", "busy", user_id=ADMIN)
        busy = only(bot.fake.wait_responses("busy"))
    assert "already running" in busy.text
    with pytest.raises(LockHeldError):
        bot.services.reindex(on_start=lambda: bot.services.reindex(on_start=lambda: None))


# --- mentions --------------------------------------------------------------------------------


def mention(text: str, ts: str = "1700000100.000100", **extra: str) -> dict[str, Any]:
    return {"type": "app_mention", "user": "U123", "text": text, "ts": ts, "channel": "C0001",
            "event_ts": ts, **extra}


@pytest.mark.parametrize("thread_ts", [None, "1700000000.000050"])
def test_mention_is_answered_in_the_thread_with_eyes_while_working(bot: Bot, thread_ts: str | None) -> None:
    event = mention(f"<@UBOT> {TAXI}", **({"thread_ts": thread_ts} if thread_ts else {}))

    reply = bot.event(event, "Ev1")

    assert reply.status == 200 and reply.seconds < SLACK_LIMIT_SECONDS
    bot.fake.wait_calls("reactions.remove")
    methods = [c.method for c in bot.fake.calls if c.method.startswith(("reactions.", "chat."))]
    assert methods == ["reactions.add", "chat.postMessage", "reactions.remove"]
    added, post, removed = (only(bot.fake.calls_to(m)) for m in methods)
    for reaction in (added, removed):
        assert (reaction.params["channel"], reaction.params["timestamp"], reaction.params["name"]) == (
            "C0001", event["ts"], "eyes")
    assert post.params["thread_ts"] == (thread_ts or event["ts"])
    assert post.text.startswith(f"<@U123> asked: {TAXI}")
    assert "hr/expenses.md" in post.text and "<@UBOT>" not in post.text


def test_a_slack_retry_of_a_handled_event_is_not_answered_twice(bot: Bot) -> None:
    event = mention(f"<@UBOT> {TAXI}")
    bot.event(event, "EvOnce")
    bot.fake.wait_calls("chat.postMessage")

    retry = bot.event(event, "EvOnce", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    missed = bot.event(mention(f"<@UBOT> {TAXI}", ts="1700000200.000100"), "EvMissed", headers={"X-Slack-Retry-Num": "1"})
    bot.finish()

    assert retry.status == missed.status == 200
    threads = sorted(c.params["thread_ts"] for c in bot.fake.calls_to("chat.postMessage"))
    assert threads == ["1700000100.000100", "1700000200.000100"]  # the retry of an unseen event is answered


def test_web_api_rate_limits_are_waited_out(bot: Bot) -> None:
    bot.fake.rate_limit("chat.postMessage", retry_after=0)

    bot.event(mention(f"<@UBOT> {TAXI}"), "EvLimited")

    first, second = bot.fake.wait_calls("chat.postMessage", count=2)
    assert "hr/expenses.md" in second.text


def test_a_bare_mention_gets_the_usage(bot: Bot) -> None:
    bot.event(mention("<@UBOT>"), "EvBare")

    assert "/ask reindex" in only(bot.fake.wait_calls("chat.postMessage")).text


# --- channel messages --------------------------------------------------------------------------


def test_channel_messages_are_stored_edited_and_deleted(start_bot: Callable[..., Bot]) -> None:
    bot = start_bot(dup_channels=("C0001",))
    question = {"type": "message", "channel": "C0001", "channel_type": "channel", "user": "U1",
                "text": "How do I reset my VPN password?", "ts": "1700000300.000100"}
    reply = {**question, "user": "U2", "text": "see the VPN page", "ts": "1700000301.000100",
             "thread_ts": question["ts"]}
    kept = {**question, "user": "U3", "text": "Where do I find the guest wifi password?", "ts": "1700000305.000100"}
    ignored = [
        {**question, "ts": "1700000302.000100", "subtype": "bot_message", "bot_id": "B9", "user": None},
        {**question, "ts": "1700000303.000100", "subtype": "channel_join"},
        {**question, "ts": "1700000304.000100", "channel": "C0002"},  # not a watched channel
    ]
    for number, event in enumerate([question, reply, kept, *ignored]):
        assert bot.event(event, f"EvM{number}").status == 200
    store = bot.services.store()
    wait_until(lambda: all(store.messages.get_message("C0001", e["ts"]) for e in (question, reply, kept)))

    bot.event({"type": "message", "subtype": "message_changed", "channel": "C0001", "channel_type": "channel",
               "message": {**question, "text": "How do I reset my VPN password on a Mac?"},
               "previous_message": question, "ts": "1700000400.000100"}, "EvEdit")
    bot.event({"type": "message", "subtype": "message_deleted", "channel": "C0001", "channel_type": "channel",
               "deleted_ts": reply["ts"], "previous_message": reply, "ts": "1700000401.000100"}, "EvDelete")
    bot.finish()

    assert store.messages.get_message("C0001", question["ts"]).text == "How do I reset my VPN password on a Mac?"
    assert store.messages.get_message("C0001", reply["ts"]) is None
    # each stored text was prepared for the duplicate scan as it arrived, the edit by its new text
    label = preparation_label(bot.services.embedder, bot.services.dup_rules)
    assert store.messages.unprepared_messages(0, 2e9, label) == []
    keys = dict(sql(store, "SELECT ts, vector_key FROM messages WHERE NOT deleted"))
    model = bot.services.embedder.model_id
    assert keys == {question["ts"]: cache_key(model, "How do I reset my VPN password on a Mac?"),
                    kept["ts"]: cache_key(model, kept["text"])}
    assert all(store.messages.get_message(e["channel"], e["ts"]) is None for e in ignored)
    assert not bot.fake.calls_to("chat.postMessage")


# --- the HTTP endpoint -------------------------------------------------------------------------


def test_url_verification_answers_the_challenge(bot: Bot) -> None:
    body = json.dumps({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"})

    reply = bot.post(body, content_type="application/json")

    assert reply.status == 200 and "3eZbrw1aBm2rZgRNFdxV" in reply.body


def test_bad_signature_and_stale_timestamp_are_refused(bot: Bot) -> None:
    body = form(command_payload(TAXI, response_url=bot.fake.response_url("forged")))

    forged = post_signed(bot.base_url + "slack/events", body, "not-the-secret")
    stale = bot.post(body, timestamp=int(time.time()) - 5 * 60 - 10)
    unsigned = urllib.request.Request(bot.base_url + "slack/events", data=body.encode(), method="POST")
    with pytest.raises(HTTPError) as missing:
        urllib.request.urlopen(unsigned, timeout=10)
    bot.finish()

    assert forged.status == stale.status == missing.value.code == 401
    assert not bot.fake.responses()


def test_healthz_and_unknown_paths(bot: Bot) -> None:
    with urllib.request.urlopen(bot.base_url + "healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"ok\n"
    with pytest.raises(HTTPError) as missing:
        urllib.request.urlopen(bot.base_url + "nope", timeout=10)
    assert missing.value.code == 404


# --- hostile input --------------------------------------------------------------------------------

# What someone types: Slack sends &, < and > escaped, so the question decodes to a mention and a link
HOSTILE_TYPED = "&lt;!channel&gt; taxi receipts: fill in the &lt;https://evil.example|Expense form&gt;"


def assert_inert(call: Call) -> None:
    """No field Slack renders or notifies from carries the question's mention or link."""
    for shown in [str(call.params.get("text", "")), *iter_blocks_text(call.params.get("blocks") or [])]:
        assert "<!channel>" not in shown and "<https://evil.example" not in shown, shown
    assert "&lt;!channel&gt;" in call.params["text"]


def test_shared_and_mention_answers_escape_the_question_in_every_field(bot: Bot) -> None:
    bot.ask(HOSTILE_TYPED, "ask")
    private = only(bot.fake.wait_responses("ask"))
    assert_inert(private)
    bot.post(interaction_form(share_click_payload(share_button(private)["value"],
                                                  response_url=bot.fake.response_url("click"))))
    shared = only(bot.fake.wait_calls("chat.postMessage"))
    bot.event(mention(f"<@UBOT> {HOSTILE_TYPED}"), "EvHostile")

    mentioned = bot.fake.wait_calls("chat.postMessage", count=2)[1]
    for call in (shared, mentioned):
        assert_inert(call)
        assert call.params["text"].startswith("<@U123> asked: &lt;!channel&gt; taxi receipts")


def test_a_share_click_without_channel_or_container_gets_an_apology(bot: Bot) -> None:
    payload = share_click_payload(TAXI, response_url=bot.fake.response_url("click"))
    del payload["channel"], payload["container"]

    assert bot.post(interaction_form(payload)).status == 200

    assert "Error id" in only(bot.fake.wait_responses("click", timeout=10)).text
    assert not bot.fake.calls_to("chat.postMessage")


def test_a_file_name_with_a_newline_stays_on_the_header_line(
    start_bot: Callable[..., Bot], embedder: LocalEmbedder, tmp_path: Path, kb_db: Path | str
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "taxi\n*2.* `0.99` fake.md").write_text("# Taxis\n\nFile the taxi receipt in Expensify within 30 days.\n")
    settings = make_settings(tmp_path, knowledge_dir=folder, db_path=kb_db)
    with open_store(kb_db) as store:
        index_folder(store, embedder, settings)
    bot = start_bot(db_path=settings.db_path)

    bot.ask("taxi receipt", "odd")

    passage = only(bot.fake.wait_responses("odd")).params["blocks"][1]["text"]["text"]
    header, excerpt = passage.split("\n", 1)
    assert header.startswith("*1.* `") and "*taxi\\n2. `0.99` fake.md" in header
    assert excerpt.startswith("File the taxi receipt")


def test_with_kb_source_url_each_cited_path_is_an_escaped_encoded_link(
    start_bot: Callable[..., Bot], embedder: LocalEmbedder, tmp_path: Path, kb_db: Path | str
) -> None:
    folder = tmp_path / "wiki"
    (folder / "Team Notes").mkdir(parents=True)
    (folder / "Team Notes" / "Café menü.md").write_text("# Lunch\n\nThe café serves vegan ramen on Fridays.\n")
    settings = make_settings(tmp_path, knowledge_dir=folder, db_path=kb_db)
    with open_store(kb_db) as store:
        index_folder(store, embedder, settings)
    template = "https://wiki.example.com/view?file={path}&from={start_line}&to={end_line}"
    bot = start_bot(db_path=settings.db_path, source_url=template)

    bot.ask("does the cafe serve ramen", "wiki")

    header = only(bot.fake.wait_responses("wiki")).params["blocks"][1]["text"]["text"].split("\n")[0]
    url = "https://wiki.example.com/view?file=Team%20Notes/Caf%C3%A9%20men%C3%BC.md&amp;from=3&amp;to=3"
    link = f"<{url}|Team Notes/Café menü.md>"
    assert header.startswith("*1.* `") and f"*{link} › Lunch*" in header, header


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("payload={", "application/x-www-form-urlencoded"), ("payload=[]", "application/x-www-form-urlencoded"),
     ("{not json", "application/json"), ("\xff\xfe", "application/json")],
)
@pytest.mark.parametrize("timestamp", ["now", "abc", None])
def test_unsigned_malformed_bodies_get_401_and_one_log_line(
    bot: Bot, caplog: pytest.LogCaptureFixture, body: str, content_type: str, timestamp: str | None
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Content-Type": content_type}
    if timestamp:
        headers |= {"X-Slack-Request-Timestamp": str(int(time.time())) if timestamp == "now" else timestamp,
                    "X-Slack-Signature": "v0=" + "0" * 64}
    request = urllib.request.Request(bot.base_url + "slack/events", data=body.encode("latin-1"), method="POST",
                                     headers=headers)

    with pytest.raises(HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)

    assert refused.value.code == 401
    # waitress.queue warns "Task queue depth" when a loaded machine is slow to serve: not about the request
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and r.name != "waitress.queue"] == [
        f"refused a request without a valid Slack signature ({len(body.encode('latin-1'))} bytes)"]
    assert not any(r.exc_info for r in caplog.records)


def test_a_signed_malformed_body_gets_400_without_a_traceback(bot: Bot, caplog: pytest.LogCaptureFixture) -> None:
    reply = bot.post("payload={")

    assert reply.status == 400
    assert not any(r.exc_info for r in caplog.records)


def test_a_body_over_the_cap_is_refused_before_it_is_read(bot: Bot) -> None:
    port = int(bot.base_url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000000\r\n\r\n" + b"x" * 65536)
        answer = conn.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413 ")
    at_cap = bot.post("x" * MAX_BODY_BYTES, content_type="application/json")  # the cap itself is allowed
    assert at_cap.status == 400


def test_a_replayed_signed_ask_is_answered_once(bot: Bot) -> None:
    body = form(command_payload(TAXI, response_url=bot.fake.response_url("once")))
    sent_at = int(time.time())

    first, replay = bot.post(body, timestamp=sent_at), bot.post(body, timestamp=sent_at)
    again_later = bot.post(body, timestamp=sent_at - 1)  # a new timestamp is a new request (Slack signs each)
    bot.finish()

    assert first.status == replay.status == again_later.status == 200
    assert len(bot.fake.responses("once")) == 2


def test_an_ask_flood_beyond_the_queue_is_told_at_once_to_try_again(bot: Bot) -> None:
    with bot.fake.holding_responses():  # the answers cannot be delivered: the queue stays full
        acks = [bot.ask(f"{TAXI} {i}", f"f{i}") for i in range(ASK_QUEUE_LIMIT + 3)]
        assert all(a.status == 200 and a.seconds < SLACK_LIMIT_SECONDS for a in acks)
        assert [bool(a.body) for a in acks] == [False] * ASK_QUEUE_LIMIT + [True] * 3
        assert all("busy" in json.loads(a.body)["text"] for a in acks[ASK_QUEUE_LIMIT:])
    bot.fake.wait_responses(count=ASK_QUEUE_LIMIT)
    bot.finish()
    assert all("hr/expenses.md" in only(bot.fake.responses(f"f{i}")).text for i in range(ASK_QUEUE_LIMIT))
    assert bot.fake.responses(f"f{ASK_QUEUE_LIMIT}") == []


def test_an_answer_that_waited_too_long_says_busy_instead(
    start_bot: Callable[..., Bot], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ask_listener, "ASK_MAX_WAIT_SECONDS", 1.0)
    bot = start_bot()
    threads = slack_app.LISTENER_THREADS
    with bot.fake.holding_responses():  # every listener thread blocks on delivering its answer
        for i in range(threads + 2):
            bot.ask(f"{TAXI} {i}", f"w{i}")
        time.sleep(2.0)
    bot.finish()

    answers = [only(bot.fake.responses(f"w{i}")).text for i in range(threads + 2)]
    assert ["hr/expenses.md" in a for a in answers] == [True] * threads + [False] * 2
    assert all("busy" in a for a in answers[threads:])


# --- run modes and start-up checks ----------------------------------------------------------------


def test_socket_mode_receives_a_command_acks_the_envelope_and_answers(
    fake: FakeSlack, bot_db: Path | str, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path, fake, bot_db, slack_app_token=APP_TOKEN, slack_signing_secret="")
    client = make_web_client(settings)
    services = Services(settings, embedder, SlackChat(client))
    app = create_app(services, client)
    handler = socket_mode_handler(app, settings)
    try:
        handler.connect()  # apps.connections.open with the app token, then the WebSocket
        fake.wait_calls("socket.connected")
        fake.socket_send({
            "envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": True,
            "payload": command_payload(TAXI, response_url=fake.response_url("socket")),
        })

        assert fake.wait_socket_message("env-1")  # the ack, over the socket
        answer = only(fake.wait_responses("socket"))
        assert "hr/expenses.md" in answer.text
        assert only(fake.calls_to("apps.connections.open")).headers["authorization"] == f"Bearer {APP_TOKEN}"
    finally:
        handler.close()
        app.listener_runner.listener_executor.shutdown(wait=True)
        services.close()


def test_kb_bot_serve_in_socket_mode_connects_and_answers_healthz(
    fake: FakeSlack, bot_db: Path | str, tmp_path: Path
) -> None:
    """The real command in a child process: Socket Mode has no Slack port, but Docker's health check needs one."""
    port = free_port()
    env = {
        **os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": fake.api_url,
        "KB_DB": str(bot_db), "PORT": str(port), "DUP_SCAN_MINUTES": "60",
    }
    child = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        fake.wait_calls("socket.connected", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200 and response.read() == b"ok\n"
        with pytest.raises(HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/slack/events", timeout=10)
        assert missing.value.code == 404
    finally:
        child.terminate()
        output = child.communicate(timeout=30)[0].decode()
    assert child.returncode == 0, output
    assert "Socket Mode" in output and APP_TOKEN not in output and BOT_TOKEN not in output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_at_debug_logs_no_bodies_and_one_line_per_refused_request(
    fake: FakeSlack, bot_db: Path | str, tmp_path: Path
) -> None:
    """`kb-bot serve` over HTTP at LOG_LEVEL=debug: questions, answers and response_urls stay out of the log."""
    port = free_port()
    env = {
        **os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": fake.api_url,
        "KB_DB": str(bot_db), "PORT": str(port), "DUP_SCAN_MINUTES": "60", "LOG_LEVEL": "debug",
    }
    child = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/slack/events"
    marker = "zebra7731 taxi receipt"
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60)
        post_signed(url, form(command_payload(marker, response_url=fake.response_url("debug"))), SECRET)
        fake.wait_responses("debug")
        post_signed(url, json.dumps(event_envelope(mention(f"<@UBOT> {marker}"), event_id="EvDebug")), SECRET,
                    content_type="application/json")
        fake.wait_calls("reactions.remove")
        forged = urllib.request.Request(url, data=b"payload={", method="POST")
        with pytest.raises(HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 401
    finally:
        child.terminate()
        output = child.communicate(timeout=30)[0].decode()
    assert child.returncode == 0, output
    assert "zebra7731" not in output and fake.response_url("debug") not in output
    assert "Traceback" not in output
    assert output.count("refused a request without a valid Slack signature") == 1
    assert BOT_TOKEN not in output and SECRET not in output


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_a_rejected_bot_token_is_explained_without_showing_it(
    fake: FakeSlack, bot_db: Path | str, embedder: LocalEmbedder, tmp_path: Path
) -> None:
    settings = bot_settings(tmp_path, fake, bot_db, slack_bot_token="xoxb-revoked")
    client = make_web_client(settings)
    services = Services(settings, embedder, SlackChat(client))
    try:
        with pytest.raises(SettingsError, match="Slack rejected SLACK_BOT_TOKEN") as error:
            create_app(services, client)
        assert "xoxb-revoked" not in str(error.value)
    finally:
        services.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SLACK_BOT_TOKEN is not set: create the app from slack/manifest.yml"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_BOT_TOKEN": "xoxp-1", "SLACK_SIGNING_SECRET": "secret-1"}, "starts with xoxb-"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "SLACK_APP_TOKEN must be an app-level token (xapp-"),
    ],
)
def test_serve_names_the_missing_or_wrong_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "none.env"), "serve", "--db", str(tmp_path / "x.db")])

    assert result.exit_code == 1
    assert expected in result.output
    assert all(value not in result.output for value in env.values())


def test_the_manifest_declares_what_the_app_listens_to() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((Path(__file__).parent.parent / "slack" / "manifest.yml").read_text())
    settings = manifest["settings"]

    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == Settings().ask_command
    urls = {command["url"], settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]}
    assert urls == {"https://YOUR-HOST/slack/events"}
    assert set(settings["event_subscriptions"]["bot_events"]) == {"app_mention", "message.channels"}
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "app_mentions:read", "chat:write", "reactions:write", "channels:history", "channels:read"
    }
    assert settings["interactivity"]["is_enabled"] is True and settings["socket_mode_enabled"] is False


def test_the_fake_pages_history_like_slack(fake: FakeSlack) -> None:
    """conversations.history as the duplicate backfill reads it: newest first, oldest exclusive, cursor pages."""
    fake.history["C0001"] = [{"type": "message", "user": "U1", "text": f"m{i}", "ts": f"17000000{i:02d}.000100"}
                             for i in range(7)]
    client = make_web_client(make_settings(Path("/unused"), slack_bot_token=BOT_TOKEN, slack_api_url=fake.api_url))

    pages = [page["messages"] for page in client.conversations_history(channel="C0001", oldest="1700000001.000100",
                                                                        limit=2)]

    assert [[m["text"] for m in page] for page in pages] == [["m6", "m5"], ["m4", "m3"], ["m2"]]
    link = client.chat_getPermalink(channel="C0001", message_ts="1700000002.000100")["permalink"]
    assert link.endswith("/archives/C0001/p1700000002000100")
