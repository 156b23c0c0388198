"""Incremental indexing, crash safety and model changes, on real files and the real model."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.embeddings import BUNDLED_MODEL_ID, MODEL_DIR, STANDARD_MODEL_ID, Embedder, FakeEmbedder, LocalEmbedder
from bot.embeddings.local import _bundled_onnx_path
from bot.errors import IndexNotBuiltError
from bot.indexer import index_folder
from bot.search import search
from bot.store import Store, open_store
from bot.store.sqlite.store import SqliteStore
from tests.conftest import make_settings, sql, table_names, vector_table


class CountingEmbedder(Embedder):
    """The real embedder, counting the texts it embeds; can fail on the Nth batch."""

    def __init__(self, inner: Embedder, *, batch_size: int = 16, fail_on_batch: int | None = None) -> None:
        self.inner = inner
        self.model_id, self.dim, self.max_tokens = inner.model_id, inner.dim, inner.max_tokens
        self.batch_size = batch_size
        self.fail_on_batch = fail_on_batch
        self.texts: list[str] = []
        self.batches = 0

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens_many(texts)

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        self.batches += 1
        if self.fail_on_batch is not None and self.batches == self.fail_on_batch:
            raise RuntimeError("injected failure: the embeddings API went away")
        self.texts.extend(texts)
        return self.inner.embed(texts, truncate=truncate)


@pytest.fixture
def indexed(knowledge_copy: Path, sample_kb_db: Path | str) -> Iterator[Store]:
    """A writable copy of the sample index over `knowledge_copy` (same relative paths)."""
    with open_store(sample_kb_db) as store:
        yield store


def run(store: Store, embedder: Embedder, folder: Path, tmp_path: Path, **kwargs: object):
    return index_folder(store, embedder, make_settings(tmp_path, knowledge_dir=folder), **kwargs)


def top_paths(store: Store, embedder: Embedder, question: str, k: int = 5) -> list[str]:
    return [hit.path for hit in search(store, embedder, question, k).hits]


def test_reindex_of_unchanged_folder_embeds_nothing(knowledge_copy, tmp_path, kb_db):
    counting = FakeEmbedder()  # counts what it embeds; no meaning needed here
    with open_store(kb_db) as store:
        first = run(store, counting, knowledge_copy, tmp_path)
        assert first.texts_embedded == counting.texts > 0
        assert len(first.added) == len(list(knowledge_copy.rglob("*.*")))
        embedded_before = counting.texts

        second = run(store, counting, knowledge_copy, tmp_path)
        assert counting.texts == embedded_before
        assert second.texts_embedded == 0
        assert second.unchanged == len(first.added)
        assert not second.added and not second.changed and not second.removed

        # Touching files (new mtime, same bytes) is still free: the sha256 decides.
        for path in knowledge_copy.rglob("*.md"):
            path.touch()
        third = run(store, counting, knowledge_copy, tmp_path)
        assert third.texts_embedded == 0 and counting.texts == embedded_before


def test_editing_one_paragraph_embeds_only_changed_chunks(indexed, knowledge_copy, tmp_path, embedder):
    counting = CountingEmbedder(embedder)
    store = indexed
    run(store, counting, knowledge_copy, tmp_path)
    chunks_in_file = store.conn.execute(
        "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.path = 'hr/expenses.md'"
    ).fetchone()[0]
    assert chunks_in_file >= 5
    counting.texts.clear()

    expenses = knowledge_copy / "hr" / "expenses.md"
    expenses.write_text(
        expenses.read_text() + "\n\n## Bicycles\n\nA rented city bike is reimbursed up to 15 EUR a day.\n"
    )
    report = run(store, counting, knowledge_copy, tmp_path)
    assert report.changed == ["hr/expenses.md"]
    assert 1 <= report.texts_embedded <= 2 < chunks_in_file
    assert report.cache_hits >= chunks_in_file - 2
    assert any("bike" in text for text in counting.texts)
    assert top_paths(store, embedder, "can I expense a rented bicycle", k=1) == ["hr/expenses.md"]


def test_deleted_file_disappears_from_results(indexed, knowledge_copy, tmp_path, embedder):
    store = indexed
    run(store, embedder, knowledge_copy, tmp_path)
    question = "how do I get reimbursed for a taxi"
    assert "hr/expenses.md" in top_paths(store, embedder, question)

    (knowledge_copy / "hr" / "expenses.md").unlink()
    report = run(store, embedder, knowledge_copy, tmp_path)
    assert report.removed == ["hr/expenses.md"]
    assert "hr/expenses.md" not in top_paths(store, embedder, question, k=20)
    orphans = sql(store, f"SELECT count(*) FROM {vector_table(store, store.active_generation().id)} "
                         "WHERE chunk_id NOT IN (SELECT id FROM chunks)")
    assert orphans == [(0,)]


def test_failure_mid_index_keeps_previous_index_then_next_run_completes(indexed, knowledge_copy, tmp_path, embedder):
    store = indexed
    run(store, embedder, knowledge_copy, tmp_path)
    before = store.stats()
    # Change every Markdown file, then fail on the 3rd embedding batch.
    for path in sorted(knowledge_copy.rglob("*.md")):
        path.write_text(path.read_text() + "\n\nRevised in November: see the intranet for the history.\n")
    failing = CountingEmbedder(embedder, batch_size=4, fail_on_batch=3)
    with pytest.raises(RuntimeError, match="injected failure"):
        run(store, failing, knowledge_copy, tmp_path)

    # Every file is either fully old or fully new; the index still answers.
    assert store.stats()["documents"] == before["documents"]
    vectors = sql(store, f"SELECT count(*) FROM {vector_table(store, store.active_generation().id)}")
    assert vectors == [(store.stats()["chunks"],)]  # no passage without its vector, nor the reverse
    if isinstance(store, SqliteStore):  # a file to check; a server keeps its own pages
        assert sql(store, "PRAGMA integrity_check") == [("ok",)]
    assert "hr/expenses.md" in top_paths(store, embedder, "how do I get reimbursed for a taxi")

    report = run(store, embedder, knowledge_copy, tmp_path)
    assert len(report.changed) == len(list(knowledge_copy.rglob("*.md")))
    assert report.cache_hits > 0  # the batches embedded before the failure were kept


@pytest.fixture
def other_model(tmp_path_factory) -> LocalEmbedder:
    """The same network under another model id: a team's own model folder."""
    folder = tmp_path_factory.mktemp("team-model")
    shutil.copy(_bundled_onnx_path(), folder / "model.onnx")
    shutil.copy(MODEL_DIR / "tokenizer.json", folder / "tokenizer.json")
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 256}')
    return LocalEmbedder.from_folder(folder)


