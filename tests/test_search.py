"""Search over the sample knowledge folder: the golden set, scores, bad questions, the CLI; on each store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import IndexNotBuiltError, QueryError
from bot.search import SearchOptions, search
from bot.store import open_store
from tests.conftest import DATA, KNOWLEDGE, make_settings


def golden() -> list[dict]:
    return [json.loads(line) for line in (DATA / "golden.jsonl").read_text().splitlines() if line.strip()]


def test_golden_set_is_well_formed():
    rows = golden()
    assert len(rows) >= 25
    files = {p.relative_to(KNOWLEDGE).as_posix() for p in KNOWLEDGE.rglob("*") if p.is_file()}
    assert {row["file"] for row in rows} <= files
    assert files <= {row["file"] for row in rows}, "every sample document has a question"


def test_golden_questions_find_their_file_in_top_3(sample_index, embedder):
    rows = golden()
    found = 0
    for row in rows:
        hits = search(sample_index, embedder, row["q"], k=10, mode="vector").hits
        paths = list(dict.fromkeys(h.path for h in hits))[:3]
        found += row["file"] in paths
    ratio = found / len(rows)
    print(f"\ngolden set (vector mode): right file in the top 3 for {found}/{len(rows)} = {ratio:.2f}")
    assert ratio >= 0.90


def test_hits_carry_score_source_and_lines(sample_index, embedder):
    result = search(sample_index, embedder, "how do I get reimbursed for a taxi", k=5)
    assert result.hits[0].path == "hr/expenses.md"
    assert result.confident
    top = result.hits[0]
    assert -1.0 <= top.score <= 1.0 and top.confident
    assert "taxi" in (top.heading or "").lower() + top.text.lower()
    assert 1 <= top.start_line <= top.end_line
    lines = (KNOWLEDGE / top.path).read_text().splitlines()[top.start_line - 1 : top.end_line]
    first_words = top.text.split()[:3]
    assert all(word in "\n".join(lines) for word in first_words)
    scores = [h.score for h in search(sample_index, embedder, "taxi receipts", k=5, mode="vector").hits]
    assert scores == sorted(scores, reverse=True)


def test_search_options_come_from_settings_once(sample_index, embedder, tmp_path):
    settings = make_settings(tmp_path, top_k=2, min_score=0.9, search_mode="keyword")
    options = SearchOptions.from_settings(settings)
    assert options == SearchOptions(k=2, min_score=0.9, mode="keyword")
    assert SearchOptions.from_settings(settings, k=7).k == 7  # the CLI's -k wins
    question = "how do I get reimbursed for a taxi"
    assert options.search(sample_index, embedder, question) == search(
        sample_index, embedder, question, 2, min_score=0.9, mode="keyword"
    )


def test_unrelated_question_is_not_confident(sample_index, embedder):
    result = search(sample_index, embedder, "what is the airspeed velocity of an unladen swallow", k=3)
    assert result.hits, "best guesses are still shown"
    assert not result.confident
    assert all(not h.confident for h in result.hits)


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_is_a_clear_error(sample_index, embedder, question):
    with pytest.raises(QueryError, match="empty"):
        search(sample_index, embedder, question)


def test_fifty_kilobyte_question_is_answered(sample_index, embedder):
    question = "how do I get reimbursed for a taxi " + "and also some rambling context " * 1700
    assert len(question) > 50_000
    result = search(sample_index, embedder, question, k=3)
    assert result.query_truncated
    assert result.hits


def test_search_without_index_says_what_to_run(kb_db, embedder):
    with open_store(kb_db) as store, pytest.raises(IndexNotBuiltError, match="kb-bot index"):
        search(store, embedder, "anything")


def test_cli_ask_json_shape(sample_kb_db, monkeypatch):
    monkeypatch.setenv("KB_KNOWLEDGE_DIR", str(KNOWLEDGE))
    args = ["ask", "how do I get reimbursed for a taxi", "--db", str(sample_kb_db), "--json", "-k", "3"]
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"query", "model", "confident", "answerable", "hits"}
    assert data["confident"] is True and 0.0 <= data["answerable"] <= 1.0
    assert len(data["hits"]) == 3
    top = data["hits"][0]
    assert set(top) == {
        "relevance", "similarity", "path", "heading", "lead", "text", "start_line", "end_line", "confident", "more",
    }
    assert top["path"] == "hr/expenses.md"
    assert len({hit["path"] for hit in data["hits"]}) == 3, "each file once"
    relevance = [hit["relevance"] for hit in data["hits"]]
    assert relevance == sorted(relevance, reverse=True) and all(0 <= r <= 100 for r in relevance)
    assert -1.0 <= top["similarity"] <= 1.0
    for extra in top["more"]:
        assert set(extra) == {"similarity", "heading", "text", "start_line", "end_line"}


def test_cli_ask_builds_the_index_first_when_missing(kb_db, knowledge_copy, monkeypatch):
    monkeypatch.setenv("KB_KNOWLEDGE_DIR", str(knowledge_copy))
    for path in knowledge_copy.rglob("*"):
        if path.is_file() and path.name != "expenses.md":
            path.unlink()
    result = CliRunner().invoke(
        cli, ["--env-file", "/nonexistent", "ask", "taxi to the airport", "--db", str(kb_db)]
    )
    assert result.exit_code == 0, result.output
    assert "indexing" in result.output.lower()
    assert "hr/expenses.md" in result.output


def test_cli_ask_empty_question_exits_1_with_one_line(sample_kb_db):
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "ask", "  ", "--db", str(sample_kb_db)])
    assert result.exit_code == 1
    assert "QueryError" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("question", ["vpn \udcff\udcfe keeps disconnecting", "vpn keeps disconnecting \ud83d"])
def test_invalid_unicode_question_is_cleaned_and_answered(sample_index, embedder, question):
    result = search(sample_index, embedder, question, k=3)
    assert result.hits and result.hits[0].path == "it/vpn-setup.md"
    result.query.encode("utf-8")  # what is shown back is valid Unicode
    assert "\ufffd" in result.query


def test_cli_ask_with_undecodable_bytes_answers(sample_kb_db):
    # Bytes that are not UTF-8 on the command line, as a shell passes them.
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--env-file", "/nonexistent", "ask", b"vpn \xff\xfe keeps disconnecting",
         "--db", str(sample_kb_db), "--json", "-k", "1"],
        capture_output=True, timeout=120, env={**os.environ, "KB_KNOWLEDGE_DIR": str(KNOWLEDGE)},
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout)["hits"][0]["path"] == "it/vpn-setup.md"
