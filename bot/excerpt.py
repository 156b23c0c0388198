"""The sentence or two of a passage that answer the question, for showing at a glance.

Five 600-character passages fill a screen, and the reader wants the sentence
that answers. It is chosen by how many of the question's words it holds
(stopwords dropped; words compared without a plural or -ed/-ing ending and by
their first letters, so "taxi" meets "Taxis" and "reimbursed" meets
"Reimbursement"); a tie goes to the earlier sentence.
The next sentence (else the one before) joins it when both fit. Pure functions:
the CLI, Slack and Python callers all show the same lead.
"""

from __future__ import annotations

import re

from bot.ranking import STEM
from bot.words import query_words

LEAD_CHARS = 300  # about two sentences: three sources then fit one Slack screen

# A sentence ends at . ! ? followed by space and what may start a sentence, or at a line break.
_WORD = re.compile(r"[^\W_]+")
_ENDING = re.compile(r"(?:ies|es|s|ed|ing)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[*_`•A-Z0-9-])|\s*\n\s*")


_LIST_MARKER = re.compile(r"\(?[0-9a-zA-Z]{1,3}[.)]")


def sentences(text: str) -> list[str]:
    """`text` cut into sentences and lines, blank ones left out; a list marker ("3.") stays with its item."""
    found: list[str] = []
    marker = ""
    for part in _SENTENCE_END.split(text):
        part = part.strip()
        if _LIST_MARKER.fullmatch(part):
            marker += part + " "
        elif part:
            found.append(marker + part)
            marker = ""
    return found + ([marker.strip()] if marker else [])


def lead(text: str, question: str, limit: int = LEAD_CHARS) -> str:
    """The sentence(s) of `text` that best match `question`, at most `limit` characters.

    "…" marks text left out before or after; a passage that fits whole is returned whole
    (its lines joined).
    """
    parts = sentences(text)
    if not parts:
        return ""
    whole = " ".join(parts)
    if len(whole) <= limit:
        return whole
    wanted = _keys(" ".join(query_words(question)))
    matches = [len(wanted & _keys(part)) for part in parts]
    best = max(range(len(parts)), key=lambda i: (matches[i], -i))
    start, end = best, best + 1
    for first, last in ((best, best + 2), (best - 1, best + 1)):
        if first >= 0 and last <= len(parts) and len(" ".join(parts[first:last])) <= limit:
            start, end = first, last
            break
    shown = " ".join(parts[start:end])
    more_after = end < len(parts)
    if len(shown) > limit:  # one long sentence: its start
        shown, more_after = _cut(shown, limit), True
    return ("… " if start > 0 else "") + shown + (" …" if more_after else "")


def _keys(text: str) -> set[str]:
    keys = set()
    for word in _WORD.findall(text.lower()):
        bare = _ENDING.sub("", word)
        keys.add((bare if len(bare) >= 3 else word)[:STEM])
    return keys


def _cut(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters."""
    cut = text[:limit]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip()
