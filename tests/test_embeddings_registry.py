"""Embedder backends by name, and the deterministic `fake` backend tests use for *some* vectors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bot.embeddings import FakeEmbedder, OpenAIEmbedder, embedder_backends, make_embedder, register_embedder, registry
from bot.errors import SettingsError, TextTooLongError
from bot.indexer import index_folder
from bot.search import search
from bot.settings import EMBED_BACKENDS
from bot.store import open_store
from tests.conftest import make_settings


def test_every_backend_the_settings_accept_is_registered() -> None:
    assert set(embedder_backends()) == set(EMBED_BACKENDS)


def test_make_embedder_picks_the_backend_by_name(tmp_path: Path) -> None:
    fake = make_embedder(make_settings(tmp_path, embed_backend="fake", embed_batch_size=7))
    assert isinstance(fake, FakeEmbedder) and fake.batch_size == 7
    remote = make_embedder(make_settings(tmp_path, embed_backend="openai", openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(remote, OpenAIEmbedder) and remote.model_id == "openai:text-embedding-3-small"


def test_an_unknown_backend_is_one_clear_line(tmp_path: Path) -> None:
    settings = dataclasses.replace(make_settings(tmp_path), embed_backend="nope")
    expected = r"^EMBED_BACKEND 'nope' is not a registered backend: use one of fake, local, openai$"
    with pytest.raises(SettingsError, match=expected):
        make_embedder(settings)


def test_a_registered_backend_is_built_and_a_name_is_taken_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    register_embedder("tiny")(lambda settings: FakeEmbedder(dim=8))
    embedder = make_embedder(dataclasses.replace(make_settings(tmp_path), embed_backend="tiny"))
    assert embedder.dim == 8 and embedder.model_id == "fake-hashed-words-8"
    with pytest.raises(ValueError, match="already registered"):
        register_embedder("tiny")(lambda settings: FakeEmbedder())


def test_fake_vectors_are_deterministic_unit_length_and_share_words() -> None:
    fake = FakeEmbedder()
    texts = ["reset the VPN password", "the VPN password: reset!", "lunch menu on friday", "", "\udcff"]
    vectors = fake.embed(texts)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors, FakeEmbedder().embed(texts))
    same_words, other_words = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert same_words == pytest.approx(1.0) and other_words < 0.5
    assert (fake.calls, fake.texts) == (1, 5)
    fake.embed(["one more"])
    assert (fake.calls, fake.texts) == (2, 6)


def test_fake_refuses_long_texts_unless_truncating() -> None:
    fake = FakeEmbedder(max_tokens=8)
    long = " ".join(f"w{i}" for i in range(20))
    with pytest.raises(TextTooLongError, match="text 0 has 22 tokens; fake-hashed-words-64 accepts 8"):
        fake.embed([long])
    np.testing.assert_array_equal(fake.embed([long], truncate=True), fake.embed(["w0 w1 w2 w3 w4 w5"]))


def test_the_fake_indexes_and_searches_the_sample_folder(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    fake = FakeEmbedder()
    with open_store(settings.db_path) as store:
        report = index_folder(store, fake, settings)
        assert report.model == fake.model_id and report.texts_embedded == fake.texts > 0
        hits = search(store, fake, "taxi receipts reimbursed", k=3, mode="vector").hits
    assert hits and all(-1.0 <= h.score <= 1.0 for h in hits)
