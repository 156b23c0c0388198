"""Two real `kb-bot serve` replicas on one PostgreSQL and one loopback Slack, the scan leader killed mid-run.

Signed message events are spread over both replicas (HTTP mode, a port each),
the scan runs every few seconds under the scan lease, and the fake records each
threaded flag. Repeats are exact copies of earlier questions by another user;
every other message is at most 0.8 similar (cosine, the real model) to every
other one, while DUP_THRESHOLD is 0.9, so the repeats are the only pairs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.embeddings import Embedder
from bot.scheduler import JOB_ID, LEASE_PERIODS
from bot.store.postgres import PostgresStore
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401
from tests.slack_fake import FakeSlack, event_envelope, post_signed
from tests.test_slack_app import _answers, free_port, wait_until

SECRET = "replica-signing-secret"
SCAN_MINUTES = 0.05  # a scan every 3 s
LEASE_SECONDS = LEASE_PERIODS * SCAN_MINUTES * 60
CHANNEL = "C1"
DUPES = Path(__file__).parent / "data" / "dupes.jsonl"


def distinct_messages(embedder: Embedder, count: int) -> list[str]:
    """`count` messages of tests/data/dupes.jsonl, one per group, none above 0.8 cosine to another;
    questions first (they are the ones repeated)."""
    rows = [json.loads(line) for line in DUPES.read_text().splitlines()]
    firsts = list({row["group"]: row["text"] for row in reversed(rows)}.values())
    firsts.sort(key=lambda text: "?" not in text)
    vectors = embedder.embed(firsts)
    kept: list[int] = []
    for i in range(len(firsts)):
        if len(firsts[i].split()) >= 5 and all(float(vectors[i] @ vectors[j]) < 0.8 for j in kept):
            kept.append(i)
    assert len(kept) >= count, f"only {len(kept)} distinct messages in {DUPES.name}"
    return [firsts[i] for i in kept[:count]]


def message_events(texts: list[str]) -> list[list[dict[str, str]]]:
    """Three batches of 200 message events in all: uniques, then repeats of earlier ones (of the same
    batch and of earlier batches), each repeat by another user."""
    plan = [(range(0, 60), [*range(0, 20)]), (range(60, 100), [*range(20, 30), *range(60, 70)]),
            (range(100, 140), [*range(30, 40), *range(100, 110)])]
    start = time.time() - 3600
    batches, n = [], 0
    for uniques, repeated in plan:
        batch = []
        for text, user in [(texts[i], f"U{i:03d}") for i in uniques] + [(texts[i], f"V{i:03d}") for i in repeated]:
            ts = f"{start + n:.6f}"
            batch.append({"type": "message", "channel": CHANNEL, "channel_type": "channel", "user": user,
                          "text": text, "ts": ts, "event_ts": ts})
            n += 1
        batches.append(batch)
    return batches


def is_repeat(event: dict[str, str]) -> bool:
    return event["user"].startswith("V")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        slack.channels = [{"id": CHANNEL, "name": "general"}]
        yield slack


def start_replica(fake: FakeSlack, url: str, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ, "KB_DB": url, "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake.api_url, "PORT": str(port), "DUP_SCAN_MINUTES": str(SCAN_MINUTES),
        "DUP_THRESHOLD": "0.9",
    }
    child = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=cwd,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return child, f"http://127.0.0.1:{port}"


def send(base_url: str, event: dict[str, str]) -> None:
    body = json.dumps(event_envelope(event, event_id=f"Ev{event['ts'].replace('.', '')}"))
    reply = post_signed(f"{base_url}/slack/events", body, SECRET, content_type="application/json")
    assert reply.status == 200, reply.body


def flagged(fake: FakeSlack) -> list[str]:
    return [c.params["thread_ts"] for c in fake.calls_to("chat.postMessage") if "thread_ts" in c.params]


def lease(url: str) -> tuple[str, float] | None:
    """(holder, expires_at) of the scan lease; the holder is "host:pid:token"."""
    with PostgresStore(url) as store:
        row = store.conn.execute("SELECT holder, expires_at FROM leases WHERE name = %s", (JOB_ID,)).fetchone()
    return (row[0], row[1]) if row else None


def stored(url: str) -> int:
    with PostgresStore(url) as store:
        return store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def claims(url: str) -> list[tuple[str, str | None]]:
    """(later ts, the ts of its posted flag or None while unposted) of every flag claim."""
    with PostgresStore(url) as store:
        return [tuple(row) for row in store.conn.execute("SELECT later_ts, posted_ts FROM flagged_pairs")]


def in_flight(fake: FakeSlack, crash: str) -> contextlib.AbstractContextManager[None]:
    """The leader's next flag post: Slack gets it and does not answer ("received"), or never gets it ("lost")."""
    return fake.holding_answers("chat.postMessage") if crash == "received" else fake.losing_requests("chat.postMessage")


