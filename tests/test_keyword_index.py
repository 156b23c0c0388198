"""Per-word BM25 lists: the same scores as FTS5's own query, and in step with the store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot import keyword_index
from bot.indexer import index_folder
from bot.keyword_index import KeywordScores, keyword_scores
from bot.store import Store, memoized, open_store
from bot.store.sqlite.fts import phrase
from bot.store.sqlite.fts import table_name as keyword_table
from bot.words import query_words
from tests.conftest import make_settings

QUESTIONS = [
    "how do I get reimbursed for a taxi",
    "vpn keeps disconnecting on the train",
    "parental leave weeks and pay",
    "who are we?",  # stopwords only: kept
    "on-call rotation handoff incident severity",
]


def fts5_scores(store: Store, question: str) -> dict[int, float]:
    """FTS5 scoring the whole question in one query: the reference."""
    gen = store.active_generation()
    match = " OR ".join(phrase(w) for w in query_words(question))
    table = keyword_table(gen.id)
    rows = store.conn.execute(
        f"SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ?",
        (match,),
    )
    return dict(rows)


@pytest.fixture
def indexed(knowledge_copy: Path, tmp_path: Path, sample_db: Path) -> Iterator[Store]:
    shutil.copy(sample_db, tmp_path / "kb.sqlite3")
    with open_store(tmp_path / "kb.sqlite3") as store:
        yield store


@pytest.mark.parametrize("question", QUESTIONS)
def test_summed_word_lists_equal_fts5_scoring_the_question(sample_store: Store, question: str) -> None:
    expected = fts5_scores(sample_store, question)
    found = keyword_scores(sample_store, sample_store.active_generation(), question)
    assert expected, "the sample index should match every question"
    assert dict(zip(found.ids.tolist(), found.scores.tolist())) == pytest.approx(expected, rel=1e-6)
    best = sorted(expected.values(), reverse=True)[:5]
    assert [score for _, score in found.top(5)] == pytest.approx(best, rel=1e-6)


def test_top_and_lookups() -> None:
    scores = KeywordScores(np.array([3, 5, 9, 12]), np.array([1.0, 4.0, 1.0, 2.5]))
    assert scores.top(3) == [(5, 4.0), (12, 2.5), (3, 1.0)]  # the tie goes to the lower id
    assert scores.top(10) == [(5, 4.0), (12, 2.5), (3, 1.0), (9, 1.0)]
    assert scores.of([9, 4, 100]) == {9: 1.0, 4: 0.0, 100: 0.0}
    empty = KeywordScores(np.zeros(0, np.int64), np.zeros(0))
    assert empty.top(5) == [] and empty.of([1]) == {1: 0.0}


def test_word_lists_follow_a_reindex(indexed: Store, knowledge_copy: Path, tmp_path: Path, embedder) -> None:
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy, db_path=indexed.path)
    gen = indexed.active_generation()
    question = "zebra crossing marlowe"
    assert len(keyword_scores(indexed, gen, question)) == 0
    (knowledge_copy / "it" / "zebra.md").write_text("# Zebra crossings\n\nThe office zebra is called Marlowe.\n")
    index_folder(indexed, embedder, settings)
    [(chunk_id, _)] = keyword_scores(indexed, gen, question).top(5)
    assert indexed.chunks_by_id([chunk_id])[chunk_id].path == "it/zebra.md"
    assert keyword_scores(indexed, gen, question).of([chunk_id]) == pytest.approx(fts5_scores(indexed, question))


def test_the_cache_stays_within_its_budget(sample_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_index, "CACHE_BYTES", 2000)
    gen = sample_store.active_generation()
    lists = memoized(sample_store, keyword_index.__name__, keyword_index.WordLists)
    for question in QUESTIONS:
        found = keyword_scores(sample_store, gen, question)
        assert dict(zip(found.ids.tolist(), found.scores.tolist())) == pytest.approx(
            fts5_scores(sample_store, question), rel=1e-6)
        kept = sum(ids.nbytes + scores.nbytes for ids, scores in lists._lists.values())
        assert kept == lists._bytes
        assert kept <= 2000 or len(lists._lists) == 1
