"""Knowledge gaps: paraphrases grouped together, topics kept apart, from stored vectors only."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import SettingsError
from bot.gaps import cluster, find_gaps, format_gaps
from bot.questions import DAY, record_question, record_vote
from bot.scheduler import GAPS_JOB_ID, add_question_jobs
from bot.search import search
from bot.slack.chat import SlackChat
from bot.slack.server import make_web_client
from bot.store import Store, open_store
from tests.conftest import make_settings
from tests.slack_fake import FakeSlack

# 40 questions in 6 topics, phrased the way people ask in Slack.
TOPICS = {
    "parental": [
        "how much parental leave do we get",
        "what is the maternity leave policy",
        "how many weeks off when my baby is born",
        "paternity leave length?",
        "can I take leave after adopting a child",
        "is parental leave paid in full",
        "when do I tell HR I'm expecting a baby",
    ],
    "vpn": [
        "how do I set up the VPN",
        "vpn keeps disconnecting from home",
        "which VPN client should I install on my laptop",
        "can't connect to the corporate VPN",
        "where do I download the vpn config",
        "vpn not working on linux",
        "how to get on the company network remotely",
    ],
    "expenses": [
        "how do I file an expense report",
        "how do I get reimbursed for a client dinner",
        "what's the limit for meal expenses when travelling",
        "can I expense a taxi to the airport",
        "where do I submit receipts",
        "how long until expenses are paid back",
        "is a hotel minibar reimbursable",
    ],
    "deploy": [
        "how do I roll back a bad deploy",
        "revert the last production release",
        "steps to deploy to production",
        "deployment failed halfway what now",
        "who can approve a prod deploy",
        "how to undo a release that broke checkout",
    ],
    "oncall": [
        "who is on call this week",
        "how does the on-call rotation work",
        "I got paged at 3am what do I do",
        "how do I swap an on-call shift",
        "do we get paid extra for being on call",
        "what is expected when you're on pager duty",
    ],
    "pricing": [
        "how much does the enterprise plan cost",
        "what's included in the pro plan",
        "do we offer discounts for nonprofits",
        "difference between the pricing tiers",
        "can a customer pay annually instead of monthly",
        "price per seat for the team plan",
        "is there a free trial for customers",
    ],
}


@pytest.fixture
def store(sample_kb_db) -> Iterator[Store]:
    with open_store(sample_kb_db) as store:
        yield store


def _ask_all(store, embedder, settings) -> dict[int, str]:
    """Record every question as asked in Slack by one of three people; return id -> topic."""
    topic_of = {}
    for n, (topic, questions) in enumerate((t, q) for t, qs in TOPICS.items() for q in qs):
        result = search(store, embedder, questions)
        qid = record_question(store, embedder, settings, result, channel="C1", user=f"U{n % 3}", now=1000.0 + n)
        topic_of[qid] = topic
    return topic_of


def test_paraphrases_group_together_and_topics_stay_apart(store, embedder, tmp_path):
    assert sum(len(q) for q in TOPICS.values()) == 40
    topic_of = _ask_all(store, embedder, make_settings(tmp_path))
    embedder_calls = embedder.embed
    embedder.embed = None  # type: ignore[method-assign]  # grouping must embed nothing
    try:
        gaps = find_gaps(store, days=30, include_all=True, now=2000.0)
    finally:
        embedder.embed = embedder_calls  # type: ignore[method-assign]
    assert sum(g.count for g in gaps) == 40
    purity = sum(Counter(topic_of[i] for i in g.question_ids).most_common(1)[0][1] for g in gaps) / 40
    # And not by cutting everything into singletons: each topic's largest group holds most of it.
    kept_together = sum(
        max(sum(topic_of[i] == topic for i in g.question_ids) for g in gaps) for topic in TOPICS
    ) / 40
    assert purity >= 0.8, purity
    assert kept_together >= 0.7, kept_together
    assert [g.count for g in gaps] == sorted((g.count for g in gaps), reverse=True)
    top = gaps[0]
    assert len(top.examples) == 3 and len(set(top.examples)) == 3 and top.askers == 3
    assert top.closest_path is not None and top.closest_score > 0.3


def test_the_closest_file_is_where_the_topic_lives(store, embedder, tmp_path):
    settings = make_settings(tmp_path)
    for n, question in enumerate(TOPICS["parental"]):
        record_question(store, embedder, settings, search(store, embedder, question), channel="C1", user=f"U{n}",
                        now=1000.0)
    [gap] = find_gaps(store, days=30, include_all=True, now=2000.0)
    assert gap.closest_path == "hr/parental-leave.txt"
    assert (gap.count, gap.askers) == (7, 7)


def test_only_unanswered_or_unhelpful_questions_are_gaps_unless_all(store, embedder, tmp_path):
    settings = make_settings(tmp_path)
    answered = search(store, embedder, "how do I roll back a deploy")
    assert answered.confident
    unanswered = search(store, embedder, "what is the wifi password in the Lisbon office canteen")
    unanswered = type(unanswered)(**{**unanswered.__dict__, "hits": [
        type(h)(**{**h.__dict__, "confident": False}) for h in unanswered.hits
    ]})
    a = record_question(store, embedder, settings, answered, channel="C1", user="U1", now=1000.0)
    b = record_question(store, embedder, settings, unanswered, channel="C1", user="U1", now=1000.0)
    assert [g.question_ids for g in find_gaps(store, days=30, now=2000.0)] == [[b]]
    record_vote(store, a, "U2", helpful=False)
    assert sorted(i for g in find_gaps(store, days=30, now=2000.0) for i in g.question_ids) == [a, b]
    assert find_gaps(store, days=30, now=1000.0 + 31 * DAY) == []  # out of the window


def test_cluster_keeps_far_apart_vectors_apart_and_merges_near_ones():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16)
    points = np.vstack([c + 0.05 * rng.standard_normal((5, 16)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert sorted(cluster(points)) == [list(range(0, 5)), list(range(5, 10)), list(range(10, 15))]
    assert cluster(np.zeros((0, 16))) == []


def test_cli_gaps_text_and_json(sample_kb_db, embedder, tmp_path):
    db = sample_kb_db
    settings = make_settings(tmp_path, db_path=db)
    with open_store(db) as store:
        for n, question in enumerate(TOPICS["vpn"][:3]):
            record_question(store, embedder, settings, search(store, embedder, question), channel="C1", user=f"U{n}")
    runner = CliRunner()
    out = runner.invoke(cli, ["--env-file", "/dev/null", "gaps", "--db", str(db), "--all", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["days"] == 30 and data["all"] is True
    assert sum(g["count"] for g in data["gaps"]) == 3 and data["gaps"][0]["closest_path"] == "it/vpn-setup.md"
    text = runner.invoke(cli, ["--env-file", "/dev/null", "gaps", "--db", str(db), "--all", "--days", "7"])
    assert text.exit_code == 0 and "3 questions asked in the last 7 days" in text.output
    assert "closest file: it/vpn-setup.md" in text.output


def test_format_says_when_there_is_nothing():
    assert format_gaps([], days=30, include_all=False) == "No questions without a good answer in the last 30 days."


def test_the_scheduled_report_posts_to_slack_only_when_something_is_new(store, sample_kb_db, embedder, tmp_path):
    with FakeSlack() as fake:
        settings = make_settings(
            tmp_path, db_path=sample_kb_db, slack_bot_token=fake.bot_token, slack_api_url=fake.api_url,
            gaps_report_channel="CGAPS",
        )
        scheduler = BackgroundScheduler()
        add_question_jobs(scheduler, settings, SlackChat(make_web_client(settings)))
        job = scheduler.get_job(GAPS_JOB_ID)
        assert str(job.trigger) == "cron[month='*', day='*', day_of_week='mon', hour='9', minute='0']"
        job.func()  # nothing asked yet: nothing posted
        question = search(store, embedder, "what is the wifi password in the Lisbon office canteen")
        qid = record_question(store, embedder, settings, question, channel="C1", user="U1")
        record_vote(store, qid, "U2", helpful=False)
        job.func()
        job.func()  # nothing new since the last post
        [post] = fake.calls_to("chat.postMessage")
        assert post.params["channel"] == "CGAPS"
        assert post.text.startswith("1 question without a good answer in the last 30 days")
        assert "“what is the wifi password in the Lisbon office canteen”" in post.text
        record_question(store, embedder, settings, question, channel="C1", user="U3")
        record_vote(store, qid + 1, "U2", helpful=False)
        job.func()
        assert len(fake.calls_to("chat.postMessage")) == 2


def test_a_bad_gaps_cron_is_refused_in_one_line(tmp_path, embedder):
    settings = make_settings(tmp_path, gaps_report_channel="CGAPS", gaps_report_cron="every monday")
    with pytest.raises(SettingsError, match="GAPS_REPORT_CRON 'every monday' is not a crontab line"):
        add_question_jobs(BackgroundScheduler(), settings, None)  # type: ignore[arg-type]
