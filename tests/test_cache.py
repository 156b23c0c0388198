"""The persistent embedding cache: embed once per model, ever; never mix models.

The backend is a real OpenAIEmbedder talking HTTP to the loopback fake, so every
call that reaches the backend is counted by the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.cache import EmbedCounts, embed_many
from bot.embeddings import LocalEmbedder, OpenAIEmbedder
from bot.errors import EmbeddingError, IndexNotBuiltError
from bot.indexer import index_folder
from bot.search import search
from bot.store import open_store
from bot.store.sqlite.store import SqliteStore
from tests.conftest import KNOWLEDGE, make_settings
from tests.openai_fake import Fault, OpenAIFake, vector_for

TEXTS = ["How do I reset my VPN password?", "Where is the holiday calendar?", "Who approves expenses?"]


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(models=["model-a", "model-b"]) as server:
        yield server


def embedder_for(fake: OpenAIFake, model: str = "model-a", **kwargs: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(base_url=fake.base_url, api_key="", model=model, max_retries=0, timeout=10, **kwargs)


def expected(texts: list[str], model: str = "model-a", dim: int = 384) -> np.ndarray:
    return np.vstack([vector_for(t, model, dim) for t in texts])


def test_second_run_hits_the_cache(fake: OpenAIFake, tmp_path: Path) -> None:
    embedder = embedder_for(fake)
    with open_store(tmp_path / "kb.sqlite3") as store:
        first = embed_many(embedder, store, TEXTS)
        assert fake.request_count == 1
        assert sorted(fake.inputs_seen) == sorted(TEXTS)
        counts = EmbedCounts()
        second = embed_many(embedder, store, TEXTS, counts=counts)
    assert fake.request_count == 1  # zero backend calls the second time
    assert (counts.cache_hits, counts.embedded) == (3, 0)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, expected(TEXTS), atol=1e-6)
    assert first.dtype == second.dtype == np.float32


def test_cache_survives_a_restart(fake: OpenAIFake, tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite3"
    with open_store(path) as store:
        first = embed_many(embedder_for(fake), store, TEXTS)
    assert fake.request_count == 1
    # a new process: new Store on the same file, new embedder object
    with open_store(path) as store:
        counts = EmbedCounts()
        again = embed_many(embedder_for(fake), store, list(reversed(TEXTS)), counts=counts)
    assert fake.request_count == 1
    assert counts.cache_hits == 3
    np.testing.assert_array_equal(again, first[::-1])


def test_only_misses_are_embedded(fake: OpenAIFake, tmp_path: Path) -> None:
    embedder = embedder_for(fake)
    with open_store(tmp_path / "kb.sqlite3") as store:
        embed_many(embedder, store, TEXTS[:2])
        fake.reset()
        counts = EmbedCounts()
        vectors = embed_many(embedder, store, TEXTS, counts=counts)
    assert fake.inputs_seen == [TEXTS[2]]
    assert (counts.cache_hits, counts.embedded) == (2, 1)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)


def test_duplicates_in_one_call_are_embedded_once(fake: OpenAIFake, tmp_path: Path) -> None:
    texts = ["alpha", "beta", "alpha", "alpha", "gamma", "beta"]
    counts = EmbedCounts()
    with open_store(tmp_path / "kb.sqlite3") as store:
        vectors = embed_many(embedder_for(fake), store, texts, counts=counts)
        entries = store.conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]
    assert fake.inputs_seen == ["alpha", "beta", "gamma"]  # each once, first-seen order
    assert (counts.cache_hits, counts.embedded) == (0, 3)
    assert entries == 3
    assert vectors.shape == (6, 384)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    np.testing.assert_array_equal(vectors[0], vectors[3])
    np.testing.assert_array_equal(vectors[1], vectors[5])
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_another_model_never_gets_these_vectors(fake: OpenAIFake, tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        a = embed_many(embedder_for(fake, "model-a"), store, TEXTS)
        fake.reset()
        b = embed_many(embedder_for(fake, "model-b"), store, TEXTS)
        assert sorted(fake.inputs_seen) == sorted(TEXTS)  # model-b embedded everything itself
        fake.reset()
        a_again = embed_many(embedder_for(fake, "model-a"), store, TEXTS)
        b_again = embed_many(embedder_for(fake, "model-b"), store, TEXTS)
        rows = store.conn.execute("SELECT model, count(*) FROM embedding_cache GROUP BY model ORDER BY model").fetchall()
    assert fake.request_count == 0  # both now cached, side by side
    assert [tuple(r) for r in rows] == [("openai:model-a", 3), ("openai:model-b", 3)]
    np.testing.assert_allclose(a, expected(TEXTS, "model-a"), atol=1e-6)
    np.testing.assert_allclose(b, expected(TEXTS, "model-b"), atol=1e-6)
    assert float(np.abs(a - b).max()) > 0.1
    np.testing.assert_array_equal(a, a_again)
    np.testing.assert_array_equal(b, b_again)


def test_another_dimension_is_another_model(fake: OpenAIFake, tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        full = embed_many(embedder_for(fake), store, TEXTS)
        fake.reset()
        short = embed_many(embedder_for(fake, dim=256), store, TEXTS)
    assert fake.request_count == 1
    assert full.shape == (3, 384)
    assert short.shape == (3, 256)
    np.testing.assert_allclose(short, expected(TEXTS, "model-a", 256), atol=1e-6)


def test_model_and_text_cannot_be_confused(tmp_path: Path) -> None:
    # The cache key hashes "model::text": model "openai:m" with text "x::hello" and
    # model "openai:m::x" with text "hello" hash the same string.
    with OpenAIFake(models=["m", "m::x"]) as fake, open_store(tmp_path / "kb.sqlite3") as store:
        first = embed_many(embedder_for(fake, "m"), store, ["x::hello"])
        fake.reset()
        second = embed_many(embedder_for(fake, "m::x"), store, ["hello"])
        assert fake.inputs_seen == ["hello"]  # not served from model m's cache entry
    np.testing.assert_allclose(first[0], vector_for("x::hello", "m"), atol=1e-6)
    np.testing.assert_allclose(second[0], vector_for("hello", "m::x"), atol=1e-6)


def test_finished_batches_are_kept_when_a_later_one_fails(fake: OpenAIFake, tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(6)]
    embedder = embedder_for(fake, batch_size=2)
    path = tmp_path / "kb.sqlite3"
    fake.queue(Fault())  # the first batch is answered normally...
    fake.queue_error(400, "bad input", type_="invalid_request_error")  # ...the second fails
    with open_store(path) as store, pytest.raises(EmbeddingError):
        embed_many(embedder, store, texts)
    assert fake.request_count == 2
    fake.reset()
    with open_store(path) as store:
        counts = EmbedCounts()
        vectors = embed_many(embedder, store, texts, counts=counts)
    assert fake.inputs_seen == texts[2:]  # the first batch was not paid for twice
    assert (counts.cache_hits, counts.embedded) == (2, 4)
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_local_model_through_the_cache(embedder: LocalEmbedder, tmp_path: Path) -> None:
    texts = ["The cat sat on the mat.", "We deployed the web server at noon.", "The cat sat on the mat."]
    with open_store(tmp_path / "kb.sqlite3") as store:
        counts = EmbedCounts()
        cached = embed_many(embedder, store, texts, counts=counts)
        assert counts.embedded == 2
        again = embed_many(embedder, store, texts, counts=counts)
        models = [r[0] for r in store.conn.execute("SELECT DISTINCT model FROM embedding_cache")]
    assert counts.cache_hits == 2 and counts.embedded == 2
    assert models == [embedder.model_id]
    np.testing.assert_array_equal(cached, again)
    np.testing.assert_allclose(cached, embedder.embed(texts), atol=1e-5)


def test_empty_input(fake: OpenAIFake, tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        out = embed_many(embedder_for(fake, dim=64), store, [])
    assert out.shape == (0, 64)
    assert fake.request_count == 0


def test_m005_keeps_cached_vectors(tmp_path):
    """A cache written before m005 (WITHOUT ROWID) is carried over to the rowid table intact."""

    path = tmp_path / "old.sqlite3"
    vectors = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    with SqliteStore(path, stop_before="m005_cache_as_rowid_table") as old:
        old.cache_vectors("m", ["a", "b", "c"], vectors)
    with open_store(path) as store:
        (sql,) = store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'embedding_cache'").fetchone()
        assert "WITHOUT ROWID" not in sql
        found = store.cached_vectors("m", ["a", "b", "c", "d"])
        assert set(found) == {"a", "b", "c"} and np.array_equal(found["b"], vectors[1])
        store.cache_vectors("m", ["a"], vectors[2:])  # INSERT OR IGNORE still sees the unique key
        assert np.array_equal(store.cached_vectors("m", ["a"])["a"], vectors[0])


def test_endpoint_changing_dimension_under_one_name_rebuilds_the_index(fake: OpenAIFake, tmp_path: Path) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    for name in ("hr/expenses.md", "it/vpn-setup.md"):
        (folder / Path(name).name).write_bytes((KNOWLEDGE / name).read_bytes())
    settings = make_settings(tmp_path, knowledge_dir=folder)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder_for(fake), settings)
        assert store.active_generation().dim == 384
        fake.dim = 256  # the endpoint now answers 256-d vectors under the same model name

        # a new process asks: one line saying what to do, not a numpy traceback
        with pytest.raises(IndexNotBuiltError, match=r"384-dimensional .* 256-dimensional .* run `kb-bot index`"):
            search(store, embedder_for(fake), "taxi to the airport")

        # and re-indexes: a new 256-d generation from fresh vectors, not the cached 384-d ones
        report = index_folder(store, embedder_for(fake), settings)
        assert report.rebuilt and report.texts_embedded == report.chunks > 0
        gen = store.active_generation()
        assert gen.dim == 256
        assert [r[0] for r in store.conn.execute("SELECT id FROM generations")] == [gen.id]  # nothing half-built
        dims = store.conn.execute("SELECT DISTINCT dim FROM embedding_cache WHERE model = 'openai:model-a'").fetchall()
        assert [r[0] for r in dims] == [256]
        result = search(store, embedder_for(fake), "taxi to the airport")
    assert sorted(hit.path for hit in result.hits) == ["expenses.md", "vpn-setup.md"]  # sources: each file once


def test_cached_vectors_of_an_old_size_are_embedded_again(fake: OpenAIFake, tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        embed_many(embedder_for(fake), store, TEXTS[:2])
        fake.dim = 256
        fake.reset()
        counts = EmbedCounts()
        vectors = embed_many(embedder_for(fake), store, TEXTS, counts=counts)  # one miss teaches the new size
        assert sorted(fake.inputs_seen) == sorted(TEXTS)
        assert counts.embedded == 3
        fake.reset()
        again = embed_many(embedder_for(fake), store, TEXTS)
    assert fake.request_count == 0
    assert vectors.shape == again.shape == (3, 256)
    np.testing.assert_allclose(again, expected(TEXTS, dim=256), atol=1e-6)
