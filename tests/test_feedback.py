"""The question log and votes: what is kept, one vote per person per answer, retention."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.questions import DAY, person_hash, prune, record_question, record_vote
from bot.scheduler import RETENTION_JOB_ID, add_question_jobs
from bot.search import search
from bot.store import Store, open_store
from tests import test_slack_app as slack
from tests.conftest import make_settings
from tests.slack_fake import Call, interaction_form, share_click_payload
from tests.test_slack_app import TAXI, Bot, only, wait_until

fake, bot_db, start_bot = slack.fake, slack.bot_db, slack.start_bot  # the loopback Slack app's fixtures


@pytest.fixture
def store(sample_kb_db) -> Iterator[Store]:
    with open_store(sample_kb_db) as store:
        yield store


def test_a_question_is_kept_with_its_sources_and_a_hashed_asker(store, embedder, tmp_path):
    settings = make_settings(tmp_path)
    result = search(store, embedder, "how much parental leave do we get?")
    qid = record_question(store, embedder, settings, result, channel="C1", user="U123", now=1000.0)
    [kept] = store.questions.since(0)
    assert kept.id == qid and kept.text == "how much parental leave do we get?" and kept.channel == "C1"
    assert kept.asker == person_hash(store.questions.salt(), "U123") and "U123" not in kept.asker
    assert kept.sources[0] == {
        "path": result.hits[0].path, "start_line": result.hits[0].start_line,
        "end_line": result.hits[0].end_line, "score": result.hits[0].score,
    }
    assert kept.confident == result.confident
    # The vector is in the embedding cache: grouping later embeds nothing.
    vectors = store.questions.vectors(embedder.model_id, [kept.vector_key])
    assert vectors[kept.vector_key] == pytest.approx(embedder.embed([kept.text])[0], abs=1e-5)


def test_salt_differs_per_database(store, kb_db):
    with open_store(kb_db) as other:
        assert other.questions.salt() != store.questions.salt()
        assert person_hash(other.questions.salt(), "U1") != person_hash(store.questions.salt(), "U1")


def test_one_vote_per_person_per_answer_and_a_second_click_changes_it(store, embedder, tmp_path):
    settings = make_settings(tmp_path)
    qid = record_question(store, embedder, settings, search(store, embedder, "vpn setup"), channel="C1", user="U1")
    assert record_vote(store, qid, "U2", helpful=True)
    assert record_vote(store, qid, "U3", helpful=True)
    assert record_vote(store, qid, "U2", helpful=False)
    salt = store.questions.salt()
    assert store.questions.votes(qid) == {person_hash(salt, "U2"): False, person_hash(salt, "U3"): True}
    [kept] = store.questions.since(0)
    assert (kept.helpful, kept.not_helpful) == (1, 1)


def test_a_vote_on_a_question_no_longer_kept_is_refused(store):
    assert not record_vote(store, 12345, "U2", helpful=True)
    assert store.conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0


def test_retention_removes_old_votes_and_old_questions_with_their_votes(store, embedder, tmp_path):
    settings = make_settings(tmp_path, questions_days=30, feedback_days=10)
    result = search(store, embedder, "how do I roll back a deploy")
    old = record_question(store, embedder, settings, result, channel="C1", user="U1", now=0.0)
    recent = record_question(store, embedder, settings, result, channel="C1", user="U1", now=25 * DAY)
    record_vote(store, old, "U2", helpful=False, now=1.0)
    record_vote(store, recent, "U2", helpful=False, now=12 * DAY)
    record_vote(store, recent, "U3", helpful=True, now=25 * DAY)

    assert prune(store, settings, now=31 * DAY) == (1, 2)  # the old question and the 19-day-old vote
    assert [q.id for q in store.questions.since(0)] == [recent]
    assert list(store.questions.votes(recent).values()) == [True]
    # Recording prunes too: nothing past retention survives a new question.
    record_question(store, embedder, settings, result, channel=None, user=None, now=100 * DAY)
    assert [q.asker for q in store.questions.since(0)] == [None]


# --- through the loopback Slack, with signed requests ------------------------------------------


@pytest.fixture
def app(start_bot) -> Bot:
    return start_bot()


def buttons(call: Call) -> dict[str, dict]:
    return {e["action_id"]: e for b in call.params["blocks"] for e in b.get("elements") or [] if e.get("type") == "button"}


def click(bot: Bot, button: dict, reply_to: str, *, user: str = "U123", channel: str = "C0001") -> None:
    payload = share_click_payload(button["value"], response_url=bot.fake.response_url(reply_to), user_id=user,
                                  channel_id=channel, action_id=button["action_id"])
    assert bot.post(interaction_form(payload)).status == 200


def test_a_vote_on_the_private_answer_is_stored_then_changed_and_confirmed_privately(app: Bot) -> None:
    bot = app
    bot.ask(TAXI, "ask")
    answer = only(bot.fake.wait_responses("ask"))
    votes = buttons(answer)
    assert [votes[a]["text"]["text"] for a in ("answer_helpful", "answer_not_helpful")] == ["Helpful", "Not helpful"]
    store = bot.services.store()
    [asked] = store.questions.since(0)
    assert asked.text == TAXI and asked.channel == "C0001" and asked.asker == person_hash(store.questions.salt(), "U123")
    assert votes["answer_helpful"]["value"] == str(asked.id)

    click(bot, votes["answer_helpful"], "vote-1", user="U7")
    confirm = only(bot.fake.wait_responses("vote-1"))
    assert confirm.params["response_type"] == "ephemeral" and confirm.params["replace_original"] is False
    assert "noted as *helpful*" in confirm.text
    click(bot, votes["answer_not_helpful"], "vote-2", user="U7")
    assert "noted as *not helpful*" in only(bot.fake.wait_responses("vote-2")).text
    assert store.questions.votes(asked.id) == {person_hash(store.questions.salt(), "U7"): False}
    assert bot.fake.calls_to("chat.postMessage") == []  # no channel noise


def test_the_shared_answer_and_the_mention_reply_carry_votes_for_their_question(app: Bot) -> None:
    bot = app
    bot.ask(TAXI, "ask")
    private = buttons(only(bot.fake.wait_responses("ask")))
    click(bot, private["share_answer"], "share", channel="C0042")
    shared = only(bot.fake.wait_calls("chat.postMessage"))
    [asked] = bot.services.store().questions.since(0)  # sharing asks nothing new
    assert buttons(shared)["answer_not_helpful"]["value"] == str(asked.id)
    click(bot, buttons(shared)["answer_not_helpful"], "vote-shared", user="U9", channel="C0042")
    assert "not helpful" in only(bot.fake.wait_responses("vote-shared")).text

    bot.event({"type": "app_mention", "user": "U5", "text": "<@UBOT> which VPN client should I install",
               "ts": "1700000100.000100", "channel": "C0001", "event_ts": "1700000100.000100"}, "EvVote")
    wait_until(lambda: len(bot.fake.calls_to("chat.postMessage")) == 2)
    reply = bot.fake.calls_to("chat.postMessage")[1]
    mentioned = bot.services.store().questions.since(0)[-1]
    assert mentioned.text == "which VPN client should I install" and mentioned.channel == "C0001"
    assert buttons(reply)["answer_helpful"]["value"] == str(mentioned.id)
    click(bot, buttons(reply)["answer_helpful"], "vote-mention", user="U9")
    bot.fake.wait_responses("vote-mention")
    assert [(q.helpful, q.not_helpful) for q in bot.services.store().questions.since(0)] == [(0, 1), (1, 0)]


def test_the_daily_retention_job_prunes_without_new_questions(store, sample_kb_db, embedder, tmp_path):
    settings = make_settings(tmp_path, db_path=sample_kb_db, questions_days=1)
    result = search(store, embedder, "vpn setup")
    record_question(store, embedder, settings, result, channel="C1", user="U1", now=time.time() - 2 * DAY)
    scheduler = BackgroundScheduler()
    add_question_jobs(scheduler, settings, None)  # type: ignore[arg-type]
    job = scheduler.get_job(RETENTION_JOB_ID)
    assert str(job.trigger) == "interval[1 day, 0:00:00]"
    job.func()
    assert store.questions.since(0) == []
