"""KB_VECTOR_COPY and PG_EF_SEARCH: without the in-process copy, search asks each store's own vector index."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import vector_index
from bot.indexer import index_folder
from bot.search import search
from bot.store import open_configured_store, open_store
from tests.conftest import make_settings
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401
from tests.test_postgres_store import STORES, new_location, warm_cache

QUESTION = "how do I get reimbursed for a taxi"


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("vector_copy", [True, False], ids=["copy", "no-copy"])
def test_search_answers_with_or_without_the_copy_and_loads_it_only_when_asked(
    kind: str, vector_copy: bool, request: pytest.FixtureRequest, tmp_path: Path, embedder, sample_db: Path
) -> None:
    location = new_location(kind, request, tmp_path)
    with open_store(location, vector_copy=vector_copy) as store:
        warm_cache(store, sample_db)
        index_folder(store, embedder, make_settings(tmp_path))
        hits = search(store, embedder, QUESTION, k=3, mode="vector").hits
        assert hits[0].path == "hr/expenses.md"
        assert (vector_index.__name__ in store.memo) == vector_copy
        gen = store.active_generation()
        query = embedder.embed([QUESTION])[0]
        exact = store.exact_nearest(gen, query, 5)
        found = vector_index.nearest(store, gen, query, 5)
        assert [c for c, _ in found] == [c for c, _ in exact]
        assert [s for _, s in found] == pytest.approx([s for _, s in exact], abs=1e-3)


def test_postgresql_without_the_copy_uses_hnsw_with_the_configured_ef_search(
    postgres_url: str, tmp_path: Path, embedder, sample_db: Path
) -> None:
    settings = make_settings(tmp_path, db_path=postgres_url, vector_copy=False, pg_ef_search=37)
    with open_configured_store(settings) as store:
        warm_cache(store, sample_db)
        index_folder(store, embedder, settings)
        assert store.conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "37"
        gen = store.active_generation()
        with store.conn.transaction():  # 265 rows: the planner scans; forbid that to see the index can answer
            store.conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(row[0] for row in store.conn.execute(
                f"EXPLAIN SELECT chunk_id FROM vec_chunks_{gen.id} ORDER BY embedding <=> %s LIMIT 5",
                (embedder.embed([QUESTION])[0],),
            ))
        assert f"vec_chunks_{gen.id}_hnsw" in plan
        assert search(store, embedder, QUESTION, k=3).hits[0].path == "hr/expenses.md"


def test_the_hnsw_build_gets_memory_for_the_whole_graph() -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL store needs the `postgres` extra (`make install`)")
    from bot.store.postgres.store import HNSW_BUILD_MEMORY_CAP_MB, hnsw_build_memory_mb

    # pgvector's index measured 195 MB at 100k 384-d vectors (benchmarks/postgres.py): the graph must fit, or
    # the build falls back to inserting on disk
    assert hnsw_build_memory_mb(100_000, 384) >= 195
    assert hnsw_build_memory_mb(1_000_000, 384) >= 1950
    assert hnsw_build_memory_mb(10, 384) == 64
    assert hnsw_build_memory_mb(50_000_000, 1536) == HNSW_BUILD_MEMORY_CAP_MB