def posted_in_flight(fake: FakeSlack, crash: str, before: int) -> bool:
    if crash == "received":
        return len(flagged(fake)) > before
    return bool(fake.calls_to("chat.postMessage (lost)"))


@pytest.mark.parametrize("crash", ["received", "lost"])
def test_replicas_flag_each_repeat_once_and_a_leader_killed_mid_scan_hands_over(
    postgres_url: str, fake: FakeSlack, embedder: Embedder, tmp_path: Path, crash: str
) -> None:
    """The leader is killed with a flag claimed and its post in flight; the survivor finishes that flag
    (reading the thread first: posted once, whether or not Slack got the dead leader's post)."""
    first, second, third = message_events(distinct_messages(embedder, 140))
    expected = sorted(e["ts"] for e in first + second + third if is_repeat(e))
    replicas = [start_replica(fake, postgres_url, tmp_path) for _ in range(2)]
    try:
        for _, base in replicas:
            wait_until(lambda base=base: _answers(f"{base}/healthz"), timeout=60)
        wait_until(lambda: lease(postgres_url) is not None)  # the first scan has run: the channel is known
        for n, event in enumerate(first):
            send(replicas[n % 2][1], event)
        fake.wait_for(lambda: len(flagged(fake)) >= sum(map(is_repeat, first)))

        # The leader posts its next flag and gets no answer: kill it there, mid-scan, its messages unscanned.
        with in_flight(fake, crash):
            for n, event in enumerate(second):
                send(replicas[n % 2][1], event)
            fake.wait_for(lambda: posted_in_flight(fake, crash, sum(map(is_repeat, first))))
            wait_until(lambda: stored(postgres_url) == len(first + second))  # every event acked was kept
            holder, expires_at = lease(postgres_url)
            leader = next(r for r in replicas if r[0].pid == int(holder.split(":")[1]))
            leader[0].send_signal(signal.SIGKILL)
            killed_at = time.time()
        survivor = next(r for r in replicas if r is not leader)
        for event in third:
            send(survivor[1], event)
        wait_until(lambda: lease(postgres_url)[0] != holder, timeout=30)
        taken_at = time.time()
        fake.wait_for(lambda: len(flagged(fake)) >= len(expected), timeout=60)
        wait_until(lambda: all(posted for _, posted in claims(postgres_url)), timeout=30)
        time.sleep(2 * SCAN_MINUTES * 60)  # two more scans: nothing flagged again
        messages = stored(postgres_url)
        marked = dict(claims(postgres_url))
    finally:
        for child, _ in replicas:
            if child.poll() is None:
                child.terminate()
        outputs = [child.communicate(timeout=30)[0].decode() for child, _ in replicas]
    assert int(lease(postgres_url)[0].split(":")[1]) == survivor[0].pid
    assert expires_at <= taken_at <= killed_at + LEASE_SECONDS + SCAN_MINUTES * 60 + 1, (
        f"took over {taken_at - killed_at:.1f} s after the kill, lease {LEASE_SECONDS} s")
    assert Counter(flagged(fake)).most_common(1)[0][1] == 1  # nothing flagged twice
    assert sorted(flagged(fake)) == expected  # every repeat, nothing else
    assert messages == len(first + second + third)  # nothing lost
    # Each claim is marked with the one post its thread holds (the dead leader's too, when Slack got it).
    client = WebClient(token=fake.bot_token, base_url=fake.api_url)
    assert sorted(marked) == expected
    for ts in expected:
        [reply] = client.conversations_replies(channel=CHANNEL, ts=ts)["messages"]
        assert marked[ts] == reply["ts"]
    assert survivor[0].returncode == 0 and "Traceback" not in outputs[replicas.index(survivor)], outputs
