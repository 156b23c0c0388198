"""Keyword scores that stay fast on big indexes: each word's BM25 list, cached per process.

FTS5 scores a query by walking the whole list of chunks of every word in it,
twice (once more to count them for the word's IDF): ~60 ms at 100k chunks for
a question whose words are in a third of them. BM25 is a sum over the query's
words, each term depending only on the word and the chunk, so a question's
scores are the sum of its words' (chunk ids, scores) lists, and each list is
fetched from FTS5 once and kept in a byte-bounded LRU keyed by the
generation's `vectors_version` (bumped by every write to its chunks). The
common words, the slow ones, are the ones that come back question after
question.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bot.store import Generation, Store
from bot.vector_index import rows_of
from bot.words import query_words

# Word lists kept per process: 8 bytes a (chunk id, score) kept as int32 and
# float32; a word found in half of 100,000 chunks takes 0.4 MB.
CACHE_BYTES = 32 * 2**20


@dataclass(frozen=True)
class KeywordScores:
    """BM25 score of every chunk matching a question, by ascending chunk id."""

    ids: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def top(self, k: int) -> list[tuple[int, float]]:
        """The `k` best as (chunk id, score), best first (ties by ascending id)."""
        rows = np.argpartition(-self.scores, k)[:k] if k < len(self) else np.arange(len(self))
        rows = rows[np.lexsort((self.ids[rows], -self.scores[rows]))]
        return list(zip(self.ids[rows].tolist(), self.scores[rows].tolist()))

    def of(self, ids: Iterable[int]) -> dict[int, float]:
        """The score of each of `ids` (0.0 for a chunk that does not match)."""
        wanted = np.fromiter(ids, dtype=np.int64)
        rows, hit = rows_of(self.ids, wanted)
        scores = np.zeros(len(wanted))
        scores[hit] = self.scores[rows[hit]]
        return dict(zip(wanted.tolist(), scores.tolist()))


def keyword_scores(store: Store, gen: Generation, query: str) -> KeywordScores:
    """BM25 scores for `query`'s words (`bot.words.query_words`), summed over its words.

    Word lists are keyed by the database file's identity, the generation and its
    version; a newer generation of the same file clears the older ones' lists.
    """
    index = (store.identity, gen.id, store.vectors_version(gen))
    _forget_older_generations(store.identity, gen.id)
    parts = [_word_scores(store, gen, index, word) for word in query_words(query)]
    if not parts:
        return KeywordScores(np.zeros(0, np.int64), np.zeros(0))
    if len(parts) == 1:
        return KeywordScores(*parts[0])
    ids, where = np.unique(np.concatenate([ids for ids, _ in parts]), return_inverse=True)
    return KeywordScores(ids, np.bincount(where, weights=np.concatenate([s for _, s in parts])))


_cache: OrderedDict[tuple[object, int, int, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()
_newest: dict[object, int] = {}  # database file -> newest generation id seen


def _forget_older_generations(identity: object, generation: int) -> None:
    global _cache_bytes
    with _cache_lock:
        if _newest.get(identity, -1) >= generation:
            return
        _newest[identity] = generation
        for key in [k for k in _cache if k[0] == identity and k[1] < generation]:
            ids, scores = _cache.pop(key)
            _cache_bytes -= ids.nbytes + scores.nbytes


def clear_cache() -> None:
    """Forget every cached word list (benchmarks measure the uncached path with it)."""
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _newest.clear()
        _cache_bytes = 0


def _word_scores(
    store: Store, gen: Generation, index: tuple[object, int, int], word: str
) -> tuple[np.ndarray, np.ndarray]:
    global _cache_bytes
    key = (*index, word)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    ids, scores = store.word_scores(gen, word)
    if len(ids) and ids[-1] < 2**31:  # half the memory; chunk ids past 2^31 stay int64
        ids = ids.astype(np.int32)
    found = ids, scores.astype(np.float32)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = found
            _cache_bytes += found[0].nbytes + found[1].nbytes
        while _cache_bytes > CACHE_BYTES and len(_cache) > 1:
            ids, scores = _cache.popitem(last=False)[1]
            _cache_bytes -= ids.nbytes + scores.nbytes
    return found
