"""Keyword scores that stay fast on big indexes: each word's BM25 list, kept in memory by the store.

FTS5 scores a query by walking the whole list of chunks of every word in it,
twice (once more to count them for the word's IDF): ~60 ms at 100k chunks for
a question whose words are in a third of them. BM25 is a sum over the query's
words, each term depending only on the word and the chunk, so a question's
scores are the sum of its words' (chunk ids, scores) lists, and each list is
fetched from the store once and kept in a byte-bounded LRU keyed by the
generation's `vectors_version` (changed by every write to its chunks). The
common words, the slow ones, are the ones that come back question after
question.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from bot.store import Generation, Store, memoized
from bot.vector_index import rows_of
from bot.words import query_words

# Word lists kept per store: 8 bytes a (chunk id, score) kept as int32 and
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

    def among(self, ids: np.ndarray) -> KeywordScores:
        """Only the chunks of `ids` (a scope's files)."""
        keep = np.isin(self.ids, ids)
        return KeywordScores(self.ids[keep], self.scores[keep])


def keyword_scores(store: Store, gen: Generation, query: str) -> KeywordScores:
    """BM25 scores for `query`'s words (`bot.words.query_words`), summed over its words.

    Word lists are kept by the store (`Store.memo`), keyed by the generation
    and its version; a newer generation clears the older ones' lists.
    """
    lists = memoized(store, __name__, WordLists)
    lists.forget_older_generations(gen.id)
    index = (gen.id, store.vectors_version(gen))
    parts = [lists.scores(store, gen, index, word) for word in query_words(query)]
    if not parts:
        return KeywordScores(np.zeros(0, np.int64), np.zeros(0))
    if len(parts) == 1:
        return KeywordScores(*parts[0])
    ids, where = np.unique(np.concatenate([ids for ids, _ in parts]), return_inverse=True)
    return KeywordScores(ids, np.bincount(where, weights=np.concatenate([s for _, s in parts])))


class WordLists:
    """One store's word lists, least recently used dropped first past CACHE_BYTES; safe across threads."""

    def __init__(self) -> None:
        self._lists: OrderedDict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._newest = -1  # the newest generation id seen
        self._lock = threading.Lock()

    def forget_older_generations(self, generation: int) -> None:
        with self._lock:
            if self._newest >= generation:
                return
            self._newest = generation
            for key in [k for k in self._lists if k[0] < generation]:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
            self._bytes = 0
            self._newest = -1

    def scores(
        self, store: Store, gen: Generation, index: tuple[int, int], word: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """`word`'s (chunk ids, scores) in generation version `index`, from memory or the store."""
        key = (*index, word)
        with self._lock:
            found = self._lists.get(key)
            if found is not None:
                self._lists.move_to_end(key)
                return found
        ids, scores = store.word_scores(gen, word)
        if len(ids) and ids[-1] < 2**31:  # half the memory; chunk ids past 2^31 stay int64
            ids = ids.astype(np.int32)
        found = ids, scores.astype(np.float32)
        with self._lock:
            if key not in self._lists:
                self._lists[key] = found
                self._bytes += found[0].nbytes + found[1].nbytes
            while self._bytes > CACHE_BYTES and len(self._lists) > 1:
                self._drop(next(iter(self._lists)))
        return found

    def _drop(self, key: tuple[int, int, str]) -> None:
        ids, scores = self._lists.pop(key)
        self._bytes -= ids.nbytes + scores.nbytes


def clear_cache(store: Store) -> None:
    """Forget `store`'s word lists (benchmarks measure the uncached path with it)."""
    memoized(store, __name__, WordLists).clear()
