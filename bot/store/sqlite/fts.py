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

from bot.store.sqlite.db import Connection

TOKENIZER = "porter unicode61 remove_diacritics 2"

_WORD = re.compile(r"\w+")

# Words nearly every passage has: BM25 gives them almost no weight, but matching
# them makes FTS5 score most of the index (2.4 s a question at 100k chunks).
STOPWORDS = frozenset({
    "a", "about", "above", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did",
    "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
    "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once",
    "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some",
    "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours",
})


def table_name(generation_id: int) -> str:
    return f"fts_chunks_{generation_id}"


def create_table(conn: Connection, generation_id: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE {table_name(generation_id)} USING fts5("
        f"title, heading, body, tokenize = '{TOKENIZER}')"
    )


def query_words(query: str) -> list[str]:
    """The words of `query` a keyword search looks for: lowercase, once each, stopwords dropped.

    A question made only of stopwords ("who are we?") keeps them all.
    """
    words = dict.fromkeys(w.lower() for w in _WORD.findall(query))
    return [w for w in words if w not in STOPWORDS] or list(words)


def phrase(word: str) -> str:
    """`word` as an FTS5 query: quoted, so user input is never read as FTS5 syntax (`-`, `:`, `*`, `NEAR`…)."""
    return '"' + word.replace('"', '""') + '"'
