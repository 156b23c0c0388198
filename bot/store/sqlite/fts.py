"""Keyword retrieval's SQL: an SQLite FTS5 table per generation, ranked by BM25.

Each generation's chunks are indexed beside its vector table (rowid = chunk id),
so keyword hits can never come from another generation, and BM25's statistics
are those of one index. Words are stemmed (`porter`): on SciFact it beat plain
`unicode61` by 0.03 nDCG@10 (train 0.693 vs 0.661). Title, heading trail and
body are separate columns so a later change can weigh them apart in bm25();
weighting the title 0.5-3x moved SciFact train by under 0.004, so all count the same.
"""

from __future__ import annotations

from bot.store.sqlite.db import Connection

TOKENIZER = "porter unicode61 remove_diacritics 2"


def table_name(generation_id: int) -> str:
    """The FTS5 table holding a generation's chunks (rowid = chunk id)."""
    return f"fts_chunks_{generation_id}"


def create_table(conn: Connection, generation_id: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE {table_name(generation_id)} USING fts5("
        f"title, heading, body, tokenize = '{TOKENIZER}')"
    )


def phrase(word: str) -> str:
    """`word` (from `bot.words.query_words`) as an FTS5 query.

    Quoted, so user input is never read as FTS5 syntax (`-`, `:`, `*`, `NEAR`…).
    """
    return '"' + word.replace('"', '""') + '"'
