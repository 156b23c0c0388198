"""Flag claims carry a posted mark, and a scan finishes the claims a dead scan left unposted.

The store half runs on both stores (a SQLite file and a real PostgreSQL); the
flag half posts through `SlackChat` to the loopback Slack (tests/slack_fake.py),
as a scan whose replica died between claim and post left things: with its post
in the thread (Slack got it) or not (Slack never did).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.dupes.flag import reply_blocks, reply_text, retry_seconds, retry_unposted
from bot.dupes.judge import judge
from bot.dupes.match import Pair
from bot.dupes.normalise import normalize_text
from bot.dupes.rules import DupRules
from bot.dupes.scan import scan_and_flag
from bot.slack.chat import SlackChat
from bot.slack.format import from_slack
from bot.store import Claim, Message, Store, open_store
from bot.store.sqlite.store import SqliteStore
from tests.conftest import make_settings
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401
from tests.slack_fake import FakeSlack

EARLIER = Message("C1", "100.000100", None, "U1", "How do I reset my VPN password? It expired.", 100.0001)
LATER = Message("C1", "200.000200", None, "U2", "my vpn password expired, how do I reset it?", 200.0002)
OTHER = Message("C1", "300.000300", None, "U3", "my vpn password expired again, how do I reset it?", 300.0003)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    location = str(tmp_path / "kb.sqlite3") if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with open_store(location) as opened:
        opened.messages.record_messages([EARLIER, LATER, OTHER])
        yield opened


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        slack.channels = [{"id": "C1", "name": "general"}]
        yield slack


def rules(tmp_path: Path, fake: FakeSlack) -> DupRules:
    """The scan's rules, any claim older than now counting as left unposted (no grace to wait out)."""
    settings = make_settings(tmp_path, slack_bot_token=fake.bot_token, slack_api_url=fake.api_url)
    return dataclasses.replace(DupRules.from_settings(settings), scan_minutes=0.0)


def chat(fake: FakeSlack) -> SlackChat:
    return SlackChat(WebClient(token=fake.bot_token, base_url=fake.api_url))


def thread(fake: FakeSlack, message: Message) -> list[dict[str, object]]:
    return WebClient(token=fake.bot_token, base_url=fake.api_url).conversations_replies(
        channel=message.channel, ts=message.ts)["messages"]


# --- the store: what is listed as unposted -----------------------------------------------------


def test_an_old_unposted_claim_is_listed_and_a_posted_or_young_one_is_not(store: Store) -> None:
    assert store.messages.claim_flag(LATER, EARLIER, 0.91, "thread")
    assert store.messages.claim_flag(OTHER, EARLIER, 0.88, "both")
    time.sleep(0.01)
    now = time.time()
    [claim] = store.messages.unposted_claims(now)[:1]
    assert dataclasses.replace(claim, claimed_at=0) == Claim(LATER, EARLIER, 0.91, "thread", 0)
    assert now - 5 < claim.claimed_at < now
    assert [c.later for c in store.messages.unposted_claims(now)] == [LATER, OTHER]  # oldest first
    assert store.messages.unposted_claims(now - 60) == []  # too young: its scan may still be posting it

    store.messages.mark_posted([(LATER, "1700000000.000001")])
    assert [c.later for c in store.messages.unposted_claims(time.time())] == [OTHER]
    store.messages.delete_message(channel=OTHER.channel, ts=OTHER.ts)
    assert store.messages.unposted_claims(time.time()) == []  # nothing left to flag
    assert not store.messages.claim_flag(LATER, EARLIER, 0.91, "thread")  # marked or not, claimed once


