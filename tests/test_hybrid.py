"""Keyword (BM25 over FTS5 tokens) and hybrid search with the real model, on each store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bot.chunking import Chunk, embedding_text
from bot.cli import cli
from bot.errors import QueryError
from bot.indexer import index_folder
from bot.search import search
from bot.store import Store, open_store
from bot.store.sqlite import fts
from bot.store.sqlite.fts import phrase
from bot.store.sqlite.store import SqliteStore
from bot.words import query_words
from tests.conftest import make_settings, sql, table_names, vector_table

MODES = ("hybrid", "vector", "keyword")


@pytest.fixture
def indexed(knowledge_copy: Path, sample_kb_db: Path | str) -> Iterator[Store]:
    """A writable copy of the sample index over `knowledge_copy` (same relative paths)."""
    with open_store(sample_kb_db) as store:
        yield store


def keyword_chunks(store: Store, generation_id: int) -> int:
    """The chunks of a generation in the keyword index: its FTS5 table's rows on SQLite (0 once the table is
    dropped), the chunks with postings on PostgreSQL."""
    if not isinstance(store, SqliteStore):
        return sql(store, "SELECT count(DISTINCT chunk_id) FROM postings WHERE generation = ?", generation_id)[0][0]
    table = fts.table_name(generation_id)
    return sql(store, f"SELECT count(*) FROM {table}")[0][0] if table in table_names(store) else 0


def keyword_rows(store: Store) -> int:
    return keyword_chunks(store, store.active_generation().id)


def chunk_rows(store: Store) -> int:
    return sql(store, "SELECT count(*) FROM chunks WHERE generation = ?", store.active_generation().id)[0][0]


def test_query_words_are_plain_words_once_each():
    assert query_words("reset VPN password") == ["reset", "vpn", "password"]
    assert query_words('NEAR(a b) -x "y" col:z* AND vpn vpn') == ["near", "b", "x", "y", "col", "z", "vpn"]
    assert query_words(" -- ?! * ") == []
    assert phrase("vpn") == '"vpn"' and phrase('say "hi"') == '"say ""hi"""'


def test_query_words_drop_stopwords_unless_nothing_else_is_left():
    assert query_words("How do I reset the VPN?") == ["reset", "vpn"]
    assert query_words("Who are we?") == ["who", "are", "we"]



@pytest.mark.parametrize(
    "question", ['"', "-", "a:b", "vpn*", "NEAR", "NOT vpn", "(vpn", "AND OR", "ü ß 東京", "?"]
)
def test_fts_syntax_in_questions_is_just_text(sample_index, embedder, question):
    for mode in MODES:
        result = search(sample_index, embedder, question, k=3, mode=mode)
        assert mode == "keyword" or result.hits


@pytest.mark.parametrize(
    ("question", "path"),
    [
        ("maximum_lag_on_failover", "engineering/database-failover.rst"),
        ("DEN-PRINT-4F", "office.html"),
        ("twilio_api_key", "engineering/rotating-secrets.md"),
    ],
)
def test_exact_identifiers_rank_first(sample_index, embedder, question, path):
    for mode in ("keyword", "hybrid"):
        assert search(sample_index, embedder, question, k=3, mode=mode).hits[0].path == path


def test_keyword_search_stems_words(sample_index, embedder):
    # "rotated secrets" shares no exact word form with "Rotating secrets".
    hits = search(sample_index, embedder, "rotated secrets", k=3, mode="keyword").hits
    assert "engineering/rotating-secrets.md" in [h.path for h in hits]


def test_score_is_cosine_in_every_mode(sample_index, embedder):
    question = "how many vacation days do we get a year"
    query = embedder.embed([question])[0]
    for mode in MODES:
        hits = search(sample_index, embedder, question, k=5, mode=mode, min_score=0.4).hits
        assert hits
        passages = embedder.embed([embedding_text(h.title, h.heading, h.text) for h in hits])
        np.testing.assert_allclose([h.score for h in hits], passages @ query, atol=2e-3)
        assert all(h.confident == (h.score >= 0.4) for h in hits)
        ranks = [h.rank_score for h in hits]
        assert ranks == sorted(ranks, reverse=True)


def test_unknown_mode_is_a_clear_error(sample_index, embedder):
    with pytest.raises(QueryError, match="mode"):
        search(sample_index, embedder, "vpn", mode="fuzzy")


def test_keyword_table_follows_edits_and_deletions(indexed, knowledge_copy, embedder, tmp_path):
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy)
    assert keyword_rows(indexed) == chunk_rows(indexed)
    (knowledge_copy / "hr" / "expenses.md").write_text("# Expenses\n\nClaim a zanzibarian allowance.\n")
    (knowledge_copy / "it" / "vpn-setup.md").unlink()
    index_folder(indexed, embedder, settings)
    assert keyword_rows(indexed) == chunk_rows(indexed)

    def paths(question: str) -> set[str]:
        return {h.path for h in search(indexed, embedder, question, k=50, mode="keyword").hits}

    assert paths("zanzibarian") == {"hr/expenses.md"}
    assert "hr/expenses.md" not in paths("taxi receipts")
    assert "it/vpn-setup.md" not in paths("tailscale vpn")


def test_hits_never_come_from_another_generation(indexed, embedder):
    active = indexed.active_generation()
    building = indexed.create_generation("other-model", embedder.dim, active.knowledge_dir)
    chunk = Chunk("The quokkaword procedure.", None, 1, 1)
    indexed.replace_document(
        building, path="new.md", sha256="x", size=1, mtime=0.0, title=None,
        chunks=[chunk], vectors=embedder.embed([chunk.text]),
    )
    assert keyword_chunks(indexed, building.id) == 1
    for mode in MODES:
        hits = search(indexed, embedder, "quokkaword procedure", k=50, mode=mode).hits
        assert "new.md" not in {h.path for h in hits}
    indexed.drop_generations(except_id=active.id)
    assert keyword_chunks(indexed, building.id) == 0 and keyword_rows(indexed) == chunk_rows(indexed) > 0
    tables = table_names(indexed)
    assert vector_table(indexed, building.id) not in tables and vector_table(indexed, active.id) in tables


@pytest.mark.sqlite_only("SQLite's migration m003 added FTS5 tables to older files; PostgreSQL had postings from the start")
def test_migration_backfills_keyword_index(indexed, embedder):
    gen = indexed.active_generation()
    indexed.conn.execute(f"DROP TABLE {fts.table_name(gen.id)}")
    indexed.conn.execute("DELETE FROM _migrations WHERE name = 'm003_keyword_index'")
    path = indexed.path
    indexed.close()
    with open_store(path) as store:
        assert keyword_rows(store) == chunk_rows(store) > 0
        assert search(store, embedder, "maximum_lag_on_failover", k=1, mode="keyword").hits


@pytest.mark.sqlite_only("reads the FTS5 table's definition; PostgreSQL tokenizes through that same FTS5 table")
def test_keyword_table_uses_the_chosen_tokenizer(sample_index):
    gen = sample_index.active_generation()
    [(definition,)] = sql(sample_index, "SELECT sql FROM sqlite_master WHERE name = ?", fts.table_name(gen.id))
    assert fts.TOKENIZER in definition


@pytest.mark.parametrize("mode", MODES)
def test_cli_ask_mode(sample_kb_db, mode):
    result = CliRunner().invoke(
        cli, ["--env-file", "/nonexistent", "ask", "DEN-PRINT-4F", "--db", str(sample_kb_db), "--mode", mode, "-k", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "office.html" in result.output
