"""The SQLite file: documents, chunks, vectors, the embedding cache, bot state.

`SqliteStore` implements `bot.store.Store` over one file. Vectors live in one
sqlite-vec `vec0` table per generation (`vec_table`), beside one FTS5 keyword
table (`bot.store.sqlite.fts`); both are named from the generation's id here
and nowhere else. A model change builds a new generation beside the active
one and swaps them in one transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import numpy as np

from bot.chunking import Chunk
from bot.errors import DatabaseError
from bot.store.records import ChunkRow, DocumentRecord, Generation, cache_key, check_vectors
from bot.store.sqlite import fts
from bot.store.sqlite.db import (
    Connection,
    connect,
    database_bytes,
    file_identity,
    read_snapshot,
    sqlite_description,
    transaction,
)
from bot.store.sqlite.messages import SqliteMessageStore
from bot.store.sqlite.migrations import SCHEMA_VERSION, migrate
from bot.store.sqlite.questions import SqliteQuestionStore

T = TypeVar("T")

# SQLite before 3.32 binds at most 999 parameters a statement, so long lists go in parts.
PARAMETER_PART = 500


def _in_parts(values: Sequence[T]) -> Iterator[tuple[Sequence[T], str]]:
    """`values` in parts of PARAMETER_PART, each with its "?,?,…" placeholders for `IN (…)`."""
    for start in range(0, len(values), PARAMETER_PART):
        part = values[start : start + PARAMETER_PART]
        yield part, ",".join("?" * len(part))


def vec_table(generation_id: int) -> str:
    """The sqlite-vec table holding a generation's vectors (rowid-free: `chunk_id` is its key)."""
    return f"vec_chunks_{generation_id}"