def test_claims_made_before_the_migration_count_as_posted(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite3"
    with SqliteStore(path, stop_before="m010_flag_posted") as old, old.atomic():
        old.conn.execute("INSERT INTO flagged_pairs VALUES ('C1', '200.000200', 'C1', '100.000100', 0.9, 'thread', 1.0)")
    with open_store(path) as store:  # migrates
        store.messages.record_messages([EARLIER, LATER, OTHER])
        assert store.messages.unposted_claims(time.time()) == []
        assert store.messages.claim_flag(OTHER, EARLIER, 0.9, "thread")
        assert [c.later for c in store.messages.unposted_claims(time.time())] == [OTHER]


# --- the scan: finishing what a dead scan left unposted -------------------------------------------


def claim_as_a_dead_scan(store: Store, fake: FakeSlack, *, slack_got_it: bool) -> str | None:
    """Claim LATER's flag and, if Slack got the post, post it in LATER's thread as the scan would have;
    return that post's ts. Nothing is marked posted: the scan died first."""
    assert store.messages.claim_flag(LATER, EARLIER, 0.91, "thread")
    if not slack_got_it:
        return None
    verdict = judge(normalize_text(LATER.text, from_slack), normalize_text(EARLIER.text, from_slack), 0.91)
    pair = Pair(EARLIER, LATER, 0.91, verdict)
    link = chat(fake).permalink(EARLIER.channel, EARLIER.ts)
    return chat(fake).reply_in_thread(LATER.channel, LATER.ts, reply_text(link, pair), reply_blocks(link, pair))


def posted_ts(store: Store) -> dict[str, str | None]:
    rows = store.conn.execute("SELECT later_ts, posted_ts FROM flagged_pairs").fetchall()
    return {later: posted for later, posted in rows}


def test_a_flag_slack_got_is_only_marked_posted(store: Store, fake: FakeSlack, tmp_path: Path) -> None:
    posted = claim_as_a_dead_scan(store, fake, slack_got_it=True)
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 1
    assert len(fake.calls_to("chat.postMessage")) == 1  # the dead scan's post, none again
    assert posted_ts(store) == {LATER.ts: posted}
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 0


def test_a_flag_slack_never_got_is_posted_once_and_marked(store: Store, fake: FakeSlack, tmp_path: Path) -> None:
    claim_as_a_dead_scan(store, fake, slack_got_it=False)
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 1
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 0
    [reply] = thread(fake, LATER)
    assert posted_ts(store) == {LATER.ts: reply["ts"]}
    assert "This looks like <https://fake.slack.com/archives/C1/p100000100>" in reply["text"]
    assert "“vpn password expired reset”" in reply["text"]  # what both share, as the scan words it


@pytest.mark.parametrize("method", ["conversations.replies", "chat.postMessage"])
def test_a_passing_failure_keeps_the_claim_for_the_next_scan(
    store: Store, fake: FakeSlack, tmp_path: Path, method: str
) -> None:
    claim_as_a_dead_scan(store, fake, slack_got_it=False)
    fake.fail(method, "service_unavailable")
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 0
    assert posted_ts(store) == {LATER.ts: None}  # still claimed, still unposted
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 1
    assert len(thread(fake, LATER)) == 1


def test_a_young_claim_waits_for_its_own_scan(store: Store, fake: FakeSlack, tmp_path: Path) -> None:
    """Within RETRY_PERIODS scan intervals the scan that claimed it may still be posting it: left alone."""
    young = dataclasses.replace(rules(tmp_path, fake), scan_minutes=15.0)
    assert retry_seconds(young) == 45 * 60
    claim_as_a_dead_scan(store, fake, slack_got_it=False)
    assert retry_unposted(store, chat(fake), young) == 0
    assert fake.calls_to("conversations.replies") == [] and posted_ts(store) == {LATER.ts: None}


def test_a_scan_finishes_unposted_claims_before_it_flags_anything_new(
    store: Store, fake: FakeSlack, tmp_path: Path, embedder
) -> None:
    claim_as_a_dead_scan(store, fake, slack_got_it=False)
    store.messages.mark_scanned([EARLIER, LATER, OTHER])  # the survivor judged them; only the claim is left
    assert scan_and_flag(store, embedder, rules(tmp_path, fake), chat(fake)) == []
    assert [c.params["thread_ts"] for c in fake.calls_to("chat.postMessage")] == [LATER.ts]
    assert posted_ts(store)[LATER.ts] is not None


def test_a_thread_that_is_gone_releases_the_claim(store: Store, fake: FakeSlack, tmp_path: Path) -> None:
    claim_as_a_dead_scan(store, fake, slack_got_it=False)
    fake.fail("conversations.replies", "thread_not_found")
    assert retry_unposted(store, chat(fake), rules(tmp_path, fake)) == 0
    assert posted_ts(store) == {} and fake.calls_to("chat.postMessage") == []
