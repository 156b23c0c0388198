"""The PostgreSQL store: documents, chunks, pgvector vectors, BM25 postings, the embedding cache, bot state.

The same surface as the SQLite `Store`, so indexing, search and the duplicate
scan run unchanged: vectors live in one `vector(d)` table per generation with an
HNSW cosine index, keywords in a postings table scored with FTS5's BM25
(`bot.store.postgres.keywords`). Several replicas can share one database:
re-indexes take a database lock and the duplicate scan runs on the replica
holding its lease (`bot.store.postgres.locks`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bot.chunking import Chunk
from bot.redact import redact
from bot.store.postgres import keywords
from bot.store.postgres.connection import DEFAULT_EF_SEARCH, pool, snapshot, transaction
from bot.store.postgres.locks import index_lock, lead
from bot.store.postgres.messages import PostgresMessageStore
from bot.store.postgres.migrations import SCHEMA_VERSION, migrate
from bot.store.postgres.questions import PostgresQuestionStore
from bot.store.records import ChunkRow, DocumentRecord, Generation, cache_key, check_vectors

_GENERATION_COLUMNS = "id, model, dim, status, knowledge_dir"


# The most memory one HNSW build takes on the database server (4 GB: ~2M 384-d vectors in one pass).
HNSW_BUILD_MEMORY_CAP_MB = 4096


def vec_table(generation_id: int) -> str:
    """The table of a generation's vectors (chunk id -> vector(dim)), HNSW-indexed once active."""
    return f"vec_chunks_{generation_id}"


def hnsw_build_memory_mb(rows: int, dim: int) -> int:
    """maintenance_work_mem for building an HNSW index over `rows` vectors in one pass.

    A graph that outgrows it makes pgvector fall back to inserting on disk, many
    times slower (1M 384-d vectors did not finish in 26 minutes with 256 MB). The
    index measured 195 MB at 100k 384-d vectors, ~2 kB each: room for that plus a
    quarter, between 64 MB and HNSW_BUILD_MEMORY_CAP_MB.
    """
    needed = rows * (dim * 4 + 512) * 5 // 4 // 2**20
    return max(64, min(HNSW_BUILD_MEMORY_CAP_MB, needed))


