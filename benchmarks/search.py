#!/usr/bin/env python3
"""Benchmark 3: search latency and recall at 10k, 100k and 1M chunks.

    .venv/bin/python benchmarks/search.py [--sizes 10000 100000 1000000] [--queries 200]

For each size, a real kb-bot SQLite file is filled with synthetic 384-d unit
vectors (clustered, so queries have true neighbours like real embeddings do)
and timed, over the same queries:
- numpy float32 brute force over a matrix in memory (the bar to meet);
- sqlite-vec's vec0 KNN (what kb-bot used before the in-memory copy);
- the in-memory copy's scan alone (sign-bit Hamming + float16 scoring), and
  `vector_index.nearest` (the same, through the store-synced copy);
with recall@10 against exact brute force, the copy's load time and memory.
At 100k, `search()` end to end with the bundled model (vector and hybrid).
Then real MiniLM vectors (benchmarks/real_vectors.py, when computed):
recall@10 and latency by number of Hamming candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import real_vectors  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ROOT,
    SHARED_EVAL,
    knowledge_sentences,
    print_table,
    scifact_passages,
    summary,
    timed_each,
)
from bot import keyword_index  # noqa: E402
from bot.embeddings import LocalEmbedder  # noqa: E402
from bot.search import search  # noqa: E402
from bot.store import Generation  # noqa: E402
from bot.store.sqlite.db import transaction  # noqa: E402
from bot.store.sqlite.fts import table_name as keyword_table  # noqa: E402
from bot.store.sqlite.store import SqliteStore, vec_table  # noqa: E402
from bot.vector_index import CompactVectors, in_memory, nearest, shortlist_size  # noqa: E402

DIM = 384
PASSAGE_WORDS = 120


def real_texts() -> tuple[list[str], list[str]]:
    """Passages and questions with real word statistics, so FTS5 matches as many rows as it would.

    SciFact abstracts cut into 120-word passages, with SciFact's claims as
    questions, when ../shared/eval is there; else the sample handbook's
    sentences and the golden questions.
    """
    abstracts = scifact_passages(limit=None)
    if abstracts is None:
        sentences = knowledge_sentences(limit=100_000)
        golden = ROOT / "tests" / "data" / "golden.jsonl"
        questions = [json.loads(line)["q"] for line in golden.read_text().splitlines() if line.strip()]
        return [" ".join(sentences[i:i + 6]) for i in range(0, len(sentences), 6)], questions
    passages = []
    for abstract in abstracts:
        words = abstract.split()
        passages += [" ".join(words[i:i + PASSAGE_WORDS]) for i in range(0, len(words), PASSAGE_WORDS)]
    queries = SHARED_EVAL / "scifact" / "queries.jsonl"
    return passages, [json.loads(line)["text"] for line in queries.read_text().splitlines() if line.strip()]


def clustered_unit_vectors(n: int, rng: np.random.Generator, clusters: int = 2000) -> np.ndarray:
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        part = slice(start, min(n, start + 100_000))
        size = part.stop - part.start
        out[part] = centres[rng.integers(0, clusters, size)] + 1.2 * rng.standard_normal((size, DIM), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def fill_store(store: SqliteStore, model: str, vectors: np.ndarray, texts: list[str] | None) -> Generation:
    """One generation of len(vectors) chunks, 100 per document, written as the indexer would.

    Chunk i's text is texts[i % len(texts)], also indexed for keywords (no
    keyword index when `texts` is None).
    """
    gen = store.create_generation(model, DIM, "synthetic")
    conn = store.conn
    with transaction(conn):
        for doc in range(0, len(vectors), 100):
            doc_id = conn.execute(
                "INSERT INTO documents (generation, path, sha256, size, mtime, title, indexed_at) "
                "VALUES (?, ?, '', 0, 0, ?, 0)", (gen.id, f"doc{doc}.md", f"Document {doc}"),
            ).lastrowid
            rows = []
            for i in range(doc, min(doc + 100, len(vectors))):
                rows.append((i + 1, doc_id, gen.id, i - doc, texts[i % len(texts)] if texts else ""))
            conn.executemany(
                "INSERT INTO chunks (id, document_id, generation, ordinal, heading, text, start_line, end_line) "
                "VALUES (?, ?, ?, ?, NULL, ?, 1, 1)", rows,
            )
            conn.executemany(
                f"INSERT INTO {vec_table(gen.id)} (chunk_id, embedding) VALUES (?, ?)",
                ((r[0], vectors[r[0] - 1].tobytes()) for r in rows),
            )
            if texts:
                conn.executemany(
                    f"INSERT INTO {keyword_table(gen.id)} (rowid, title, heading, body) VALUES (?, ?, NULL, ?)",
                    ((r[0], f"Document {doc}", r[4]) for r in rows),
                )
        conn.execute("UPDATE generations SET vectors_version = 1 WHERE id = ?", (gen.id,))
    store.activate(gen)
    return store.active_generation()


def recall_at_10(found: list[list[int]], truth: list[set[int]]) -> float:
    return sum(len(set(f[:10]) & t) for f, t in zip(found, truth)) / (10 * len(truth))


def one_size(n: int, queries: int, embedder: LocalEmbedder, folder: Path,
             texts: tuple[list[str], list[str]]) -> list[list[object]]:
    rng = np.random.default_rng(n)
    vectors = clustered_unit_vectors(n, rng)
    picks = vectors[rng.integers(0, n, queries)] + 0.05 * rng.standard_normal((queries, DIM), dtype=np.float32)
    qs = picks / np.linalg.norm(picks, axis=1, keepdims=True)
    truth = [set((np.argpartition(-(vectors @ q), 10)[:10] + 1).tolist()) for q in qs]
    rows: list[list[object]] = []

    started = time.perf_counter()
    store = SqliteStore(folder / f"synthetic-{n}.sqlite3")
    gen = fill_store(store, embedder.model_id, vectors, texts[0] if n <= 100_000 else None)
    print(f"{n:,} chunks written in {time.perf_counter() - started:.0f} s", flush=True)

    rows.append([f"{n:,}", "numpy float32 brute force", summary(timed_each(
        lambda q: np.argpartition(-(vectors @ q), 10)[:10], qs)), "1.000",
        f"{vectors.nbytes / 2**20:.0f} MB"])

    vec0_queries = queries if n <= 100_000 else 10
    found = [[i for i, _ in store.exact_nearest(gen, q, 10)] for q in qs[:vec0_queries]]
    rows.append([f"{n:,}", "sqlite-vec vec0 KNN", summary(timed_each(
        lambda q: store.exact_nearest(gen, q, 10), qs[:vec0_queries])),
        f"{recall_at_10(found, truth[:vec0_queries]):.3f}", "on disk"])

    started = time.perf_counter()
    copy = in_memory(store, gen)
    load = time.perf_counter() - started
    found = [copy.search(q, 10)[0].tolist() for q in qs]
    rows.append([f"{n:,}", f"in-memory copy: scan ({shortlist_size(n):,} candidates)", summary(timed_each(
        lambda q: copy.search(q, 10), qs)), f"{recall_at_10(found, truth):.3f}",
        f"{copy.nbytes / 2**20:.0f} MB, loaded in {load:.1f} s"])
    found = [[i for i, _ in nearest(store, gen, q, 10)] for q in qs]
    rows.append([f"{n:,}", "vector_index.nearest (copy, kept in sync)", summary(timed_each(
        lambda q: nearest(store, gen, q, 10), qs)), f"{recall_at_10(found, truth):.3f}", ""])

    if n == 100_000:
        questions = texts[1][:queries]

        def uncached(text: str) -> None:
            keyword_index.clear_cache(store)
            search(store, embedder, text, k=5)

        rows.append([f"{n:,}", "search() end to end, hybrid, every word's BM25 list fetched afresh", summary(
            timed_each(uncached, questions)), "", ""])
        keyword_index.clear_cache(store)
        rows.append([f"{n:,}", f"search() end to end, hybrid, {len(questions)} new questions (cache filling)",
                     summary(timed_each(lambda text: search(store, embedder, text, k=5), questions)), "", ""])
        for mode in ("vector", "hybrid"):  # the same questions again: the steady state of a busy bot
            rows.append([f"{n:,}", f"search() end to end, {mode}, query embedded", summary(timed_each(
                lambda text, m=mode: search(store, embedder, text, k=5, mode=m), questions)), "", ""])
    store.close()
    return rows


def real_run(queries: int) -> list[list[object]]:
    loaded = real_vectors.load()
    if loaded is None:
        print("\nno real vectors: run benchmarks/real_vectors.py first for the real-embedding table")
        return []
    corpus, qs = loaded[0], loaded[1][:queries]
    truth = [set(np.argpartition(-(corpus @ q), 10)[:10].tolist()) for q in qs]
    compact = CompactVectors.build(np.arange(len(corpus)), corpus)
    rows: list[list[object]] = []
    for candidates in (100, 200, 500, 1000, 2000, 4000):
        found = [compact.search(q, 10, candidates)[0].tolist() for q in qs]
        rows.append([f"{len(corpus):,} real", candidates, summary(timed_each(
            lambda q, c=candidates: compact.search(q, 10, c), qs)), f"{recall_at_10(found, truth):.3f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    embedder = LocalEmbedder.bundled()
    texts = real_texts()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            rows += one_size(n, args.queries, embedder, Path(folder), texts)
    print_table("KNN top-10 over 384-d vectors (synthetic, clustered); 2 cores",
                ["chunks", "method", "latency", "recall@10", "memory"], rows)
    real = real_run(args.queries)
    if real:
        print_table("Real MiniLM vectors (SciFact + STS sentences), 1,109 SciFact queries",
                    ["chunks", "Hamming candidates", "latency", "recall@10"], real)


if __name__ == "__main__":
    main()
