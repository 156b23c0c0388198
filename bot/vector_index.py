"""Fast nearest-neighbour search: a compact in-memory copy of a generation's vectors.

sqlite-vec's `vec0` answers a KNN query by brute force over float32 blobs
(~40–100 ms at 100,000 chunks, a second at a million), and reading given rows
back (`chunk_id IN (…)`) scans the whole table too. SQLite stays the source of
truth; beside it each process keeps, per generation, a compact copy:

- sign bits (48 bytes for 384 dimensions) for a coarse Hamming scan of every
  vector, which keeps the `candidates` nearest by angle;
- the float32 vectors, to give those candidates their exact cosine.

That is 1,584 bytes per 384-d vector (158 MB at 100k chunks, 1.6 GB at 1M),
3% more than the float32 matrix of a plain numpy brute force, for a scan 5-10x
faster at 100k. Scoring candidates from float16 or int8 copies would halve or
quarter the memory, but costs more time in numpy's conversions than it saves
(measured) and makes the shown score an estimate. Recall@10 against exact
search, the speed of each step and the choice of `CANDIDATES` are measured by
`benchmarks/search.py`.

The copy follows the store: every write to a generation's vectors bumps
`generations.vectors_version`, one cheap lookup per search notices it, and the
copy catches up by comparing chunk-id sets (ids are never reused), loading only
the vectors it lacks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.store import Generation, Store

# Vectors the Hamming scan keeps for exact scoring. Recall@10 on 30,000 real
# MiniLM vectors: 0.984 from 200, 0.997 from 500, 0.999 from 1,000; synthetic
# clustered vectors: 0.986 at 100k, 0.984 at 1M (benchmarks/search.py).
CANDIDATES = 1000


@dataclass(frozen=True)
class CompactVectors:
    """Sign bits and copies of unit vectors, by ascending chunk id. Immutable: edits return a copy."""

    ids: np.ndarray  # (n,) int64, ascending
    bits: np.ndarray  # (dim // 64, n) uint64: one contiguous row per 64-dimension word
    vectors: np.ndarray  # (n, dim) float32

    @classmethod
    def empty(cls, dim: int) -> CompactVectors:
        return cls.build(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> CompactVectors:
        if vectors.shape[1] % 64:
            raise ValueError(f"dimension {vectors.shape[1]} is not a multiple of 64")
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        bits = np.ascontiguousarray(np.packbits(vectors > 0, axis=1).view(np.uint64).T)
        return cls(ids.astype(np.int64), bits, np.ascontiguousarray(vectors, dtype=np.float32))

    @classmethod
    def from_pages(cls, dim: int, pages: Iterable[tuple[np.ndarray, np.ndarray]]) -> CompactVectors:
        """Built page by page, so a million float32 vectors never sit in memory at once."""
        return cls.joined([cls.empty(dim), *(cls.build(ids, vectors) for ids, vectors in pages)])

    @classmethod
    def joined(cls, parts: Sequence[CompactVectors]) -> CompactVectors:
        ids = np.concatenate([p.ids for p in parts])
        order = np.argsort(ids, kind="stable")
        return cls(
            ids[order],
            np.ascontiguousarray(np.concatenate([p.bits for p in parts], axis=1)[:, order]),
            np.concatenate([p.vectors for p in parts])[order],
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.bits.nbytes + self.vectors.nbytes

    def without(self, ids: np.ndarray) -> CompactVectors:
        keep = ~np.isin(self.ids, ids)
        return CompactVectors(self.ids[keep], np.ascontiguousarray(self.bits[:, keep]), self.vectors[keep])

    def search(self, query: np.ndarray, k: int, candidates: int = CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, cosines) of the `k` best, best first."""
        query = np.asarray(query, dtype=np.float32)
        if len(self.ids) > candidates:
            rows = self._nearest_by_hamming(query, candidates)
        else:
            rows = np.arange(len(self.ids))
        cosines = self.vectors[rows] @ query
        best = np.argsort(-cosines, kind="stable")[:k]
        return self.ids[rows[best]], cosines[best]

    def cosines(self, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        """Cosine of `query` with each of `ids` that is here."""
        wanted = np.fromiter(ids, dtype=np.int64)
        rows = np.clip(np.searchsorted(self.ids, wanted), 0, max(len(self.ids) - 1, 0))
        found = rows[self.ids[rows] == wanted] if len(self.ids) else rows[:0]
        scores = self.vectors[found] @ np.asarray(query, dtype=np.float32)
        return dict(zip(self.ids[found].tolist(), scores.tolist()))

    def _nearest_by_hamming(self, query: np.ndarray, count: int) -> np.ndarray:
        query_bits = np.packbits(query > 0).view(np.uint64)
        distance = np.bitwise_count(self.bits[0] ^ query_bits[0])
        for word in range(1, len(query_bits)):
            distance += np.bitwise_count(self.bits[word] ^ query_bits[word])
        return np.argpartition(distance, count)[:count]


class _Copy:
    """One generation's in-memory vectors and the store version they reflect."""

    def __init__(self, dim: int) -> None:
        self.vectors = CompactVectors.empty(dim)
        self.version: int | None = None
        self.lock = threading.Lock()


_copies: dict[tuple[Path, int], _Copy] = {}
_copies_lock = threading.Lock()


def in_memory(store: Store, gen: Generation) -> CompactVectors:
    """This process's copy of `gen`'s vectors, brought up to date with the store.

    Shared by every thread and `Store` of the process; a copy of a generation
    that is no longer active is dropped when the next one is loaded.
    """
    key = (store.path.resolve(), gen.id)
    with _copies_lock:
        copy = _copies.get(key)
        if copy is None:
            for other in [k for k in _copies if k[0] == key[0]]:
                del _copies[other]
            copy = _copies[key] = _Copy(gen.dim)
    version = store.vectors_version(gen)
    if copy.version == version:
        return copy.vectors
    with copy.lock:  # one thread catches up; the others wait for it rather than repeat it
        if copy.version != version:
            copy.vectors = _caught_up(store, gen, copy.vectors)
            copy.version = version
        return copy.vectors


def _caught_up(store: Store, gen: Generation, vectors: CompactVectors) -> CompactVectors:
    if not len(vectors):
        return CompactVectors.from_pages(gen.dim, store.vector_pages(gen))
    ids = store.chunk_ids(gen)
    gone = np.setdiff1d(vectors.ids, ids, assume_unique=True)
    new = CompactVectors.from_pages(gen.dim, store.vector_pages(gen, np.setdiff1d(ids, vectors.ids)))
    return CompactVectors.joined([vectors.without(gone), new])


def nearest(store: Store, gen: Generation, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` chunks closest to `query` as (chunk_id, cosine), best first."""
    ids, cosines = in_memory(store, gen).search(query, k)
    return list(zip(ids.tolist(), cosines.tolist()))


def similarities(store: Store, gen: Generation, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
    """Cosine of `query` with each chunk of `ids` (e.g. hits found by keyword)."""
    return in_memory(store, gen).cosines(query, ids)
