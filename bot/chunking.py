"""Pack a document's blocks into passages that each fit the embedder's token limit.

Pure functions, no I/O. The parsers (bot/parsing) have already turned the file
into blocks of readable text with heading trails; consecutive blocks under one
trail form a section, packed up to the budget, long blocks split at sentences,
long sentences at words. A block is never split while it fits, so a table row
stays whole. Consecutive chunks of one section share a small overlap. Every
chunk records the 1-based line range it came from; chunks without a word are
dropped, and a very long document yields many chunks, never a truncated one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

from bot.parsing import Block, has_words

CountTokens = Callable[[Sequence[str]], list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Chunk:
    text: str  # the passage as shown to people
    heading: str | None  # heading trail, "Expenses > Travel > Taxis"
    start_line: int
    end_line: int


@dataclass(frozen=True)
class _Unit:
    text: str
    start_line: int
    end_line: int
    block: int  # pieces of one block rejoin with a space or newline, blocks with a paragraph break
    tight: bool = False


def embedding_text(title: str | None, heading: str | None, text: str) -> str:
    """What is embedded for a chunk: its title and heading trail, then the text."""
    trail = [part for part in (title, heading) if part]
    if title and heading and heading.split(" > ")[0].strip().lower() == title.strip().lower():
        trail = [heading]
    return "\n".join([" > ".join(trail), text]) if trail else text


def chunk_document(
    blocks: Sequence[Block],
    *,
    title: str | None,
    count_tokens: CountTokens,
    max_tokens: int,
    target_tokens: int,
    overlap_tokens: int,
) -> list[Chunk]:
    """Chunks of `blocks` whose embedding text (title + trail + body) fits `max_tokens`.

    `count_tokens` counts a batch of texts with the model's tokenizer (special
    tokens included); `target_tokens` is the preferred size, capped by the limit.
    """
    chunker = _Chunker(count_tokens, max_tokens, min(target_tokens, max_tokens), overlap_tokens)
    numbered = [(n, b) for n, b in enumerate(blocks) if has_words(b.text)]
    chunks: list[Chunk] = []
    for trail, group in groupby(numbered, key=lambda item: item[1].trail):
        units = [_Unit(b.text, b.start_line, b.end_line, n, b.tight) for n, b in group]
        chunks.extend(c for c in chunker.pack(title, " > ".join(trail) or None, units) if has_words(c.text))
    return chunks


class _Chunker:
    def __init__(self, count: CountTokens, limit: int, target: int, overlap: int) -> None:
        self.count = count
        self.limit = limit
        self.target = target
        self.overlap = overlap

    def pack(self, title: str | None, heading: str | None, units: list[_Unit]) -> list[Chunk]:
        prefix = embedding_text(title, heading, "")
        prefix_tokens = self.count([prefix])[0] if prefix else 2
        # Room for the body: the target size less what the prefix takes, and at
        # least a quarter of the limit so a long heading trail cannot starve it.
        budget = max(self.target - prefix_tokens, self.limit // 4, 8)
        budget = min(budget, self.limit - prefix_tokens)
        if budget < 8:  # an absurd heading: embed the body without its trail
            heading, budget, prefix = None, self.limit - 2, ""
        pieces = self._fit(units, budget)
        sizes = self._sizes([p.text for p in pieces])
        chunks: list[Chunk] = []
        current: list[tuple[_Unit, int]] = []
        used = 0
        for piece, size in zip(pieces, sizes):
            if current and used + size > budget:
                chunks.append(self._emit(current, heading))
                current = self._tail(current)
                used = sum(s for _, s in current)
                if used + size > budget:
                    current, used = [], 0
            current.append((piece, size))
            used += size
        if current:
            chunks.append(self._emit(current, heading))
        return self._verified(chunks, title)

    def _sizes(self, texts: list[str]) -> list[int]:
        # Tokens inside a longer text: without the [CLS]/[SEP] each count includes.
        return [max(n - 2, 1) for n in self.count(texts)] if texts else []

    def _fit(self, units: list[_Unit], budget: int) -> list[_Unit]:
        """Split units larger than `budget` into sentences, then word runs."""
        sizes = self._sizes([u.text for u in units])
        out: list[_Unit] = []
        for unit, size in zip(units, sizes):
            if size <= budget:
                out.append(unit)
                continue
            sentences = _split_sentences(unit)
            if len(sentences) == 1:
                out.extend(self._split_words(unit, budget))
            else:
                out.extend(self._fit(sentences, budget))
        return out

    def _split_words(self, unit: _Unit, budget: int) -> list[_Unit]:
        words = unit.text.split()
        sizes = self._sizes(words)
        out: list[_Unit] = []
        run: list[str] = []
        used = 0
        for word, size in zip(words, sizes):
            if size > budget:  # one giant token run (base64, minified code)
                step = max(budget // 2, 1)
                out.extend(_Unit(word[i : i + step], unit.start_line, unit.end_line, unit.block)
                           for i in range(0, len(word), step))
                continue
            if run and used + size > budget:
                out.append(_Unit(" ".join(run), unit.start_line, unit.end_line, unit.block))
                run, used = [], 0
            run.append(word)
            used += size
        if run:
            out.append(_Unit(" ".join(run), unit.start_line, unit.end_line, unit.block))
        return out

    def _tail(self, current: list[tuple[_Unit, int]]) -> list[tuple[_Unit, int]]:
        """The trailing pieces (up to the overlap budget) repeated in the next chunk."""
        tail: list[tuple[_Unit, int]] = []
        used = 0
        for piece, size in reversed(current[1:]):
            if used + size > self.overlap:
                break
            tail.insert(0, (piece, size))
            used += size
        return tail

    @staticmethod
    def _emit(current: list[tuple[_Unit, int]], heading: str | None) -> Chunk:
        units = [u for u, _ in current]
        text = units[0].text
        for before, unit in zip(units, units[1:]):
            # Pieces of one line rejoin with a space, of one block with a newline; list items
            # and table rows follow each other on the next line, other blocks after a blank one.
            if unit.block == before.block:
                text += " " if unit.start_line <= before.end_line else "\n"
            else:
                text += "\n" if unit.tight else "\n\n"
            text += unit.text
        return Chunk(
            text=text,
            heading=heading,
            start_line=min(u.start_line for u in units),
            end_line=max(u.end_line for u in units),
        )

    def _verified(self, chunks: list[Chunk], title: str | None) -> list[Chunk]:
        """Check exact counts; halve any chunk that the estimate let through too big."""
        if not chunks:
            return chunks
        counts = self.count([embedding_text(title, c.heading, c.text) for c in chunks])
        out: list[Chunk] = []
        for chunk, n in zip(chunks, counts):
            if n <= self.limit:
                out.append(chunk)
                continue
            words = chunk.text.split(" ")
            if len(words) > 1:
                half = len(words) // 2
                halves = [" ".join(words[:half]), " ".join(words[half:])]
            else:
                half = len(chunk.text) // 2
                halves = [chunk.text[:half], chunk.text[half:]]
            out.extend(self._verified(
                [Chunk(h, chunk.heading, chunk.start_line, chunk.end_line) for h in halves if h],
                title,
            ))
        return out


def _split_sentences(unit: _Unit) -> list[_Unit]:
    """Sentences (or lines, for lists and code) of a paragraph, with line numbers."""
    text = unit.text
    parts: list[tuple[int, str]] = []
    if "\n" in text and not _SENTENCE_END.search(text):
        offset = 0
        for line in text.split("\n"):
            parts.append((offset, line))
            offset += len(line) + 1
    else:
        start = 0
        for match in _SENTENCE_END.finditer(text):
            parts.append((start, text[start : match.start()]))
            start = match.end()
        parts.append((start, text[start:]))
    units = []
    for offset, part in parts:
        if part.strip():
            line = unit.start_line + text.count("\n", 0, offset)
            units.append(_Unit(part.strip(), line, line + part.strip().count("\n"), unit.block))
    return units or [unit]