def test_model_change_rebuilds_without_mixing(indexed, knowledge_copy, tmp_path, embedder, other_model):
    assert other_model.model_id != embedder.model_id
    question = "how do I get reimbursed for a taxi"
    store = indexed
    run(store, embedder, knowledge_copy, tmp_path)
    old_gen = store.active_generation()

    # A rebuild with the new model that dies half-way: the old index keeps answering,
    # and the new model is refused instead of being compared with old vectors.
    failing = CountingEmbedder(other_model, batch_size=8, fail_on_batch=20)
    with pytest.raises(RuntimeError):
        run(store, failing, knowledge_copy, tmp_path)
    assert store.active_generation() == old_gen
    assert "hr/expenses.md" in top_paths(store, embedder, question)
    with pytest.raises(IndexNotBuiltError, match="rebuild"):
        search(store, other_model, question)

    report = run(store, other_model, knowledge_copy, tmp_path)
    assert report.rebuilt
    new_gen = store.active_generation()
    assert new_gen.model == other_model.model_id and new_gen.id != old_gen.id
    assert "hr/expenses.md" in top_paths(store, other_model, question)
    assert vector_table(store, old_gen.id) not in table_names(store)
    assert sql(store, "SELECT count(*) FROM chunks WHERE generation != ?", new_gen.id) == [(0,)]


