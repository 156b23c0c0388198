"""The words of a question that keyword search, ranking and excerpts look for.

A plain tokenizer, the same for every store: a store matches each word as a
word (`Store.word_scores`), never as query syntax.
"""

from __future__ import annotations

import re

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


def query_words(query: str) -> list[str]:
    """The words of `query` a keyword search looks for: lowercase, once each, stopwords dropped.

    A question made only of stopwords ("who are we?") keeps them all.
    """
    words = dict.fromkeys(w.lower() for w in _WORD.findall(query))
    return [w for w in words if w not in STOPWORDS] or list(words)
