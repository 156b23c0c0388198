"""Fast nearest-neighbour search: a compact in-memory copy of a generation's vectors.

sqlite-vec's `vec0` answers a KNN query by brute force over float32 blobs
(~40–100 ms at 100,000 chunks, a second at a million), and reading given rows
back (`chunk_id IN (…)`) scans the whole table too. SQLite stays the source of
truth; beside it each process keeps, per generation, a compact copy:

- sign bits (48 bytes for 384 dimensions) for a coarse Hamming scan of every
  vector, which keeps the `candidates` nearest by angle;
- the vectors in half precision, to give those candidates their cosine
  (within 0.0005 of the float32 one; 0.00007 at most on real vectors).

That is 816 bytes per 384-d vector (79 MB at 100k chunks, 0.8 GB at 1M), half
the float32 matrix of a plain numpy brute force, for a scan 5-10x faster at
100k. Recall@10 against exact search, the speed of each step and the choice of
the shortlist size are measured by `benchmarks/search.py`.

The copy belongs to the store (`Store.memo`) and follows it: every write to a
generation's vectors changes `Store.vectors_version`, one cheap lookup per
search notices it, and the copy catches up by comparing chunk-id sets (ids are never reused), loading only
the vectors it lacks.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np

from bot.store import Generation, Store, memoized

# Vectors the Hamming scan keeps for scoring: MIN_SHORTLIST, or one in
# SHORTLIST_SHARE of the collection when that is more. Recall@10 on 100,000 real
# MiniLM vectors: 0.980 from 200, 0.995 from 500, 0.999 from 1,000; synthetic
# clustered vectors at 1M: 0.970 from 1,000, 0.988 from 2,000 (+1.2 ms), 0.993
# from 4,000 (benchmarks/search.py).
MIN_SHORTLIST = 1000
SHORTLIST_SHARE = 500


def shortlist_size(count: int) -> int:
    """How many Hamming-nearest vectors a search of `count` vectors scores."""
    return max(MIN_SHORTLIST, count // SHORTLIST_SHARE)


# How the copy keeps each vector for scoring. Half precision puts a cosine within
# 2^-11 ≈ 0.0005 of float32's for unit vectors (at most 0.00007 measured on
# 100,000 real MiniLM vectors × 200 questions) for half the memory:
# 79 MB at 100k chunks instead of 158, the difference between a serving process
# under and over 400 MB (benchmarks/serving.py). Only the candidates are widened
# to float32 for scoring, so it costs no measurable time.
STORED = np.float16


@dataclass(frozen=True)
class CompactVectors:
    """Sign bits and copies of unit vectors, by ascending chunk id. Immutable: edits return a copy."""

    ids: np.ndarray  # (n,) int64, ascending
    bits: np.ndarray  # (dim // 64, n) uint64: one contiguous row per 64-dimension word
    vectors: np.ndarray  # (n, dim) STORED

    @classmethod
    def empty(cls, dim: int) -> CompactVectors:
        return cls.build(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> CompactVectors:
        return cls._sorted(np.asarray(ids, np.int64), np.asarray(vectors, STORED))

    @classmethod
    def from_pages(cls, dim: int, pages: Iterable[tuple[np.ndarray, np.ndarray]], expected: int = 0) -> CompactVectors:
        """Filled page by page into arrays sized for `expected` rows, grown if more come.

        One matrix in memory, never a list of pages plus their concatenation.
        """
        ids = np.empty(expected, np.int64)
        vectors = np.empty((expected, dim), STORED)
        filled = 0
        for page_ids, page_vectors in pages:
            end = filled + len(page_ids)
            if end > len(ids):  # more than counted: a writer added some meanwhile
                ids, vectors = _with_room(ids, filled, 2 * end), _with_room(vectors, filled, 2 * end)
            ids[filled:end] = page_ids
            vectors[filled:end] = page_vectors
            filled = end
        return cls._sorted(ids[:filled], vectors[:filled])

    @classmethod
    def joined(cls, kept: CompactVectors, keep: np.ndarray, added: CompactVectors) -> CompactVectors:
        """The rows of `kept` where `keep` is true, and all of `added`, with no intermediate copy."""
        count = int(keep.sum())
        ids = np.concatenate([kept.ids[keep], added.ids])
        vectors = np.empty((count + len(added), kept.vectors.shape[1]), STORED)
        np.compress(keep, kept.vectors, axis=0, out=vectors[:count])
        vectors[count:] = added.vectors
        return cls._sorted(ids, vectors)

    @classmethod
    def _sorted(cls, ids: np.ndarray, vectors: np.ndarray) -> CompactVectors:
        if vectors.shape[1] % 64:
            raise ValueError(f"dimension {vectors.shape[1]} is not a multiple of 64")
        if np.any(ids[1:] < ids[:-1]):  # pages come in store order, which is id order but for edits
            order = np.argsort(ids, kind="stable")
            ids, vectors = ids[order], vectors[order]
        bits = np.empty((len(ids), vectors.shape[1] // 64), np.uint64)
        for start in range(0, len(ids), 20_000):  # the sign matrix 20,000 rows at a time: 7 MB, not 38
            bits[start : start + 20_000] = np.packbits(vectors[start : start + 20_000] > 0, axis=1).view(np.uint64)
        return cls(ids, np.ascontiguousarray(bits.T), np.ascontiguousarray(vectors))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.bits.nbytes + self.vectors.nbytes

    def search(self, query: np.ndarray, k: int, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, cosines) of the `k` best, best first, from `candidates` (default: `shortlist_size`)."""
        query = np.asarray(query, dtype=np.float32)
        candidates = candidates or shortlist_size(len(self.ids))
        if len(self.ids) > candidates:
            rows = self._nearest_by_hamming(query, candidates)
        else:
            rows = np.arange(len(self.ids))
        cosines = self.vectors[rows].astype(np.float32) @ query
        best = np.argsort(-cosines, kind="stable")[:k]
        return self.ids[rows[best]], cosines[best]

    def cosines(self, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        """Cosine of `query` with each of `ids` that is here."""
        rows, hit = rows_of(self.ids, np.fromiter(ids, dtype=np.int64))
        found = rows[hit]
        scores = self.vectors[found].astype(np.float32) @ np.asarray(query, dtype=np.float32)
        return dict(zip(self.ids[found].tolist(), scores.tolist()))

    def _nearest_by_hamming(self, query: np.ndarray, count: int) -> np.ndarray:
        query_bits = np.packbits(query > 0).view(np.uint64)
        distance = np.bitwise_count(self.bits[0] ^ query_bits[0])
        for word in range(1, len(query_bits)):
            distance += np.bitwise_count(self.bits[word] ^ query_bits[word])
        return np.argpartition(distance, count)[:count]


def rows_of(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `wanted` sits in ascending `sorted_ids`, and whether it is there at all."""
    if not len(sorted_ids):
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    rows = np.clip(np.searchsorted(sorted_ids, wanted), 0, len(sorted_ids) - 1)
    return rows, sorted_ids[rows] == wanted


class _Copy:
    """One generation's in-memory vectors and the store version they reflect."""

    def __init__(self, dim: int) -> None:
        self.vectors = CompactVectors.empty(dim)
        self.version: int | None = None
        self.lock = threading.Lock()


class _Copies:
    """A store's copies by generation id, kept in its `memo`: they live and die with the store."""

    def __init__(self) -> None:
        self.by_generation: dict[int, _Copy] = {}
        self.lock = threading.Lock()

    def of(self, gen: Generation) -> _Copy | None:
        """The copy for `gen`, made empty if new; None if a newer generation's copy is loaded already."""
        with self.lock:
            copy = self.by_generation.get(gen.id)
            if copy is None:
                if any(other > gen.id for other in self.by_generation):
                    return None
                self.by_generation.clear()
                copy = self.by_generation[gen.id] = _Copy(gen.dim)
            return copy


def in_memory(store: Store, gen: Generation) -> CompactVectors | None:
    """The store's in-memory copy of `gen`'s vectors, brought up to date with the store.

    Held by the store (one per store, shared by the threads using it).
    Loading a newer generation's copy drops the older one; a reader still on
    the older generation during a swap gets `None` and reads the store
    directly rather than reload it. `None` too for a store opened without
    a copy (KB_VECTOR_COPY=false).
    """
    if not store.vector_copy:
        return None
    copy = memoized(store, __name__, _Copies).of(gen)
    if copy is None:
        return None
    version = store.vectors_version(gen)
    if copy.version == version:
        return copy.vectors
    with copy.lock:  # one thread catches up; the others wait for it rather than repeat it
        if copy.version != version:
            copy.vectors = _caught_up(store, gen, copy.vectors)
            copy.version = version
        return copy.vectors


def _caught_up(store: Store, gen: Generation, vectors: CompactVectors) -> CompactVectors:
    ids = store.chunk_ids(gen)
    if not len(vectors):
        return CompactVectors.from_pages(gen.dim, store.vector_pages(gen), expected=len(ids))
    added = np.setdiff1d(ids, vectors.ids, assume_unique=True)
    new = CompactVectors.from_pages(gen.dim, store.vector_pages(gen, added), expected=len(added))
    return CompactVectors.joined(vectors, np.isin(vectors.ids, ids, assume_unique=True), new)


def _with_room(array: np.ndarray, filled: int, rows: int) -> np.ndarray:
    """A copy of `array`'s first `filled` rows with room for `rows`."""
    grown = np.empty((rows, *array.shape[1:]), array.dtype)
    grown[:filled] = array[:filled]
    return grown


def nearest(store: Store, gen: Generation, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` chunks closest to `query` as (chunk_id, cosine), best first: by the copy, else the store's index."""
    copy = in_memory(store, gen)
    if copy is None:
        return store.index_nearest(gen, query, k)
    ids, cosines = copy.search(query, k)
    return list(zip(ids.tolist(), cosines.tolist()))


def nearest_among(store: Store, gen: Generation, query: np.ndarray, ids: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` chunks of `ids` closest to `query`, best first: an exact scan of those only (a scope's files)."""
    scores = similarities(store, gen, query, ids)
    found = np.fromiter(scores.keys(), np.int64, len(scores))
    cosines = np.fromiter(scores.values(), np.float64, len(scores))
    best = np.lexsort((found, -cosines))[:k]
    return list(zip(found[best].tolist(), cosines[best].tolist()))


def similarities(store: Store, gen: Generation, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
    """Cosine of `query` with each chunk of `ids` (e.g. hits found by keyword)."""
    wanted = np.fromiter(ids, np.int64)
    return _vectors_for(store, gen, wanted).cosines(query, wanted)


def _vectors_for(store: Store, gen: Generation, wanted: np.ndarray) -> CompactVectors:
    """The in-memory copy, or, without one, only `wanted`'s vectors read from the store."""
    copy = in_memory(store, gen)
    return copy if copy is not None else CompactVectors.from_pages(gen.dim, store.vector_pages(gen, wanted))


class _Documents:
    """Files' document vectors (unit, STORED) for one generation at one store version, filled as asked."""

    def __init__(self, gen_id: int = -1, version: int = -1) -> None:
        self.key = (gen_id, version)
        self.vectors: dict[str, np.ndarray] = {}


def document_cosines(store: Store, gen: Generation, query: np.ndarray, paths: Collection[str]) -> dict[str, float]:
    """Cosine of `query` with the document vector of each of `paths` that is a file of `gen`: the
    normalised mean of the file's chunks' vectors.

    A passage is one part of a page; the document vector is the page's overall topic,
    which tells a page about the question from its sibling with one passage that matches as well.
    Each file's vector is computed once per store version and kept (768 bytes a file), so a
    question pays only for files no question brought up since the last write.
    """
    key = (gen.id, store.vectors_version(gen))
    known = memoized(store, f"{__name__}.documents", _Documents)
    if known.key != key:
        known = store.memo[f"{__name__}.documents"] = _Documents(*key)
    missing = [p for p in paths if p not in known.vectors]
    if missing:
        known.vectors.update(_document_vectors(store, gen, store.file_chunk_ids(gen, missing)))
    query = np.asarray(query, np.float32)
    return {p: float(known.vectors[p].astype(np.float32) @ query) for p in paths if p in known.vectors}


def _document_vectors(store: Store, gen: Generation, files: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    copy = _vectors_for(store, gen, np.concatenate([np.zeros(0, np.int64), *files.values()]))
    out = {}
    for path, ids in files.items():
        rows, hit = rows_of(copy.ids, ids)
        total = copy.vectors[rows[hit]].sum(axis=0, dtype=np.float32)  # half precision summed in single
        out[path] = (total / max(float(np.linalg.norm(total)), 1e-12)).astype(STORED)
    return out
