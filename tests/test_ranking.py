"""The source ranker and the "not sure" model (bot/ranking.py): each file once, meaning not buried."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from bot import ranking
from bot.cli import cli
from bot.indexer import index_folder
from bot.ranking import Passage, QuestionWords
from bot.search import active_generation_for, search, sentence_cosine
from bot.store import ChunkRow, open_store
from tests.conftest import ROOT, make_settings

NO_WORDS = QuestionWords([], np.zeros(0), [])


def passage_cosine(p: Passage) -> float:
    """A stand-in for the sentence feature where a test is about ordering, not about "not sure"."""
    return p.cosine


def passage(chunk_id: int, path: str, cosine: float, keyword: float = 0.0, heading: float = 0.0) -> Passage:
    row = ChunkRow(chunk_id, path, None, None, f"text {chunk_id}", 1, 2)
    return Passage(chunk_id, row, cosine, keyword, heading, keyword, cosine)


def test_strong_meaning_match_is_never_below_a_weak_keyword_match():
    meaning = passage(1, "meaning.md", 0.75)
    words = passage(2, "words.md", 0.40, keyword=1.0, heading=1.0)
    sources = ranking.group_sources([meaning, words])
    assert max(sources, key=lambda s: s.logit).path == "words.md", "the model alone would bury it"
    ranked = ranking.rank("hybrid", [meaning, words], NO_WORDS, 2, passage_cosine)
    assert [s.path for s in ranked.sources] == ["meaning.md", "words.md"]
    assert ranked.relevance == sorted(ranked.relevance, reverse=True), "the list still reads top-down"
    close = ranking.rank("hybrid", [passage(1, "meaning.md", 0.50), words], NO_WORDS, 2, passage_cosine)
    assert close.sources[0].path == "words.md", "within the margin the keyword evidence decides"


def test_each_file_is_one_source_with_its_passages_best_first():
    passages = [passage(1, "a.md", 0.30), passage(2, "a.md", 0.55), passage(3, "b.md", 0.50), passage(4, "a.md", 0.2)]
    sources = ranking.rank("vector", passages, NO_WORDS, 5, passage_cosine).sources
    assert [s.path for s in sources] == ["a.md", "b.md"]
    assert [p.chunk_id for p in sources[0].passages] == [2, 1, 4]
    assert sources[0].features[2] == 0.30, "the file's second-best passage is a feature"


def test_sentences_are_embedded_only_where_they_can_change_the_answer():
    calls = []
    decided = 0
    for cosine in np.arange(0.0, 0.9, 0.025):
        for coverage in (0.0, 0.5, 1.0):
            ordered = ranking.order_hybrid(
                ranking.group_sources([passage(1, "a.md", cosine, coverage), passage(2, "b.md", cosine - 0.05)]), 2
            )
            for sentence in (0.0, 0.4, 1.0):
                def counted(p: Passage, value: float = sentence) -> float:
                    calls.append(p.chunk_id)
                    return value
                gated = ranking.answerable(ordered, NO_WORDS, counted) >= ranking.ANSWER_THRESHOLD
                always = ranking.answer_probability(ranking.answer_features(ordered, NO_WORDS, sentence))
                assert gated == (always >= ranking.ANSWER_THRESHOLD), (cosine, coverage, sentence)
                decided += 1
    assert 0 < len(calls) < decided / 2, "computed near the threshold only, and that is a minority of cases"
    assert set(calls) == {1}, "the sentences are the best source's best passage's"


def test_sentence_cosine_is_the_closest_sentence_of_the_passage(embedder):
    text = "Expenses.\nTaxi rides to the airport are reimbursed with a receipt. The office opens at nine."
    row = ChunkRow(1, "hr/expenses.md", None, None, text, 1, 3)
    question = embedder.embed(["can i expense a taxi to the airport"])[0]
    whole = float(embedder.embed([text])[0] @ question)
    best = sentence_cosine(embedder, question, Passage(1, row, whole, 0.0, 0.0, 0.0, whole))
    taxi = float(embedder.embed(["Taxi rides to the airport are reimbursed with a receipt."])[0] @ question)
    assert best == pytest.approx(taxi, abs=1e-5) and best > whole
    label = Passage(2, ChunkRow(2, "a.md", None, None, "Expenses", 1, 1), 0.42, 0.0, 0.0, 0.0, 0.42)
    assert sentence_cosine(embedder, question, label) == 0.42, "a passage without a sentence is its own sentence"


def test_search_returns_distinct_sources_with_more_passages_folded(sample_store, embedder):
    result = search(sample_store, embedder, "how do I get reimbursed for a taxi", k=5)
    paths = [h.path for h in result.hits]
    assert paths[0] == "hr/expenses.md" and len(paths) == len(set(paths)) == 5
    folded = [h for h in result.hits if h.more]
    assert folded, "some file matched with more than one passage"
    for hit in folded:
        same_file = {
            text for (text,) in sample_store.conn.execute(
                "SELECT c.text FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = ?", (hit.path,)
            )
        }
        assert all(extra.text in same_file and extra.text != hit.text for extra in hit.more)
    assert [h.relevance for h in result.hits] == sorted((h.relevance for h in result.hits), reverse=True)


def test_off_topic_question_is_flagged_but_still_shows_guesses(sample_store, embedder):
    # Off-topic questions the folder's words do not reach. (One that names a real office, "the best
    # pizza place near the Berlin office", is still judged answerable: 0.25 against a 0.2 threshold.)
    for question in ("recipe for banana bread", "best pizza in town", "who won the world cup in 2018"):
        result = search(sample_store, embedder, question, k=3)
        assert result.hits and not result.confident and result.answerable < ranking.ANSWER_THRESHOLD, question
    answered = search(sample_store, embedder, "how many vacation days do we get a year", k=3)
    assert answered.confident and answered.answerable >= ranking.ANSWER_THRESHOLD


def test_cli_ask_reads_top_down_by_relevance(sample_db):
    result = CliRunner().invoke(
        cli, ["--env-file", "/nonexistent", "ask", "how do I get reimbursed for a taxi", "--db", str(sample_db)]
    )
    assert result.exit_code == 0, result.output
    shown = [line for line in result.output.splitlines() if line[:1].isdigit()]
    relevance = [int(line.split("[")[1].split("]")[0]) for line in shown]
    assert relevance == sorted(relevance, reverse=True) and len(shown) == 5
    assert shown[0].startswith("1. [") and "hr/expenses.md" in shown[0]
    assert len({line.split("] ")[1].split(":")[0] for line in shown}) == 5, "each file once"


def test_a_page_about_the_question_beats_a_long_page_with_one_passage_on_it(tmp_path, embedder):
    """NumPy's quickstart has one passage on views and copies that matches a question about them as
    well as any passage of the page about them; the page's document vector tells them apart."""
    numpy_docs = ROOT / "benchmarks" / "data" / "numpy-docs" / "docs" / "source" / "user"
    knowledge = tmp_path / "kb"
    knowledge.mkdir()
    for name in ("quickstart.rst", "basics.copies.rst"):
        shutil.copy(numpy_docs / name, knowledge / name)
    settings = make_settings(tmp_path, knowledge_dir=knowledge)
    question = "when does slicing give me a view vs a copy"
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        hits = search(store, embedder, question, 2).hits
        passages, _ = ranking.candidates(
            store, active_generation_for(store, embedder), question, embedder.embed([question])[0], 100
        )
    assert [h.path for h in hits] == ["basics.copies.rst", "quickstart.rst"]
    by_best_passage = ranking.order_hybrid(ranking.group_sources(passages, document_share=0.0), 1)
    assert by_best_passage[0].path == "quickstart.rst", "by its best passage alone the long page would lead"
