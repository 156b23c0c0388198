"""Keyword retrieval: an SQLite FTS5 table per generation, ranked by BM25.

Each generation's chunks are indexed beside its vector table (rowid = chunk id),
so keyword hits can never come from another generation, and BM25's statistics
are those of one index. Words are stemmed (`porter`): on SciFact it beat plain
`unicode61` by 0.03 nDCG@10 (train 0.693 vs 0.661). Title, heading trail and
body are separate columns so a later change can weigh them apart in bm25();
weighting the title 0.5-3x moved SciFact train by under 0.004, so all count the same.
"""

from __future__ import annotations

import re

from bot.db import Connection

TOKENIZER = "porter unicode61 remove_diacritics 2"

_WORD = re.compile(r"\w+")


def table_name(generation_id: int) -> str:
    return f"fts_chunks_{generation_id}"


def create_table(conn: Connection, generation_id: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE {table_name(generation_id)} USING fts5("
        f"title, heading, body, tokenize = '{TOKENIZER}')"
    )


def match_expression(query: str) -> str | None:
    """An FTS5 query matching any word of `query` (None when it has no words).

    Every word is quoted, so user input cannot be read as FTS5 syntax (`-`,
    `:`, `*`, `NEAR`, `AND`…), and the words are OR-ed: a bare `a b` is an AND,
    which would drop every passage missing one word.
    """
    words = dict.fromkeys(w.lower() for w in _WORD.findall(query))
    return " OR ".join(f'"{w}"' for w in words) or None
