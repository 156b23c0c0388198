"""The question log, votes, retention and scopes behave alike on SQLite and a real PostgreSQL + pgvector."""

from __future__ import annotations

from pathlib import Path

from bot.indexer import index_folder
from bot.questions import DAY, person_hash, prune, record_question, record_vote
from bot.search import search
from tests.conftest import make_settings
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401
from tests.test_postgres_store import kind, store, store_and_location  # noqa: F401  (fixtures: both backends)


def test_questions_votes_threads_retention_and_scopes(store, embedder, tmp_path: Path) -> None:  # noqa: F811
    settings = make_settings(tmp_path, questions_days=30, feedback_days=10)
    index_folder(store, embedder, settings)
    scoped = search(store, embedder, "how much parental leave do we get", k=5, scope=("engineering", "it"))
    assert len(scoped.hits) == 5 and all(h.path.startswith(("engineering/", "it/")) for h in scoped.hits)

    old = record_question(store, embedder, settings, scoped, channel="C1", user="U1", thread="T1", now=0.0)
    new = record_question(store, embedder, settings, scoped, channel="C1", user="U2", thread="T1", now=25 * DAY)
    assert store.questions.in_thread("C1", "T1", 1) == [scoped.query] and store.questions.in_thread("C1", "T2", 2) == []
    assert record_vote(store, new, "U3", helpful=True, now=25 * DAY)
    assert record_vote(store, new, "U3", helpful=False, now=25 * DAY)  # a second click changes it
    assert record_vote(store, old, "U3", helpful=False, now=1.0)
    assert not record_vote(store, 10**9, "U3", helpful=True)
    assert store.questions.votes(new) == {person_hash(store.questions.salt(), "U3"): False}
    [first, second] = store.questions.since(0)
    assert (second.id, second.not_helpful, second.helpful) == (new, 1, 0)
    assert second.asker == person_hash(store.questions.salt(), "U2")
    assert second.sources[0]["path"] == scoped.hits[0].path and first.confident == scoped.confident
    assert set(store.questions.vectors(embedder.model_id, [second.vector_key])) == {second.vector_key}

    assert prune(store, settings, now=31 * DAY) == (1, 1)
    assert [q.id for q in store.questions.since(0)] == [new]
    store.questions.set_mark("x", "7")
    assert store.questions.mark("x") == "7" and store.questions.mark("y") is None
