"""The in-memory vector copy: same hits as exact search on real embeddings, and in step with the store."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from bot import vector_index
from bot.indexer import index_folder
from bot.store import open_store
from bot.store.sqlite.store import SqliteStore, vec_table
from bot.vector_index import CompactVectors, in_memory, nearest
from tests.conftest import SHARED_EVAL, make_settings


def sentences() -> list[str]:
    """~2,000 real sentences: STS Benchmark when ../shared/eval is there, else the handbook's lines."""
    sts = SHARED_EVAL / "stsbenchmark" / "sts-test.csv"
    if sts.exists():
        seen: dict[str, None] = {}
        for line in sts.read_text(encoding="utf-8").splitlines():
            for sentence in line.split("\t")[5:7]:
                seen.setdefault(sentence)
        return list(seen)[:2000]
    from benchmarks.common import knowledge_sentences

    return knowledge_sentences(2000)


@pytest.fixture(scope="module")
def real_vectors(embedder) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, queries): real MiniLM vectors, the last 100 sentences held out as queries."""
    vectors = embedder.embed(sentences(), truncate=True)
    return vectors[:-100], vectors[-100:]


def exact_top(corpus: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-(corpus @ query))[:k].tolist())


def test_hamming_shortlist_keeps_the_true_neighbours_of_real_embeddings(real_vectors):
    """With candidates at 20% of the corpus the coarse scan really filters, and still finds the top 10."""
    corpus, queries = real_vectors
    ids = np.arange(len(corpus))
    quantized = CompactVectors.build(ids, corpus)
    candidates = len(corpus) // 5
    found = total = 0
    for query in queries:
        shortlist, _ = quantized.search(query, 30, candidates=candidates)
        best = sorted(shortlist.tolist(), key=lambda i: -float(corpus[i] @ query))[:10]
        found += len(set(best) & exact_top(corpus, query, 10))
        total += 10
    recall = found / total
    print(f"\nrecall@10 with {candidates} of {len(corpus)} candidates: {recall:.3f}")
    assert recall >= 0.98


# A half-precision copy puts each cosine within 2^-11 of the exact one (unit vectors).
HALF = 2.0**-11


def assert_near_exact_top(found: list[int], exact: dict[int, float], k: int) -> None:
    """`found` is the exact top k but for swaps among cosines closer than twice HALF."""
    kth = sorted(exact.values(), reverse=True)[k - 1]
    assert len(found) == k and all(exact[i] >= kth - 2 * HALF for i in found), (found, kth)


def test_cosines_are_within_half_precision_and_rank_alike(real_vectors):
    corpus, queries = real_vectors
    compact = CompactVectors.build(np.arange(len(corpus)), corpus)
    for query in queries[:20]:
        ids, cosines = compact.search(query, 50, candidates=len(corpus))
        exact = corpus @ query
        assert np.abs(cosines - exact[ids]).max() <= HALF
        assert_near_exact_top(ids[:10].tolist(), dict(enumerate(exact.tolist())), 10)
        some = [int(i) for i in ids[::5]] + [10**9]  # and one id that is not there
        assert compact.cosines(query, some) == pytest.approx(dict(zip(some[:-1], cosines[::5].tolist())))


def test_edits_return_copies_with_the_same_answers_as_a_rebuild(real_vectors):
    corpus, queries = real_vectors
    ids = np.arange(100, 100 + len(corpus))
    whole = CompactVectors.build(ids, corpus)
    pages = [(ids[i : i + 300], corpus[i : i + 300]) for i in range(0, len(ids), 300)][::-1]
    for expected in (0, 100, len(ids), 2 * len(ids)):  # grown, exact, trimmed; out-of-order pages sorted
        paged = CompactVectors.from_pages(corpus.shape[1], pages, expected)
        assert np.array_equal(paged.ids, whole.ids) and np.array_equal(paged.vectors, whole.vectors)
        assert np.array_equal(paged.bits, whole.bits)
    dropped = ids[::7]
    first = CompactVectors.build(ids[:500], corpus[:500])
    rest = ~np.isin(ids[500:], dropped)
    edited = CompactVectors.joined(first, ~np.isin(first.ids, dropped),
                                   CompactVectors.build(ids[500:][rest], corpus[500:][rest]))
    rebuilt = CompactVectors.build(np.delete(ids, np.s_[::7]), np.delete(corpus, np.s_[::7], axis=0))
    assert len(whole) == len(corpus)
    assert np.array_equal(edited.ids, rebuilt.ids) and np.array_equal(edited.bits, rebuilt.bits)
    for query in queries[:10]:
        a, b = edited.search(query, 10, candidates=200), rebuilt.search(query, 10, candidates=200)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])
    assert not set(edited.search(queries[0], 50)[0].tolist()) & set(dropped.tolist())


def test_empty_and_tiny_collections():
    empty = CompactVectors.empty(384)
    assert len(empty) == 0 and empty.search(np.ones(384, np.float32) / 384**0.5, 5)[0].size == 0
    one = CompactVectors.build(np.array([7]), np.eye(1, 384, dtype=np.float32))
    assert one.search(np.eye(1, 384, dtype=np.float32)[0], 5)[0].tolist() == [7]
    with pytest.raises(ValueError):
        CompactVectors.build(np.array([1]), np.ones((1, 100), np.float32))


def test_nearest_matches_sqlite_vec_exact_search(sample_store, embedder):
    gen = sample_store.active_generation()
    for question in ["how do I get reimbursed for a taxi", "vpn keeps disconnecting", "parental leave weeks"]:
        query = embedder.embed([question])[0]
        fast = dict(nearest(sample_store, gen, query, 10))
        exact = dict(sample_store.exact_nearest(gen, query, 1000))  # the whole sample index
        assert_near_exact_top(list(fast), exact, 10)
        assert all(abs(cosine - exact[i]) <= HALF for i, cosine in fast.items())


def test_copy_follows_reindex_edits_and_deletes(knowledge_copy, tmp_path, embedder):
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        gen = store.active_generation()
        before = in_memory(store, gen)
        assert np.array_equal(before.ids, store.chunk_ids(gen))

        (knowledge_copy / "it" / "zebra.md").write_text("# Zebra crossings\n\nThe office zebra is called Marlowe.\n")
        shutil.rmtree(knowledge_copy / "hr")
        index_folder(store, embedder, settings)
        after = in_memory(store, gen)
        assert after is not before
        assert np.array_equal(after.ids, store.chunk_ids(gen))
        hits = nearest(store, gen, embedder.embed(["what is the office zebra called"])[0], 1)
        assert store.chunks_by_id([hits[0][0]])[hits[0][0]].path == "it/zebra.md"
        assert in_memory(store, gen) is after, "no change, no new copy"


def test_one_copy_per_generation_shared_by_the_threads_of_a_store(sample_db, embedder):
    results: list[CompactVectors | None] = []
    with open_store(sample_db) as store:
        gen = store.active_generation()
        threads = [threading.Thread(target=lambda: results.append(in_memory(store, gen))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and all(r is results[0] for r in results)
        assert list(store.memo[vector_index.__name__].by_generation) == [gen.id]


def test_chunk_ids_are_never_reused(tmp_path, knowledge_copy, embedder):
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        gen = store.active_generation()
        last = int(store.chunk_ids(gen).max())
        newest = store.conn.execute(
            "SELECT d.path FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?", (last,)
        ).fetchone()[0]
        (knowledge_copy / newest).unlink()
        index_folder(store, embedder, settings)
        (knowledge_copy / "new.md").write_text("# New\n\nA brand new page about onboarding buddies.\n")
        index_folder(store, embedder, settings)
        assert int(store.chunk_ids(gen).max()) > last


def test_migration_keeps_chunks_of_an_existing_database(tmp_path, embedder):
    """A database made before m004 keeps its chunks, then searches through the copy."""
    from bot.chunking import Chunk

    path = tmp_path / "old.sqlite3"
    with SqliteStore(path, stop_before="m004_vector_sync") as old:
        gen = old.create_generation(embedder.model_id, embedder.dim, "knowledge")
        doc = old.conn.execute(
            "INSERT INTO documents (generation, path, sha256, size, mtime, title, indexed_at) "
            "VALUES (?, 'a.md', '', 0, 0, 'A', 0)", (gen.id,)).lastrowid
        chunk = Chunk(text="Badges are replaced at the front desk.", heading="Badges", start_line=1, end_line=2)
        chunk_id = old.conn.execute(
            "INSERT INTO chunks (document_id, generation, ordinal, heading, text, start_line, end_line) "
            "VALUES (?, ?, 0, ?, ?, 1, 2)", (doc, gen.id, chunk.heading, chunk.text)).lastrowid
        old.conn.execute(f"INSERT INTO {vec_table(gen.id)} (chunk_id, embedding) VALUES (?, ?)",
                         (chunk_id, embedder.embed([chunk.text])[0].tobytes()))
        old.activate(gen)
    with open_store(path) as store:
        (sql,) = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'chunks'").fetchone()
        assert "AUTOINCREMENT" in sql and store.vectors_version(gen) == 0
        assert nearest(store, gen, embedder.embed(["lost my badge"])[0], 1)[0][0] == chunk_id
        store.replace_document(gen, path="b.md", sha256="", size=0, mtime=0, title="B", chunks=[chunk],
                               vectors=embedder.embed([chunk.text]))
        assert store.vectors_version(gen) == 1 and len(in_memory(store, gen)) == 2


def mean_cosine(store, gen, query: np.ndarray, ids: np.ndarray) -> float:
    mean = np.concatenate([v for _, v in store.vector_pages(gen, ids)]).mean(axis=0)
    return float(mean @ query) / float(np.linalg.norm(mean))


@pytest.mark.parametrize("vector_copy", [True, False])
def test_a_document_vector_is_the_normalised_mean_of_its_files_chunks(sample_db, embedder, vector_copy):
    query = embedder.embed(["how do I claim travel expenses"])[0]
    paths = ["hr/expenses.md", "hr/onboarding.md", "hr/no-such-file.md"]
    with open_store(sample_db, vector_copy=vector_copy) as store:
        gen = store.active_generation()
        files = store.file_chunk_ids(gen, paths)
        cosines = vector_index.document_cosines(store, gen, query, paths)
        for path, ids in files.items():
            assert cosines[path] == pytest.approx(mean_cosine(store, gen, query, ids), abs=2e-3)
    assert set(cosines) == set(files) == {"hr/expenses.md", "hr/onboarding.md"}, "no file, no vector"
    assert all(len(ids) > 1 for ids in files.values()), "files of several chunks, so the mean is a mean"


def test_a_files_document_vector_follows_its_edits(knowledge_copy, tmp_path, embedder):
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy)
    query = embedder.embed(["how do I claim travel expenses"])[0]
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        before = vector_index.document_cosines(store, store.active_generation(), query, ["hr/expenses.md"])
        (knowledge_copy / "hr" / "expenses.md").write_text("# Parking\n\nThe car park opens at 7am.\n")
        index_folder(store, embedder, settings)
        gen = store.active_generation()
        after = vector_index.document_cosines(store, gen, query, ["hr/expenses.md"])
        fresh = mean_cosine(store, gen, query, store.file_chunk_ids(gen, ["hr/expenses.md"])["hr/expenses.md"])
    assert after["hr/expenses.md"] == pytest.approx(fresh, abs=2e-3)
    assert after["hr/expenses.md"] < before["hr/expenses.md"] - 0.2, "the kept vector was dropped with the edit"
