"""Keyword scores in PostgreSQL with the SQLite store's exact BM25: postings tokenized by FTS5 itself.

PostgreSQL's `tsvector` stems with Snowball and ranks with ts_rank, which is not
BM25, so hybrid ranking would drift from the SQLite store. Instead each chunk's
title, heading and body go through the very FTS5 tokenizer the SQLite store uses
(`bot.store.sqlite.fts.TOKENIZER`, in a throwaway in-memory table), and the
resulting postings, (word, chunk, positions), are kept in a plain table. A
word's scores are then FTS5's `bm25()` formula over those postings, so both
stores give the same numbers for the same chunks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from bot.store.sqlite import fts
from bot.store.sqlite.db import connect

# FTS5's bm25() constants (ext/fts5/fts5_aux.c).
K1 = 1.2
B = 0.75
# A position is column * COLUMN_STRIDE + offset, so a phrase never spans two columns.
COLUMN_STRIDE = 1 << 20


class Tokenized:
    """One chunk's postings: each term's positions, and its length in tokens (every column)."""

    def __init__(self) -> None:
        self.positions: dict[str, list[int]] = {}
        self.length = 0


def tokenize(rows: Sequence[tuple[str | None, str | None, str | None]]) -> list[Tokenized]:
    """(title, heading, body) rows as FTS5 with the SQLite store's tokenizer splits and stems them."""
    found = [Tokenized() for _ in rows]
    conn = connect(":memory:")
    try:
        fts.create_table(conn, 0)
        conn.executemany(
            f"INSERT INTO {fts.table_name(0)} (rowid, title, heading, body) VALUES (?, ?, ?, ?)",
            [(i, *row) for i, row in enumerate(rows)],
        )
        conn.execute(f"CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, {fts.table_name(0)}, instance)")
        for term, doc, column, offset in conn.execute("SELECT term, doc, col, offset FROM temp.vocab"):
            entry = found[doc]
            entry.positions.setdefault(term, []).append(_COLUMNS[column] * COLUMN_STRIDE + offset)
            entry.length += 1
    finally:
        conn.close()
    return found


_COLUMNS = {"title": 0, "heading": 1, "body": 2}


def word_terms(word: str) -> list[str]:
    """The terms FTS5 makes of `word`, in order: one for a plain word, several for e.g. `foo_bar`."""
    positions = tokenize([(None, None, word)])[0].positions
    return [term for _, term in sorted((p, t) for t, ps in positions.items() for p in ps)]


def phrase_counts(postings: Sequence[dict[int, list[int]]]) -> dict[int, int]:
    """Per chunk, how often the terms occur one right after the other (FTS5's phrase match)."""
    first, *rest = postings
    counts = {}
    for chunk, starts in first.items():
        if all(chunk in later for later in rest):
            hits = sum(all(p + i in set(later[chunk]) for i, later in enumerate(rest, 1)) for p in starts)
            if hits:
                counts[chunk] = hits
    return counts


def bm25(
    chunks: np.ndarray, frequencies: np.ndarray, lengths: np.ndarray, total_chunks: int, total_tokens: int
) -> np.ndarray:
    """FTS5's bm25() of one phrase for the chunks holding it, positive (FTS5 returns it negated)."""
    if not len(chunks):
        return np.zeros(0)
    hits = len(chunks)
    idf = math.log((total_chunks - hits + 0.5) / (hits + 0.5))
    idf = idf if idf > 0 else 1e-6
    average = total_tokens / total_chunks
    tf = frequencies.astype(np.float64)
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths / average))
