"""Chat markup to the plain words a duplicate is judged by, and which messages are worth judging.

Platform-free: a platform's links, mentions and entities are read through the
`to_plain` it passes in (`bot.chat.ToPlain`).
"""

from __future__ import annotations

import re

from bot.chat import ToPlain
from bot.dupes.rules import DupRules

_CODE_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_BARE_URL = re.compile(r"\b(?:https?|mailto):\S+")
_EMOJI = re.compile(r"(?<!\w):[a-z0-9_+'-]+:(?!\w)")  # not the ":15:" of 10:15:30
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit: what makes a word a word
_EMPHASIS = re.compile(r"(?<!\w)([*_~])(\S(?:.*?\S)?)\1(?!\w)")


def normalize_text(text: str, to_plain: ToPlain) -> str:
    """Chat markup to the plain words a person reads, minus what says nothing about the question.

    Code keeps its words, links keep their label (`to_plain`: the platform's
    links, mentions and entities), mentions and bare URLs go (two people
    asking the same thing mention different people and links), and so do
    :emoji: and *bold*/_italic_/~strike~ markers.
    """
    text = _CODE_BLOCK.sub(r" \1 ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = to_plain(text)
    text = _BARE_URL.sub("", text)
    text = _EMOJI.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def candidate_text(text: str, rules: DupRules, to_plain: ToPlain) -> str | None:
    """The normalised text if the message is worth judging, else None.

    Emoji-only and URL-only messages normalise to nothing; short ones
    ("thanks!", "standup in 5") repeat all the time without being questions.
    """
    plain = normalize_text(text, to_plain)
    words = sum(1 for word in plain.split() if _ALNUM.search(word))
    if words == 0 or words < rules.min_words or len(plain) < rules.min_chars:
        return None
    return plain