def test_upgrading_from_the_fp32_default_re_embeds_every_passage(knowledge_copy, tmp_path, kb_db, embedder):
    """An index built before the int8 default (fp32 vectors, the bundled model's id): choosing
    `fp32` keeps it as it is; the new default rebuilds it from fresh vectors, none reused."""
    with open_store(kb_db) as store:
        first = run(store, LocalEmbedder.bundled(variant="fp32"), knowledge_copy, tmp_path)
        old_gen = store.active_generation()
        assert old_gen.model == BUNDLED_MODEL_ID

        kept = run(store, CountingEmbedder(LocalEmbedder.bundled(variant="fp32")), knowledge_copy, tmp_path)
        assert not kept.rebuilt and kept.texts_embedded == 0 and store.active_generation() == old_gen

        upgraded = CountingEmbedder(embedder)
        report = run(store, upgraded, knowledge_copy, tmp_path)
        assert report.rebuilt and report.cache_hits == 0
        assert report.texts_embedded == first.texts_embedded == len(upgraded.texts) > 0
        new_gen = store.active_generation()
        assert new_gen.model == STANDARD_MODEL_ID and new_gen.id != old_gen.id
        assert sql(store, "SELECT count(*) FROM chunks WHERE generation != ?", new_gen.id) == [(0,)]
        assert "hr/expenses.md" in top_paths(store, embedder, "how do I get reimbursed for a taxi")


def test_dry_run_writes_nothing(knowledge_copy, tmp_path, kb_db):
    with open_store(kb_db) as store:
        report = run(store, FakeEmbedder(), knowledge_copy, tmp_path, dry_run=True)
        assert report.dry_run and len(report.added) > 0 and report.texts_embedded > 0
        assert store.active_generation() is None
        assert store.stats()["cache_entries"] == 0


def test_full_reindex_builds_fresh_generation(knowledge_copy, tmp_path, kb_db):
    counting = FakeEmbedder()
    with open_store(kb_db) as store:
        run(store, counting, knowledge_copy, tmp_path)
        first_gen = store.active_generation()
        embedded = counting.texts
        report = run(store, counting, knowledge_copy, tmp_path, full=True)
        assert report.rebuilt and store.active_generation().id != first_gen.id
        assert counting.texts == embedded  # every vector came from the cache
        assert store.stats()["chunks"] == report.chunks


def test_abandoned_full_build_is_dropped_by_the_next_incremental_run(
    indexed, sample_kb_db, knowledge_copy, tmp_path, embedder
):
    """`kb-bot index --full` killed mid-build leaves a 'building' generation; the next run removes it."""
    store = indexed
    active = store.active_generation()
    store.conn.execute("DELETE FROM embedding_cache")  # so the full build has to embed, and is slow enough to kill
    command = [sys.executable, "-m", "bot", "--env-file", "/nonexistent", "index", "--full",
               "--knowledge", str(knowledge_copy), "--db", str(sample_kb_db)]
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    building = "SELECT g.id FROM generations g JOIN documents d ON d.generation = g.id WHERE g.status = 'building'"
    deadline = time.monotonic() + 300
    while (row := store.conn.execute(building).fetchone()) is None:
        assert build.poll() is None, build.stderr.read().decode()
        assert time.monotonic() < deadline, "the full build wrote no document in 300 s"
        time.sleep(0.05)
    build.send_signal(signal.SIGKILL)
    build.wait()
    abandoned = row[0]

    counting = CountingEmbedder(embedder)
    report = run(store, counting, knowledge_copy, tmp_path)
    assert not report.rebuilt and not report.added and not report.changed
    assert sql(store, "SELECT id, status FROM generations") == [(active.id, "active")]
    assert not any(name.endswith(f"_{abandoned}") for name in table_names(store))
    assert sql(store, "SELECT count(*) FROM chunks WHERE generation = ?", abandoned) == [(0,)]
    assert "hr/expenses.md" in top_paths(store, embedder, "how do I get reimbursed for a taxi")
