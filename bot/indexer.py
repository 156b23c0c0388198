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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bot.cache import EmbedCounts, embed_many
from bot.chunking import Chunk, chunk_document, embedding_text
from bot.embeddings import Embedder
from bot.errors import KbError
from bot.loaders import FolderScan, LoadedDocument, Skipped, SourceFile, iter_loaded, load, sha256_bytes, walk
from bot.parsing import Block
from bot.settings import Settings
from bot.store import DocumentRecord, Generation, Store

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
# How many files are parsed ahead of the one being queued: enough to keep the parser busy
# while a group is embedded, few enough that memory does not grow with the folder.
PARSE_AHEAD_FILES = 8


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


# A parsed file: its digest, document, chunks and their texts; or why it is skipped; or None (unchanged).
_Parsed = tuple[str, LoadedDocument, list[Chunk], list[str]] | Skipped | None


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
    run = _Run(store, embedder, settings, IndexReport(model=embedder.model_id, dry_run=dry_run), full, progress)
    scan = walk(folder)
    run.report.unsupported = scan.unsupported
    to_read = run.plan(folder, scan)
    run.read_and_embed(to_read, scan.root)
    run.remove_deleted({s.rel for s in scan.files} | set(scan.skipped))
    run.swap(folder)
    run.report.seconds = time.perf_counter() - started
    report = run.report
    log.info(
        "index added=%d changed=%d unchanged=%d removed=%d skipped=%d embedded=%d "
        "cache_hits=%d seconds=%.2f",
        len(report.added), len(report.changed), report.unchanged, len(report.removed),
        len(report.skipped), report.texts_embedded, report.cache_hits, report.seconds,
    )
    return report


