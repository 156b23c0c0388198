"""Two kb-bot processes on one PostgreSQL and one loopback Slack: every repeat is flagged once, by one of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

from bot.store.postgres import PostgresStore
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401
from tests.slack_fake import FakeSlack

QUESTIONS = [
    ("How do I reset my VPN password?", "my vpn password expired, how do I reset it?"),
    ("Where do I submit taxi receipts for reimbursement?", "how do I get reimbursed for a taxi receipt?"),
    ("Who is on call for the payments service this week?", "who is the on-call engineer for payments this week?"),
    ("How many days of parental leave do we get?", "what is our parental leave policy, how many days?"),
    ("Can I work remotely from another country for a month?", "is it ok to work from abroad for a month remotely?"),
]


def test_two_replicas_scanning_at_once_flag_each_repeat_exactly_once(postgres_url: str) -> None:
    now = time.time()
    with PostgresStore(postgres_url) as store:
        for i, (first, again) in enumerate(QUESTIONS):
            store.messages.record_message(channel="C1", ts=f"{now - 3600 + i:.6f}", user=f"U{i}", text=first)
            store.messages.record_message(channel="C1", ts=f"{now - 600 + i:.6f}", user=f"V{i}", text=again)
    with FakeSlack() as fake:
        fake.channels = [{"id": "C1", "name": "general"}]
        env = {**os.environ, "KB_DB": postgres_url, "SLACK_BOT_TOKEN": fake.bot_token, "SLACK_API_URL": fake.api_url}
        replicas = [
            subprocess.Popen([sys.executable, "-m", "bot", "--env-file", "/nonexistent", "dupes", "scan", "--json"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [replica.communicate(timeout=300) for replica in replicas]
        assert [r.returncode for r in replicas] == [0, 0], [err for _, err in outputs]
        posted = fake.calls_to("chat.postMessage")
    flagged = [pair["later"]["ts"] for out, _ in outputs for pair in json.loads(out)["pairs"]]
    with PostgresStore(postgres_url) as store:
        rows = store.conn.execute("SELECT later_ts FROM flagged_pairs").fetchall()
    assert len(flagged) >= 3  # the model finds most of the five repeats
    assert Counter(flagged).most_common(1)[0][1] == 1  # no message flagged by both replicas
    assert sorted(flagged) == sorted(r[0] for r in rows)
    assert sorted(c.params["thread_ts"] for c in posted) == sorted(flagged)  # one Slack reply per flag
