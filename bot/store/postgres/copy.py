"""`kb-bot store copy SRC DST`: move an install between SQLite and PostgreSQL (either way), resumably.

The index goes through the stores' own API: each document of the source's
active generation is written into the destination's building generation of the
same model in one transaction (`replace_document`), skipped when already there
with the same content, so a copy cut short resumes where it stopped; the
generation is activated once complete. The embedding cache and the duplicate
scan's state are copied table by table, row by row with ON CONFLICT DO NOTHING.
Then the copy is checked: the same counts, and a sample of vectors equal.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bot.chunking import Chunk
from bot.errors import DatabaseError, IndexNotBuiltError
from bot.store import ChunkRow, Generation, Store
from bot.store.postgres.store import PostgresStore

# Tables copied as they are: the same names and columns in both stores' schemas.
TABLES = {
    "embedding_cache": ("key", "model", "dim", "vector", "created_at"),
    "messages": ("channel", "ts", "thread_ts", '"user"', "text", "posted_at", "edited_at", "deleted", "scanned_at",
                 "prepared_as", "vector_key"),
    "channel_cursors": ("channel", "last_ts", "updated_at"),
    "flagged_pairs": ("later_channel", "later_ts", "earlier_channel", "earlier_ts", "score", "action", "flagged_at",
                      "posted_at", "posted_ts"),
    "slack_events": ("event_id", "received_at"),
    "dupe_feedback": ("later_channel", "later_ts", "earlier_channel", "earlier_ts", "later_text", "earlier_text",
                      "score", "reported_by", "reported_at"),
}
PAGE = 2_000
SAMPLED_VECTORS = 50

@dataclass
class CopyReport:
    documents_copied: int = 0
    documents_already_there: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows in the destination after the copy
    vectors_checked: int = 0


def copy_store(src: Store, dst: Store, progress: Callable[[str], None] = lambda _: None) -> CopyReport:
    """Copy `src`'s active index, embedding cache and message state into `dst`, then verify it."""
    report = CopyReport()
    for table, columns in TABLES.items():
        report.rows[table] = _copy_table(src, dst, table, columns)
        progress(f"{table}: {report.rows[table]} rows")
    gen = src.active_generation()
    if gen is None:
        raise IndexNotBuiltError(f"{src.location} has no index to copy: run `kb-bot index` there first")
    target = _target(dst, gen)
    there = dst.documents(target)
    by_path = _chunks_by_path(src, gen)
    wanted = src.documents(gen)
    for path in set(there) - set(wanted):
        dst.remove_document(target, path)
    for path, doc in sorted(wanted.items()):
        if path in there and there[path].sha256 == doc.sha256:
            report.documents_already_there += 1
            continue
        rows = by_path.get(path, [])
        vectors = _vectors(src, gen, [row.id for row in rows])
        dst.replace_document(
            target, path=path, sha256=doc.sha256, size=doc.size, mtime=doc.mtime,
            title=rows[0].title if rows else None,
            chunks=[Chunk(row.text, row.heading, row.start_line, row.end_line) for row in rows], vectors=vectors,
        )
        report.documents_copied += 1
    dst.activate(target)
    report.vectors_checked = verify(src, dst)
    return report


def _target(dst: Store, gen: Generation) -> Generation:
    """Where the copy goes: the generation of the same model a copy (or the index) already built or started."""
    active = dst.active_generation()
    if active and (active.model, active.dim) == (gen.model, gen.dim):
        return active
    return dst.building_generation(gen.model, gen.dim) or dst.create_generation(gen.model, gen.dim, gen.knowledge_dir)


def _chunks_by_path(store: Store, gen: Generation) -> dict[str, list[ChunkRow]]:
    rows = store.chunks_by_id(store.chunk_ids(gen).tolist())
    grouped: dict[str, list[ChunkRow]] = {}
    for chunk_id in sorted(rows):  # ids grow with a document's chunk order
        grouped.setdefault(rows[chunk_id].path, []).append(rows[chunk_id])
    return grouped


def _vectors(store: Store, gen: Generation, ids: list[int]) -> np.ndarray:
    found: dict[int, np.ndarray] = {}
    for page_ids, page in store.vector_pages(gen, np.array(ids, np.int64)):
        found.update(zip(page_ids.tolist(), page))
    return np.array([found[i] for i in ids], np.float32).reshape(len(ids), gen.dim)


def _copy_table(src: Store, dst: Store, table: str, columns: tuple[str, ...]) -> int:
    names = ", ".join(columns)
    mark = "%s" if isinstance(dst, PostgresStore) else "?"
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(columns))}) ON CONFLICT DO NOTHING"
    deleted = columns.index("deleted") if "deleted" in columns else None
    cursor = src.conn.cursor()
    cursor.execute(f"SELECT {names} FROM {table}")
    while rows := cursor.fetchmany(PAGE):
        rows = [tuple(row) for row in rows]
        if deleted is not None:  # 0/1 in SQLite, boolean in PostgreSQL
            rows = [(*row[:deleted], bool(row[deleted]), *row[deleted + 1 :]) for row in rows]
        with dst.atomic():
            dst.conn.cursor().executemany(insert, rows)
    return dst.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def verify(src: Store, dst: Store) -> int:
    """Raise `DatabaseError` unless `dst` holds `src`'s documents, chunks and cache; return the vectors compared."""
    mine, theirs = src.stats(), dst.stats()
    for key in ("model", "dim", "documents", "chunks"):
        if mine[key] != theirs[key]:
            raise DatabaseError(f"the copy differs: {key} {mine[key]} in {src.location}, {theirs[key]} in {dst.location}")
    for table in TABLES:
        counts = [s.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for s in (src, dst)]
        if counts[1] < counts[0]:
            raise DatabaseError(
                f"the copy lacks rows of {table}: {counts[0]} in {src.location}, {counts[1]} in {dst.location}"
            )
    src_gen, dst_gen = src.active_generation(), dst.active_generation()
    ids = src.chunk_ids(src_gen).tolist()
    sample = random.Random(0).sample(ids, min(SAMPLED_VECTORS, len(ids)))
    src_rows, dst_rows = src.chunks_by_id(sample), dst.chunks_by_id(dst.chunk_ids(dst_gen).tolist())
    dst_ids = {(r.path, r.start_line, r.end_line, r.text): i for i, r in dst_rows.items()}
    for chunk_id in sample:
        row = src_rows[chunk_id]
        twin = dst_ids.get((row.path, row.start_line, row.end_line, row.text))
        if twin is None or not np.array_equal(_vectors(src, src_gen, [chunk_id]), _vectors(dst, dst_gen, [twin])):
            raise DatabaseError(f"the copy differs: a passage of {row.path} (line {row.start_line}) or its vector")
    return len(sample)
