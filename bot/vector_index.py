"""Fast nearest-neighbour search: a compact in-memory copy of a generation's vectors.

sqlite-vec's `vec0` answers a KNN query by brute force over float32 blobs:
~40–100 ms at 100,000 chunks, a second at a million. SQLite stays the source of
truth; beside it each process keeps, per generation, two compact copies of the
unit vectors:

- sign bits (48 bytes for 384 dimensions) for a coarse Hamming scan of every
  vector, which keeps the `candidates` nearest by angle;
- int8 codes (one byte a dimension plus a float scale per vector) to rescore
  those candidates, an estimate of the cosine good to about ±0.005.

The best few by estimate then get their exact cosine from SQLite, so the
scores shown are exact and the ranking of the final hits is exact. Memory is
~0.43 KB per 384-d vector (43 MB at 100k, 430 MB at 1M) against 1.5 KB for
float32. Recall@10 against exact search, and the speed of each step, are
measured by `benchmarks/search.py`.

The copy follows the store: every write to a generation's vectors bumps
`generations.vectors_version`, one cheap lookup per search notices it, and the
copy catches up by comparing chunk-id sets (ids are never reused), loading only
the vectors it lacks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.store import Generation, Store

# Vectors kept by the Hamming scan for int8 rescoring. Recall@10 on real
# MiniLM vectors at 100k: see benchmarks/search.py and the README.
CANDIDATES = 1000
# Hits given their exact cosine from SQLite, as a share of k (at least EXACT_MIN).
EXACT_FACTOR = 3
EXACT_MIN = 20


@dataclass(frozen=True)
class QuantizedVectors:
    """Sign bits and int8 codes of unit vectors, with their chunk ids. Immutable: edits return a copy."""

    ids: np.ndarray  # (n,) int64, ascending
    bits: np.ndarray  # (dim // 64, n) uint64: one contiguous row per 64-dimension word
    codes: np.ndarray  # (n, dim) int8
    scales: np.ndarray  # (n,) float32: code = round(vector * scale)

    @classmethod
    def empty(cls, dim: int) -> QuantizedVectors:
        return cls.build(np.zeros(0, np.int64), np.zeros((0, dim), np.float32))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> QuantizedVectors:
        if vectors.shape[1] % 64:
            raise ValueError(f"dimension {vectors.shape[1]} is not a multiple of 64")
        order = np.argsort(ids, kind="stable")
        ids, vectors = ids[order], vectors[order]
        peak = np.abs(vectors).max(axis=1, initial=0.0)
        scales = np.divide(127.0, peak, out=np.ones_like(peak), where=peak > 0).astype(np.float32)
        codes = np.round(vectors * scales[:, None]).astype(np.int8)
        bits = np.ascontiguousarray(np.packbits(vectors > 0, axis=1).view(np.uint64).T)
        return cls(ids.astype(np.int64), bits, codes, scales)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.bits.nbytes + self.codes.nbytes + self.scales.nbytes

    def without(self, ids: np.ndarray) -> QuantizedVectors:
        keep = ~np.isin(self.ids, ids)
        return QuantizedVectors(self.ids[keep], np.ascontiguousarray(self.bits[:, keep]),
                                self.codes[keep], self.scales[keep])

    def plus(self, ids: np.ndarray, vectors: np.ndarray) -> QuantizedVectors:
        if not len(ids):
            return self
        new = QuantizedVectors.build(ids, vectors)
        order = np.argsort(np.concatenate([self.ids, new.ids]), kind="stable")
        return QuantizedVectors(
            np.concatenate([self.ids, new.ids])[order],
            np.ascontiguousarray(np.concatenate([self.bits, new.bits], axis=1)[:, order]),
            np.concatenate([self.codes, new.codes])[order],
            np.concatenate([self.scales, new.scales])[order],
        )

    def search(self, query: np.ndarray, k: int, candidates: int = CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, estimated cosines) of the `k` best, best first."""
        if not len(self.ids):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.asarray(query, dtype=np.float32)
        if len(self.ids) > candidates:
            rows = self._nearest_by_hamming(query, candidates)
        else:
            rows = np.arange(len(self.ids))
        estimates = (self.codes[rows].astype(np.float32) @ query) / self.scales[rows]
        best = np.argsort(-estimates, kind="stable")[:k]
        return self.ids[rows[best]], estimates[best]

    def _nearest_by_hamming(self, query: np.ndarray, count: int) -> np.ndarray:
        query_bits = np.packbits(query > 0).view(np.uint64)
        distance = np.bitwise_count(self.bits[0] ^ query_bits[0])
        for word in range(1, len(query_bits)):
            distance += np.bitwise_count(self.bits[word] ^ query_bits[word])
        return np.argpartition(distance, count)[:count]


class _Copy:
    """One generation's in-memory vectors and the store version they reflect."""

    def __init__(self, dim: int) -> None:
        self.vectors = QuantizedVectors.empty(dim)
        self.version: int | None = None
        self.lock = threading.Lock()


_copies: dict[tuple[Path, int], _Copy] = {}
_copies_lock = threading.Lock()


def in_memory(store: Store, gen: Generation) -> QuantizedVectors:
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


def _caught_up(store: Store, gen: Generation, vectors: QuantizedVectors) -> QuantizedVectors:
    if not len(vectors):
        return QuantizedVectors.build(*store.vectors(gen))
    ids = store.chunk_ids(gen)
    gone = np.setdiff1d(vectors.ids, ids, assume_unique=True)
    new = np.setdiff1d(ids, vectors.ids, assume_unique=True)
    return vectors.without(gone).plus(*store.vectors(gen, new))


def nearest(store: Store, gen: Generation, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` chunks closest to `query` as (chunk_id, exact cosine), best first."""
    shortlist, _ = in_memory(store, gen).search(query, max(EXACT_MIN, EXACT_FACTOR * k))
    exact = store.similarities(gen, query, shortlist.tolist())
    return sorted(exact.items(), key=lambda item: item[1], reverse=True)[:k]