class SqliteStore:
    """One SQLite file (`bot.store.Store`); each thread that uses it gets its own connection."""

    def __init__(self, path: str | Path, *, stop_before: str | None = None, vector_copy: bool = True) -> None:
        """Open `path`, migrated to the newest schema (or up to `stop_before`, see `migrations.migrate`)."""
        self.path = Path(path)
        self.location = str(self.path)
        self.vector_copy = vector_copy
        self.memo: dict[str, object] = {}
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        self.identity: tuple[int, int] | None = None
        migrate(self.conn, stop_before=stop_before)
        self.identity = file_identity(self.path)
        self.messages = SqliteMessageStore(lambda: self.conn)
        self.questions = SqliteQuestionStore(lambda: self.conn)

    @property
    def conn(self) -> Connection:
        """This thread's connection, opened on its first use (a connection must not serve two threads at once).

        Never opened on a file other than the one the store opened first.
        """
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.identity is not None:
                self.check_file()
            conn = self._local.conn = connect(self.path)
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def replaced(self) -> bool:
        """Whether the file at `path` was deleted or replaced since this store opened it."""
        return file_identity(self.path) != self.identity

    def check_file(self) -> None:
        """Raise `DatabaseError` if the file at `path` was deleted or replaced since it was opened.

        The connection would go on reading, and writing into, the unlinked file
        nobody else sees; a new connection beside its old -wal and -shm could
        corrupt the new one. Only a restart reads the new file safely.
        """
        if self.replaced():
            raise DatabaseError(
                f"the database {self.path} was deleted or replaced while kb-bot had it open: restart kb-bot"
            )

    def snapshot(self) -> AbstractContextManager[Connection]:
        """A block whose reads all see one state of the file (`bot.store.sqlite.db.read_snapshot`)."""
        return read_snapshot(self.conn)

    def atomic(self) -> AbstractContextManager[Connection]:
        """A block written in one transaction, or not at all (a savepoint when nested; `bot.store.sqlite.db.transaction`)."""
        return transaction(self.conn)

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    # --- embedding cache -------------------------------------------------

    def cached_vectors(self, model: str, texts: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """Vectors already stored for `texts` under `model` (of dimension `dim` when given), by text."""
        by_key = {cache_key(model, t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        keys = list(by_key)
        for part, marks in _in_parts(keys):
            for key, blob in self.conn.execute(
                # model too: "m" + "::" + "x::t" and "m::x" + "::" + "t" hash alike
                f"SELECT key, vector FROM embedding_cache WHERE key IN ({marks}) AND model = ?"
                + (" AND dim = ?" if dim else ""),
                [*part, model, *([dim] if dim else [])],
            ):
                found[by_key[bytes(key)]] = np.frombuffer(blob, dtype=np.float32)
        return found

    def cache_vectors(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        now = time.time()
        rows = [
            (cache_key(model, t), model, int(v.shape[0]), v.astype(np.float32).tobytes(), now)
            for t, v in zip(texts, vectors)
        ]
        with transaction(self.conn):
            # A row of another dimension is stale: the endpoint changed its vectors
            # under the same model name, so the new vector replaces it.
            self.conn.executemany(
                "INSERT INTO embedding_cache (key, model, dim, vector, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector, "
                "created_at = excluded.created_at WHERE embedding_cache.dim != excluded.dim",
                rows,
            )

    # --- generations -----------------------------------------------------

    def _generation(self, where: str, *args: object) -> Generation | None:
        row = self.conn.execute(
            f"SELECT id, model, dim, status, knowledge_dir FROM generations WHERE {where} "
            "ORDER BY id DESC LIMIT 1",
            args,
        ).fetchone()
        return Generation(*row) if row else None

    def active_generation(self) -> Generation | None:
        return self._generation("status = 'active'")

    def building_generation(self, model: str, dim: int) -> Generation | None:
        return self._generation("status = 'building' AND model = ? AND dim = ?", model, dim)

    def create_generation(self, model: str, dim: int, knowledge_dir: str) -> Generation:
        """A new, empty generation in 'building' state with its own vector and keyword tables."""
        with transaction(self.conn):
            cursor = self.conn.execute(
                "INSERT INTO generations (model, dim, status, knowledge_dir, created_at) "
                "VALUES (?, ?, 'building', ?, ?)",
                (model, dim, knowledge_dir, time.time()),
            )
            gen = Generation(cursor.lastrowid, model, dim, "building", knowledge_dir)
            self.conn.execute(
                f"CREATE VIRTUAL TABLE {vec_table(gen.id)} USING vec0("
                f"chunk_id INTEGER PRIMARY KEY, embedding float[{dim}] distance_metric=cosine)"
            )
            fts.create_table(self.conn, gen.id)
        return gen

    def activate(self, gen: Generation) -> None:
        """Make `gen` the one answering questions, then drop every other generation.

        A search that started on the old generation is not disturbed: it reads one
        snapshot (`snapshot()`), in which the old tables stay whole until it ends,
        and in WAL mode that costs the writer no wait.
        """
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE generations SET status = 'retired' WHERE status = 'active' AND id != ?",
                (gen.id,),
            )
            self.conn.execute(
                "UPDATE generations SET status = 'active', activated_at = ? WHERE id = ?",
                (time.time(), gen.id),
            )
        self.drop_generations(except_id=gen.id)

    def drop_generations(self, except_id: int) -> None:
        """Delete every generation but one (retired or abandoned builds)."""
        others = [
            Generation(*row)
            for row in self.conn.execute(
                "SELECT id, model, dim, status, knowledge_dir FROM generations WHERE id != ?",
                (except_id,),
            )
        ]
        for gen in others:
            with transaction(self.conn):
                self.conn.execute("DELETE FROM chunks WHERE generation = ?", (gen.id,))
                self.conn.execute("DELETE FROM documents WHERE generation = ?", (gen.id,))
                self.conn.execute(f"DROP TABLE IF EXISTS {vec_table(gen.id)}")
                self.conn.execute(f"DROP TABLE IF EXISTS {fts.table_name(gen.id)}")
                self.conn.execute("DELETE FROM generations WHERE id = ?", (gen.id,))

    # --- documents and chunks --------------------------------------------

    def documents(self, gen: Generation) -> dict[str, DocumentRecord]:
        return {
            row["path"]: DocumentRecord(
                row["id"], row["path"], row["sha256"], row["size"], row["mtime"]
            )
            for row in self.conn.execute(
                "SELECT id, path, sha256, size, mtime FROM documents WHERE generation = ?",
                (gen.id,),
            )
        }

    def set_knowledge_dir(self, gen: Generation, knowledge_dir: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE generations SET knowledge_dir = ? WHERE id = ?", (knowledge_dir, gen.id)
            )

    def touch_document(self, gen: Generation, path: str, size: int, mtime: float) -> None:
        """Record a new mtime for a file whose content did not change."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE documents SET size = ?, mtime = ? WHERE generation = ? AND path = ?",
                (size, mtime, gen.id, path),
            )

    def replace_document(
        self,
        gen: Generation,
        *,
        path: str,
        sha256: str,
        size: int,
        mtime: float,
        title: str | None,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
    ) -> None:
        """Swap a file's old chunks, vectors and keyword rows for new ones in one transaction."""
        check_vectors(gen, chunks, vectors)
        with transaction(self.conn):
            self._delete_document(gen, path)
            doc_id = self.conn.execute(
                "INSERT INTO documents (generation, path, sha256, size, mtime, title, indexed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gen.id, path, sha256, size, mtime, title, time.time()),
            ).lastrowid
            for ordinal, (chunk, vector) in enumerate(zip(chunks, vectors)):
                chunk_id = self.conn.execute(
                    "INSERT INTO chunks (document_id, generation, ordinal, heading, text, "
                    "start_line, end_line) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (doc_id, gen.id, ordinal, chunk.heading, chunk.text,
                     chunk.start_line, chunk.end_line),
                ).lastrowid
                self.conn.execute(
                    f"INSERT INTO {vec_table(gen.id)} (chunk_id, embedding) VALUES (?, ?)",
                    (chunk_id, np.asarray(vector, dtype=np.float32).tobytes()),
                )
                self.conn.execute(
                    f"INSERT INTO {fts.table_name(gen.id)} (rowid, title, heading, body) VALUES (?, ?, ?, ?)",
                    (chunk_id, title, chunk.heading, chunk.text),
                )

    def remove_document(self, gen: Generation, path: str) -> None:
        with transaction(self.conn):
            self._delete_document(gen, path)

    def _delete_document(self, gen: Generation, path: str) -> None:
        self.conn.execute(
            "UPDATE generations SET vectors_version = vectors_version + 1 WHERE id = ?", (gen.id,)
        )
        # vec0 and FTS5 tables have no foreign keys (and vec0 fails INSERT OR
        # REPLACE): delete their rows first.
        for table, key in ((vec_table(gen.id), "chunk_id"), (fts.table_name(gen.id), "rowid")):
            self.conn.execute(
                f"DELETE FROM {table} WHERE {key} IN ("
                "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
                "WHERE d.generation = ? AND d.path = ?)",
                (gen.id, path),
            )
        self.conn.execute(
            "DELETE FROM documents WHERE generation = ? AND path = ?", (gen.id, path)
        )

    # --- reading -----------------------------------------------------------

    def vectors_version(self, gen: Generation) -> int:
        """A number that changes whenever the generation's vectors do (`bot.vector_index`)."""
        row = self.conn.execute(
            "SELECT vectors_version FROM generations WHERE id = ?", (gen.id,)
        ).fetchone()
        return int(row[0]) if row else -1

    def chunk_ids(self, gen: Generation) -> np.ndarray:
        """Every chunk id of the generation, ascending (ids are never reused)."""
        rows = self.conn.execute(
            "SELECT id FROM chunks WHERE generation = ? ORDER BY id", (gen.id,)
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_ids_under(self, gen: Generation, folders: Sequence[str]) -> np.ndarray:
        """The chunk ids, ascending, of the files under any of `folders` (paths relative to the knowledge folder)."""
        prefixes = [f.strip("/") + "/" for f in folders if f.strip("/")]
        if not prefixes:
            return np.zeros(0, np.int64)
        # substr, not LIKE: exact and case-sensitive, as paths are, with nothing to escape
        where = " OR ".join("substr(d.path, 1, ?) = ?" for _ in prefixes)
        rows = self.conn.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id "
            f"WHERE d.generation = ? AND ({where}) ORDER BY c.id",
            (gen.id, *[arg for p in prefixes for arg in (len(p), p)]),
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def file_chunk_ids(self, gen: Generation, paths: Collection[str]) -> dict[str, np.ndarray]:
        """The chunk ids, ascending, of each of `paths` that is a file of the generation."""
        found: dict[str, list[int]] = {}
        for part, marks in _in_parts(list(paths)):
            for path, chunk_id in self.conn.execute(
                "SELECT d.path, c.id FROM documents d JOIN chunks c ON c.document_id = d.id "
                f"WHERE d.generation = ? AND d.path IN ({marks}) ORDER BY c.id",
                (gen.id, *part),
            ):
                found.setdefault(path, []).append(chunk_id)
        return {path: np.array(ids, np.int64) for path, ids in found.items()}

    def vector_pages(
        self, gen: Generation, ids: np.ndarray | None = None, page: int = 5_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, float32 vectors) of the chunks in `ids`, or of all of them, `page` rows at a time."""
        if ids is None:
            cursor = self.conn.execute(f"SELECT chunk_id, embedding FROM {vec_table(gen.id)}")
            while rows := cursor.fetchmany(page):
                yield _id_vector_arrays(rows, gen.dim)
            return
        wanted = [int(i) for i in ids]
        for part, marks in _in_parts(wanted):
            rows = self.conn.execute(
                f"SELECT chunk_id, embedding FROM {vec_table(gen.id)} WHERE chunk_id IN ({marks})", part
            ).fetchall()
            yield _id_vector_arrays(rows, gen.dim)

    def exact_nearest(self, gen: Generation, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunks closest to `vector` by sqlite-vec's exact scan, as (chunk_id, cosine similarity)."""
        rows = self.conn.execute(
            f"SELECT chunk_id, distance FROM {vec_table(gen.id)} "
            "WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (np.asarray(vector, dtype=np.float32).tobytes(), k),
        ).fetchall()
        return [(int(chunk_id), 1.0 - float(distance)) for chunk_id, distance in rows]

    index_nearest = exact_nearest  # sqlite-vec's vec0 index is an exact scan

    def word_scores(self, gen: Generation, word: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, BM25 scores) of the chunks holding `word` as the keyword table stems it, ids ascending.

        Scores are FTS5's bm25() negated, so higher is better; a query's BM25 is
        the sum of its words' (`bot.keyword_index`).
        """
        table = fts.table_name(gen.id)
        rows = self.conn.execute(
            f"SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ? ORDER BY rowid",
            (fts.phrase(word),),
        ).fetchall()
        # fromiter: 3 ms for 33,000 rows where np.array(rows) takes 13-20
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        return ids, np.fromiter((row[1] for row in rows), dtype=np.float64, count=len(rows))

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {
            row["id"]: ChunkRow(
                row["id"], row["path"], row["title"], row["heading"], row["text"],
                row["start_line"], row["end_line"],
            )
            for row in self.conn.execute(
                "SELECT c.id, d.path, d.title, c.heading, c.text, c.start_line, c.end_line "
                f"FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN ({marks})",
                ids,
            )
        }

    def stats(self) -> dict[str, object]:
        gen = self.active_generation()
        count = self.conn.execute
        docs = chunks = 0
        if gen:
            docs = count("SELECT count(*) FROM documents WHERE generation = ?", (gen.id,)).fetchone()[0]
            chunks = count("SELECT count(*) FROM chunks WHERE generation = ?", (gen.id,)).fetchone()[0]
        return {
            "db": self.location,
            "db_bytes": database_bytes(self.path),
            "model": gen.model if gen else None,
            "dim": gen.dim if gen else None,
            "knowledge_dir": gen.knowledge_dir if gen else None,
            "documents": docs,
            "chunks": chunks,
            "cache_entries": count("SELECT count(*) FROM embedding_cache").fetchone()[0],
            "schema_version": SCHEMA_VERSION,
            "sqlite": sqlite_description(),
        }


def _id_vector_arrays(rows: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