class _Run:
    """One `index_folder` run, in named steps: plan, read and embed (in groups), remove, swap."""

    def __init__(
        self, store: Store, embedder: Embedder, settings: Settings, report: IndexReport, full: bool,
        progress: Progress | None,
    ) -> None:
        self.store, self.embedder, self.settings, self.report = store, embedder, settings, report
        self.full, self.dry_run, self.progress = full, report.dry_run, progress
        self.gen: Generation | None = None
        self.existing: dict[str, DocumentRecord] = {}
        self.counts = EmbedCounts()
        self.pending: list[_Pending] = []
        self.files_total = self.files_done = self.chunks_read = 0

    def plan(self, folder: Path, scan: FolderScan) -> list[SourceFile]:
        """Pick the generation to write, drop what the scan skipped, and list the files to read."""
        self.gen, self.report.rebuilt = _target_generation(
            self.store, self.embedder, folder, full=self.full, dry_run=self.dry_run
        )
        self.existing = self.store.documents(self.gen) if self.gen else {}
        for path, reason in scan.skipped.items():
            self.skip(path, reason)
        to_read = [s for s in scan.files if self.full or not _unchanged_by_stat(self.existing.get(s.rel), s)]
        self.report.unchanged += len(scan.files) - len(to_read)
        self.files_total = len(to_read)
        return to_read

    def read_and_embed(self, to_read: list[SourceFile], root: Path) -> None:
        """Chunk each changed file; embed and write them in groups of about EMBED_GROUP_CHUNKS chunks.

        Files are parsed a few ahead on one worker thread, while this thread embeds
        and writes: parsing is pure Python and the model releases the GIL, so the
        two overlap (about a fifth of a cold index was parsing). Only this thread
        touches the store and the report.
        """
        loaded = iter_loaded(to_read, root)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kb-parse") as parser:
            ahead: deque[tuple[SourceFile, Future[_Parsed]]] = deque()
            for source, data in loaded:
                ahead.append((source, parser.submit(self.parse, source, data)))
                if len(ahead) > PARSE_AHEAD_FILES:
                    self.take(*ahead.popleft())
            while ahead:
                self.take(*ahead.popleft())
        self.flush()
        self.tell("", finished=True)
        self.report.texts_embedded = self.counts.embedded
        self.report.cache_hits = self.counts.cache_hits

    def take(self, source: SourceFile, parsed: Future[_Parsed]) -> None:
        """Queue one parsed file for embedding; embed and write the queue once it holds a group."""
        self.files_done += 1
        self.tell(source.rel)
        pending = self.prepare(source, parsed.result())
        if pending is None:
            return
        self.pending.append(pending)
        self.chunks_read += len(pending.chunks)
        if sum(len(p.chunks) for p in self.pending) >= EMBED_GROUP_CHUNKS:
            self.flush()

    def parse(self, source: SourceFile, data: bytes | Skipped) -> _Parsed:
        """The file's digest and chunks, or why it is skipped, or None when unchanged: no side effects."""
        if isinstance(data, Skipped):
            return data
        digest = sha256_bytes(data)
        old = self.existing.get(source.rel)
        if old is not None and old.sha256 == digest and not self.full:
            return None
        loaded = load(source, data)
        if isinstance(loaded, Skipped):
            return loaded
        chunks, texts = prepare_chunks(self.embedder, self.settings, loaded.blocks, title=loaded.title)
        return digest, loaded, chunks, texts

    def prepare(self, source: SourceFile, parsed: _Parsed) -> _Pending | None:
        """The file's chunks to embed, or None when it is skipped or unchanged (recorded here)."""
        if isinstance(parsed, Skipped):
            return self.skip(source.rel, parsed.reason)
        if parsed is None:
            self.report.unchanged += 1
            if not self.dry_run and self.gen is not None:
                self.store.touch_document(self.gen, source.rel, source.size, source.mtime)
            return None
        digest, loaded, chunks, texts = parsed
        if loaded.note:
            self.report.notes[source.rel] = loaded.note
        if not chunks:
            return self.skip(source.rel, "no text to index")
        return _Pending(source, digest, loaded, chunks, texts, source.rel not in self.existing)

    def flush(self) -> None:
        """Embed the pending files' chunks together, then write each file in its own transaction."""
        texts = [t for p in self.pending for t in p.texts]
        if self.dry_run:
            hits = len(self.store.cached_vectors(self.embedder.model_id, texts))
            self.counts.cache_hits += hits
            self.counts.embedded += len(set(texts)) - hits
        else:
            vectors = embed_many(self.embedder, self.store, texts, counts=self.counts)
            offset = 0
            for p in self.pending:
                assert self.gen is not None
                self.store.replace_document(
                    self.gen, path=p.source.rel, sha256=p.sha256, size=p.source.size,
                    mtime=p.source.mtime, title=p.doc.title, chunks=p.chunks,
                    vectors=vectors[offset : offset + len(p.chunks)],
                )
                offset += len(p.chunks)
        for p in self.pending:
            (self.report.added if p.is_new else self.report.changed).append(p.source.rel)
            self.report.chunks_written += len(p.chunks)
        if self.pending:
            self.tell(self.pending[-1].source.rel)
        self.pending.clear()

    def remove_deleted(self, seen: set[str]) -> None:
        for path in sorted(set(self.existing) - seen):
            self.report.removed.append(path)
            if not self.dry_run and self.gen is not None:
                self.store.remove_document(self.gen, path)

    def swap(self, folder: Path) -> None:
        """Record the folder and make a finished new generation the active one, in one transaction."""
        if self.dry_run or self.gen is None:
            return
        self.store.set_knowledge_dir(self.gen, str(folder.resolve()))
        if self.gen.status == "building":
            self.store.activate(self.gen)
        self.report.chunks = int(self.store.stats()["chunks"])

    def tell(self, path: str, finished: bool = False) -> None:
        if self.progress:
            self.progress(IndexProgress(
                self.files_done, self.files_total, path, self.chunks_read, self.report.chunks_written,
                self.counts.embedded, finished,
            ))

    def skip(self, path: str, reason: str) -> None:
        """Record why a file is skipped; a previous version of it leaves the index."""
        self.report.skipped[path] = reason
        if path in self.existing:
            self.report.removed.append(path)
            if not self.dry_run and self.gen is not None:
                self.store.remove_document(self.gen, path)


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
    current = active is not None and active.model == embedder.model_id and active.dim == embedder.dim
    if dry_run:
        return (active, False) if current and not full else (None, True)
    if not full and not current:
        resumed = store.building_generation(embedder.model_id, embedder.dim)
        if resumed:
            log.info("resuming the unfinished build of generation %d", resumed.id)
            return resumed, True
    if active:
        store.drop_generations(except_id=active.id)
    if current and not full:
        return active, False
    return store.create_generation(embedder.model_id, embedder.dim, str(folder.resolve())), True


def _unchanged_by_stat(old: DocumentRecord | None, source: SourceFile) -> bool:
    return old is not None and old.size == source.size and old.mtime == source.mtime