class PostgresStore:
    """One PostgreSQL database (`bot.store.Store`); each thread that uses it holds a pooled connection until `close()`."""

    def __init__(self, url: str, *, ef_search: int = DEFAULT_EF_SEARCH, vector_copy: bool = True) -> None:
        """Connect to `url` (postgresql://…) and migrate it to the newest schema.

        `ef_search` is pgvector's hnsw.ef_search for `index_nearest`.
        """
        self.url = url
        self.vector_copy = vector_copy
        self.location = redact(url)  # what people see: never the password
        self.memo: dict[str, object] = {}
        self._pool = pool(url, ef_search)
        self._local = threading.local()
        self._connections: list[psycopg.Connection] = []
        self._connections_lock = threading.Lock()
        with self._pool.connection() as conn:
            migrate(conn)  # first: the connections below need the extension it creates
        self.messages = PostgresMessageStore(lambda: self.conn)
        self.questions = PostgresQuestionStore(lambda: self.conn)

    @property
    def conn(self) -> psycopg.Connection:
        """This thread's connection, taken from the pool on its first use."""
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._pool.getconn()
            register_vector(conn)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def replaced(self) -> bool:
        return False  # a server has no file to swap underneath

    def check_file(self) -> None:
        """Nothing to check: unlike a file, a database cannot be replaced under an open connection."""

    def snapshot(self) -> AbstractContextManager[psycopg.Connection]:
        return snapshot(self.conn)

    def atomic(self) -> AbstractContextManager[psycopg.Connection]:
        return transaction(self.conn)

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Give every thread's connection back to the pool."""
        with self._connections_lock:
            for conn in self._connections:
                self._pool.putconn(conn)
            self._connections.clear()
        self._local = threading.local()

    # --- locks across replicas ---------------------------------------------

    def index_lock(self) -> AbstractContextManager[None]:
        """Hold the database's re-index lock, or raise `LockHeldError` at once (`index_lock`)."""
        return index_lock(self.url)

    def lead(self, job: str, seconds: float) -> bool:
        """Take or renew the lease on `job` for `seconds` (`lead`)."""
        return lead(self.url, job, seconds)

    # --- embedding cache -------------------------------------------------

    def cached_vectors(self, model: str, texts: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """Vectors already stored for `texts` under `model` (of dimension `dim` when given), by text."""
        by_key = {cache_key(model, t): t for t in texts}
        rows = self.conn.execute(
            "SELECT key, vector FROM embedding_cache WHERE key = ANY(%s) AND model = %s AND (%s::int IS NULL OR dim = %s)",
            (list(by_key), model, dim, dim),
        )
        return {by_key[bytes(key)]: np.frombuffer(blob, dtype=np.float32) for key, blob in rows}

    def cache_vectors(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        now = time.time()
        rows = [
            (cache_key(model, t), model, int(v.shape[0]), v.astype(np.float32).tobytes(), now)
            for t, v in zip(texts, vectors)
        ]
        with transaction(self.conn), self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO embedding_cache (key, model, dim, vector, created_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector, "
                "created_at = excluded.created_at WHERE embedding_cache.dim != excluded.dim",
                rows,
            )

    # --- generations -----------------------------------------------------

    def _generation(self, where: str, *args: object) -> Generation | None:
        row = self.conn.execute(
            f"SELECT {_GENERATION_COLUMNS} FROM generations WHERE {where} ORDER BY id DESC LIMIT 1", args
        ).fetchone()
        return Generation(*row) if row else None

    def active_generation(self) -> Generation | None:
        return self._generation("status = 'active'")

    def building_generation(self, model: str, dim: int) -> Generation | None:
        return self._generation("status = 'building' AND model = %s AND dim = %s", model, dim)

    def create_generation(self, model: str, dim: int, knowledge_dir: str) -> Generation:
        """A new, empty generation in 'building' state with its own vector table (its HNSW index comes at `activate`)."""
        with transaction(self.conn):
            row = self.conn.execute(
                "INSERT INTO generations (model, dim, status, knowledge_dir, created_at) "
                "VALUES (%s, %s, 'building', %s, %s) RETURNING id",
                (model, dim, knowledge_dir, time.time()),
            ).fetchone()
            gen = Generation(row[0], model, dim, "building", knowledge_dir)
            self.conn.execute(
                f"CREATE TABLE {vec_table(gen.id)} (chunk_id bigint PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE, "
                f"embedding vector({int(dim)}) NOT NULL)"
            )
        return gen

    def activate(self, gen: Generation) -> None:
        """Make `gen` the one answering questions, then drop every other generation.

        Its HNSW index is built first, in one pass over the finished table: several
        times faster than growing the graph insert by insert, which later edits
        to the active generation then do. A search on the old generation reads one
        REPEATABLE READ snapshot; DROP TABLE waits for it to end.
        """
        with transaction(self.conn):
            rows = self.conn.execute(f"SELECT count(*) FROM {vec_table(gen.id)}").fetchone()[0]
            self.conn.execute(f"SET LOCAL maintenance_work_mem = '{hnsw_build_memory_mb(rows, gen.dim)}MB'")
            self.conn.execute("SET LOCAL max_parallel_maintenance_workers = 1")  # a second core builds too
            self.conn.execute(
                f"CREATE INDEX IF NOT EXISTS {vec_table(gen.id)}_hnsw ON {vec_table(gen.id)} "
                "USING hnsw (embedding vector_cosine_ops)"
            )
        with transaction(self.conn):
            self.conn.execute("UPDATE generations SET status = 'retired' WHERE status = 'active' AND id != %s", (gen.id,))
            self.conn.execute(
                "UPDATE generations SET status = 'active', activated_at = %s WHERE id = %s", (time.time(), gen.id)
            )
        self.drop_generations(except_id=gen.id)

    def drop_generations(self, except_id: int) -> None:
        """Delete every generation but one (retired or abandoned builds)."""
        others = [
            Generation(*row)
            for row in self.conn.execute(f"SELECT {_GENERATION_COLUMNS} FROM generations WHERE id != %s", (except_id,))
        ]
        for gen in others:
            with transaction(self.conn):
                self.conn.execute(f"DROP TABLE IF EXISTS {vec_table(gen.id)}")
                self.conn.execute("DELETE FROM postings WHERE generation = %s", (gen.id,))
                self.conn.execute("DELETE FROM chunks WHERE generation = %s", (gen.id,))
                self.conn.execute("DELETE FROM documents WHERE generation = %s", (gen.id,))
                self.conn.execute("DELETE FROM generations WHERE id = %s", (gen.id,))

    # --- documents and chunks --------------------------------------------

    def documents(self, gen: Generation) -> dict[str, DocumentRecord]:
        rows = self.conn.execute(
            "SELECT id, path, sha256, size, mtime FROM documents WHERE generation = %s", (gen.id,)
        )
        return {row[1]: DocumentRecord(*row) for row in rows}

    def set_knowledge_dir(self, gen: Generation, knowledge_dir: str) -> None:
        self.conn.execute("UPDATE generations SET knowledge_dir = %s WHERE id = %s", (knowledge_dir, gen.id))

    def touch_document(self, gen: Generation, path: str, size: int, mtime: float) -> None:
        """Record a new mtime for a file whose content did not change."""
        self.conn.execute(
            "UPDATE documents SET size = %s, mtime = %s WHERE generation = %s AND path = %s",
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
        """Swap a file's old chunks, vectors and postings for new ones in one transaction."""
        check_vectors(gen, chunks, vectors)
        tokenized = keywords.tokenize([(title, chunk.heading, chunk.text) for chunk in chunks])
        with transaction(self.conn):
            self._delete_document(gen, path)
            doc_id = self.conn.execute(
                "INSERT INTO documents (generation, path, sha256, size, mtime, title, indexed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (gen.id, path, sha256, size, mtime, title, time.time()),
            ).fetchone()[0]
            rows = self.conn.execute(
                "INSERT INTO chunks (document_id, generation, ordinal, heading, text, start_line, end_line, tokens) "
                "SELECT %s, %s, * FROM unnest(%s::int[], %s::text[], %s::text[], %s::int[], %s::int[], %s::int[]) "
                "RETURNING ordinal, id",
                (doc_id, gen.id, list(range(len(chunks))), [c.heading for c in chunks], [c.text for c in chunks],
                 [c.start_line for c in chunks], [c.end_line for c in chunks], [t.length for t in tokenized]),
            ).fetchall()
            chunk_ids = [chunk_id for _, chunk_id in sorted(rows)]
            self._write_vectors_and_postings(gen, chunk_ids, vectors, tokenized)

    def _write_vectors_and_postings(
        self, gen: Generation, chunk_ids: list[int], vectors: np.ndarray, tokenized: list[keywords.Tokenized]
    ) -> None:
        with self.conn.cursor() as cursor:
            with cursor.copy(f"COPY {vec_table(gen.id)} (chunk_id, embedding) FROM STDIN") as copy:
                for chunk_id, vector in zip(chunk_ids, vectors):
                    copy.write_row((chunk_id, np.asarray(vector, dtype=np.float32)))
            with cursor.copy("COPY postings (generation, term, chunk_id, positions) FROM STDIN") as copy:
                for chunk_id, words in zip(chunk_ids, tokenized):
                    for term, positions in words.positions.items():
                        copy.write_row((gen.id, term, chunk_id, positions))
        self.conn.execute(
            "UPDATE generations SET chunk_count = chunk_count + %s, token_count = token_count + %s WHERE id = %s",
            (len(chunk_ids), sum(words.length for words in tokenized), gen.id),
        )

    def remove_document(self, gen: Generation, path: str) -> None:
        with transaction(self.conn):
            self._delete_document(gen, path)

    def _delete_document(self, gen: Generation, path: str) -> None:
        # The generation's row lock, taken first, also orders concurrent writers of one generation.
        self.conn.execute("UPDATE generations SET vectors_version = vectors_version + 1 WHERE id = %s", (gen.id,))
        removed = self.conn.execute(
            "DELETE FROM chunks c USING documents d WHERE d.id = c.document_id AND d.generation = %s AND d.path = %s "
            "RETURNING c.tokens",
            (gen.id, path),
        ).fetchall()
        self.conn.execute(
            "UPDATE generations SET chunk_count = chunk_count - %s, token_count = token_count - %s WHERE id = %s",
            (len(removed), sum(tokens for (tokens,) in removed), gen.id),
        )
        self.conn.execute("DELETE FROM documents WHERE generation = %s AND path = %s", (gen.id, path))

    # --- reading -----------------------------------------------------------

    def vectors_version(self, gen: Generation) -> int:
        """A number that changes whenever the generation's vectors do (`bot.vector_index`)."""
        row = self.conn.execute("SELECT vectors_version FROM generations WHERE id = %s", (gen.id,)).fetchone()
        return int(row[0]) if row else -1

    def chunk_ids(self, gen: Generation) -> np.ndarray:
        """Every chunk id of the generation, ascending (ids are never reused)."""
        rows = self.conn.execute("SELECT id FROM chunks WHERE generation = %s ORDER BY id", (gen.id,)).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def chunk_ids_under(self, gen: Generation, folders: Sequence[str]) -> np.ndarray:
        """The chunk ids, ascending, of the files under any of `folders` (whole path segments, case-sensitive)."""
        prefixes = [f.strip("/") + "/" for f in folders if f.strip("/")]
        rows = self.conn.execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.generation = %s "
            "AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS p(prefix) WHERE starts_with(d.path, p.prefix)) "
            "ORDER BY c.id",
            (gen.id, prefixes),
        ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def file_chunk_ids(self, gen: Generation, paths: Collection[str]) -> dict[str, np.ndarray]:
        """The chunk ids, ascending, of each of `paths` that is a file of the generation."""
        found: dict[str, list[int]] = {}
        for path, chunk_id in self.conn.execute(
            "SELECT d.path, c.id FROM documents d JOIN chunks c ON c.document_id = d.id "
            "WHERE d.generation = %s AND d.path = ANY(%s) ORDER BY c.id",
            (gen.id, list(paths)),
        ):
            found.setdefault(path, []).append(chunk_id)
        return {path: np.array(ids, np.int64) for path, ids in found.items()}

    def vector_pages(
        self, gen: Generation, ids: np.ndarray | None = None, page: int = 5_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, float32 vectors) of the chunks in `ids`, or of all of them, `page` rows at a time."""
        where, args = ("", ()) if ids is None else (" WHERE chunk_id = ANY(%s)", ([int(i) for i in ids],))
        with self.conn.cursor(binary=True) as cursor:  # binary vectors: 10x faster to read than their text
            cursor.execute(f"SELECT chunk_id, embedding FROM {vec_table(gen.id)}{where}", args)
            while rows := cursor.fetchmany(page):
                ids_page = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                yield ids_page, np.array([r[1].to_numpy() for r in rows], dtype=np.float32).reshape(len(rows), gen.dim)

    def exact_nearest(self, gen: Generation, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunks closest to `vector` by a full scan, as (chunk_id, cosine similarity).

        `+ 0` keeps the planner off the HNSW index, whose answer is approximate.
        """
        return self._nearest(gen, vector, k, "(embedding <=> %s) + 0")

    def index_nearest(self, gen: Generation, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunks closest to `vector` through the HNSW index (hnsw.ef_search candidates)."""
        return self._nearest(gen, vector, k, "embedding <=> %s")

    def _nearest(self, gen: Generation, vector: np.ndarray, k: int, order: str) -> list[tuple[int, float]]:
        rows = self.conn.execute(
            f"SELECT chunk_id, embedding <=> %s FROM {vec_table(gen.id)} ORDER BY {order} LIMIT %s",
            (np.asarray(vector, dtype=np.float32), np.asarray(vector, dtype=np.float32), k),
        ).fetchall()
        return [(int(chunk_id), 1.0 - float(distance)) for chunk_id, distance in rows]

    def word_scores(self, gen: Generation, word: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, BM25 scores) of the chunks holding `word` as FTS5 would stem it, ids ascending.

        The same numbers as the SQLite store's FTS5 `bm25()` for the same chunks.
        """
        terms = keywords.word_terms(word)
        if not terms:
            return np.zeros(0, np.int64), np.zeros(0)
        postings = [
            dict(self.conn.execute(
                "SELECT chunk_id, positions FROM postings WHERE generation = %s AND term = %s", (gen.id, term)
            ).fetchall())
            for term in terms
        ]
        counts = keywords.phrase_counts(postings) if len(terms) > 1 else {c: len(p) for c, p in postings[0].items()}
        ids = np.array(sorted(counts), dtype=np.int64)
        lengths = dict(self.conn.execute("SELECT id, tokens FROM chunks WHERE id = ANY(%s)", (ids.tolist(),)).fetchall())
        total_chunks, total_tokens = self.conn.execute(
            "SELECT chunk_count, token_count FROM generations WHERE id = %s", (gen.id,)
        ).fetchone()
        scores = keywords.bm25(
            ids, np.array([counts[i] for i in ids.tolist()]), np.array([lengths[i] for i in ids.tolist()], np.float64),
            total_chunks, total_tokens,
        )
        return ids, scores

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        rows = self.conn.execute(
            "SELECT c.id, d.path, d.title, c.heading, c.text, c.start_line, c.end_line "
            "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ANY(%s)",
            ([int(i) for i in ids],),
        )
        return {row[0]: ChunkRow(*row) for row in rows}

    def stats(self) -> dict[str, object]:
        gen = self.active_generation()
        one = self.conn.execute
        docs = chunks = 0
        if gen:
            docs = one("SELECT count(*) FROM documents WHERE generation = %s", (gen.id,)).fetchone()[0]
            chunks = one("SELECT count(*) FROM chunks WHERE generation = %s", (gen.id,)).fetchone()[0]
        return {
            "db": self.location,
            "db_bytes": one("SELECT pg_database_size(current_database())").fetchone()[0],
            "model": gen.model if gen else None,
            "dim": gen.dim if gen else None,
            "knowledge_dir": gen.knowledge_dir if gen else None,
            "documents": docs,
            "chunks": chunks,
            "cache_entries": one("SELECT count(*) FROM embedding_cache").fetchone()[0],
            "schema_version": SCHEMA_VERSION,
            "store": "postgresql",
            "server": server_description(self.conn),
        }


def server_description(conn: psycopg.Connection) -> str:
    """e.g. `PostgreSQL 18.4, pgvector 0.8.5`."""
    version = conn.execute("SHOW server_version").fetchone()[0]
    vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return f"PostgreSQL {version.split()[0]}, pgvector {vector[0] if vector else 'missing'}"
