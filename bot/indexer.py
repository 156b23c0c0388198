"""Bring the index in line with the knowledge folder, incrementally and safely.

Unchanged files (same size and mtime, or same sha256) cost nothing; a changed
file is re-chunked and only chunks whose text is new are embedded (the cache
has the rest); a deleted file disappears. Each file is replaced in its own
transaction, so an interruption leaves every file either old or new.

When the embedding model changes (or `full=True`), a new generation is built
beside the active one, which keeps answering until the new one is complete and
is swapped in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.cache import EmbedCounts, embed_many
from bot.chunking import Chunk, chunk_document, embedding_text
from bot.embeddings import Embedder
from bot.errors import KbError
from bot.loaders import LoadedDocument, Skipped, SourceFile, iter_loaded, load, sha256_bytes, walk
from bot.parsing import Block
from bot.settings import Settings
from bot.store import Generation, Store

log = logging.getLogger(__name__)


@dataclass
class IndexProgress:
    """Where a run stands, for a progress line: files read, chunks read and written, texts embedded."""

    files_done: int
    files_total: int
    path: str
    chunks_read: int
    chunks_written: int
    chunks_embedded: int
    finished: bool = False


Progress = Callable[[IndexProgress], None]

# Files are chunked ahead and embedded together, so the embedder sees large
# batches it can sort by length, then each file is written in its own transaction.
EMBED_GROUP_CHUNKS = 256


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    unsupported: dict[str, int] = field(default_factory=dict)  # extension -> count
    notes: dict[str, str] = field(default_factory=dict)  # path -> e.g. "decoded as cp1252"
    chunks: int = 0  # in the index after the run
    chunks_written: int = 0
    texts_embedded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    model: str = ""
    rebuilt: bool = False
    dry_run: bool = False

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    source: SourceFile
    sha256: str
    doc: LoadedDocument
    chunks: list[Chunk]
    texts: list[str]
    is_new: bool


def index_folder(
    store: Store,
    embedder: Embedder,
    settings: Settings,
    knowledge_dir: Path | None = None,
    *,
    full: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> IndexReport:
    """Index `knowledge_dir` (default from settings) into `store`; return what happened."""
    started = time.perf_counter()
    folder = Path(knowledge_dir or settings.knowledge_dir)
    if not folder.is_dir():
        raise KbError(f"knowledge folder not found: {folder} (set KB_KNOWLEDGE_DIR or --knowledge)")
    report = IndexReport(model=embedder.model, dry_run=dry_run)
    scan = walk(folder)
    files, report.unsupported = scan.files, scan.unsupported

    gen, report.rebuilt = _target_generation(store, embedder, folder, full=full, dry_run=dry_run)
    existing = store.documents(gen) if gen else {}
    for path, reason in scan.skipped.items():
        _skip(store, gen, report, path, reason, path in existing, dry_run)
    counts = EmbedCounts()
    pending: list[_Pending] = []

    def tell(path: str, finished: bool = False) -> None:
        if progress:
            progress(IndexProgress(files_done, len(to_read), path, chunks_read, report.chunks_written,
                                   counts.embedded, finished))

    def flush() -> None:
        texts = [t for p in pending for t in p.texts]
        if dry_run:
            hits = len(store.cached_vectors(embedder.model, texts))
            counts.cache_hits += hits
            counts.embedded += len(set(texts)) - hits
        else:
            vectors = embed_many(embedder, store, texts, counts=counts)
            offset = 0
            for p in pending:
                assert gen is not None
                store.replace_document(
                    gen, path=p.source.rel, sha256=p.sha256, size=p.source.size,
                    mtime=p.source.mtime, title=p.doc.title, chunks=p.chunks,
                    vectors=vectors[offset : offset + len(p.chunks)],
                )
                offset += len(p.chunks)
        for p in pending:
            (report.added if p.is_new else report.changed).append(p.source.rel)
            report.chunks_written += len(p.chunks)
        if pending:
            tell(pending[-1].source.rel)
        pending.clear()

    to_read = [s for s in files if full or not _unchanged_by_stat(existing.get(s.rel), s)]
    report.unchanged += len(files) - len(to_read)
    files_done = chunks_read = 0
    for source, data in iter_loaded(to_read, scan.root):
        files_done += 1
        tell(source.rel)
        old = existing.get(source.rel)
        if isinstance(data, Skipped):
            _skip(store, gen, report, source.rel, data.reason, old is not None, dry_run)
            continue
        digest = sha256_bytes(data)
        if old is not None and old.sha256 == digest and not full:
            report.unchanged += 1
            if not dry_run and gen is not None:
                store.touch_document(gen, source.rel, source.size, source.mtime)
            continue
        loaded = load(source, data)
        if isinstance(loaded, Skipped):
            _skip(store, gen, report, source.rel, loaded.reason, old is not None, dry_run)
            continue
        if loaded.note:
            report.notes[source.rel] = loaded.note
        chunks, texts = prepare_chunks(embedder, settings, loaded.blocks, title=loaded.title)
        if not chunks:
            _skip(store, gen, report, source.rel, "no text to index", old is not None, dry_run)
            continue
        pending.append(_Pending(source, digest, loaded, chunks, texts, old is None))
        chunks_read += len(chunks)
        if sum(len(p.chunks) for p in pending) >= EMBED_GROUP_CHUNKS:
            flush()
    flush()
    tell("", finished=True)

    seen = {s.rel for s in files} | set(scan.skipped)
    for path in sorted(set(existing) - seen):
        report.removed.append(path)
        if not dry_run and gen is not None:
            store.remove_document(gen, path)

    if not dry_run and gen is not None:
        store.set_knowledge_dir(gen, str(folder.resolve()))
        if gen.status == "building":
            store.activate(gen)
        report.chunks = int(store.stats()["chunks"])
    report.texts_embedded = counts.embedded
    report.cache_hits = counts.cache_hits
    report.seconds = time.perf_counter() - started
    log.info(
        "index added=%d changed=%d unchanged=%d removed=%d skipped=%d embedded=%d "
        "cache_hits=%d seconds=%.2f",
        len(report.added), len(report.changed), report.unchanged, len(report.removed),
        len(report.skipped), report.texts_embedded, report.cache_hits, report.seconds,
    )
    return report


def prepare_chunks(
    embedder: Embedder, settings: Settings, blocks: Sequence[Block], *, title: str | None
) -> tuple[list[Chunk], list[str]]:
    """A document's chunks sized for `embedder`, and the text embedded for each.

    Shared with the evaluation, so benchmark numbers measure the real chunking.
    """
    chunks = chunk_document(
        blocks,
        title=title,
        count_tokens=embedder.count_tokens_many,
        max_tokens=embedder.max_tokens,
        target_tokens=settings.chunk_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
    )
    return chunks, [embedding_text(title, c.heading, c.text) for c in chunks]


def _target_generation(
    store: Store, embedder: Embedder, folder: Path, *, full: bool, dry_run: bool
) -> tuple[Generation | None, bool]:
    """The generation to write: the active one, or a new build when the model changed (or `full`).

    An unfinished build of the same model is resumed after a model change; any
    other one (a killed `--full`, a build for another model) is dropped here, so
    it does not linger beside the active generation.
    """
    active = store.active_generation()
    current = active is not None and active.model == embedder.model and active.dim == embedder.dim
    if dry_run:
        return (active, False) if current and not full else (None, True)
    if not full and not current:
        resumed = store.building_generation(embedder.model, embedder.dim)
        if resumed:
            log.info("resuming the unfinished build of generation %d", resumed.id)
            return resumed, True
    if active:
        store.drop_generations(except_id=active.id)
    if current and not full:
        return active, False
    return store.create_generation(embedder.model, embedder.dim, str(folder.resolve())), True


def _unchanged_by_stat(old: object, source: SourceFile) -> bool:
    return old is not None and old.size == source.size and old.mtime == source.mtime  # type: ignore[attr-defined]


def _skip(
    store: Store,
    gen: Generation | None,
    report: IndexReport,
    path: str,
    reason: str,
    was_indexed: bool,
    dry_run: bool,
) -> None:
    """Record why a file is skipped; a previous version of it leaves the index."""
    report.skipped[path] = reason
    if was_indexed:
        report.removed.append(path)
        if not dry_run and gen is not None:
            store.remove_document(gen, path)
