"""Documents turned into blocks of readable text, each with its heading trail and source lines.

The format parsers (`rst`, `markdown`) walk a real parse tree, so markup never
reaches a passage; the chunker only packs blocks. Line numbers are 1-based and
point at the source file, because answers cite line ranges.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_WORD = re.compile(r"[^\W_]")
_TARGET_PUNCT = re.compile(r"[-_/#.:]+")


@dataclass(frozen=True)
class Block:
    text: str
    trail: tuple[str, ...]  # headings above the block, outermost first
    start_line: int
    end_line: int
    tight: bool = False  # follows the block before it on the next line (list items, table rows)
    code: bool = False  # shown as written (code, commands), not read as prose


@dataclass
class Parsed:
    blocks: list[Block] = field(default_factory=list)
    title: str | None = None


def has_words(text: str) -> bool:
    """True when the text holds a letter or digit: borders and punctuation alone are not a passage."""
    return _WORD.search(text) is not None


# Roles that point at another page or label: without a label, Sphinx shows the target's title,
# which we cannot know, so the target itself is made readable.
XREF_ROLES = {"doc", "ref", "numref", "any", "std:ref", "std:doc", "download"}


def readable_target(target: str) -> str:
    """A cross-reference target read aloud: `/guides/install-linux` → "install linux"."""
    parts = re.sub(r"^[A-Za-z][\w-]*:(?=\S)", "", target.strip()).strip("/").split("/")
    if len(parts) > 1 and parts[-1] == "index":  # `/config-file/index` is the page "config file"
        parts.pop()
    return " ".join(_TARGET_PUNCT.sub(" ", parts[-1]).split()) or target


def role_text(name: str, content: str) -> str:
    """The visible text of a Sphinx/MyST role: `Label <target>` → "Label"; a bare target made readable."""
    content = " ".join(content.split())
    if match := re.fullmatch(r"(.*?)\s*<([^<>]+)>", content):
        if match.group(1).strip():
            return match.group(1).strip()
        content = match.group(2)
    if name == "guilabel":
        return content.replace("&&", "\0").replace("&", "").replace("\0", "&")
    if name == "menuselection":
        return content.replace("-->", ">")
    if content.startswith(("~", "!")):
        content = content[1:].rsplit(".", 1)[-1] if content[0] == "~" else content[1:]
    return readable_target(content) if name.lower() in XREF_ROLES else content


class BlockWriter:
    """Collects blocks while a parser walks its tree: the heading trail and a pending lead-in.

    The lead-in ("Note: ", "Linux: ", "- ") is put before the next block written,
    so a label or list marker is never a passage of its own.
    """

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.headings: list[tuple[int, str]] = []
        self.title: str | None = None
        self.prefix = ""
        self.tight = False

    @property
    def trail(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.headings)

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        self.headings = [(lv, h) for lv, h in self.headings if lv < level] + ([(level, text)] if text else [])
        self.title = self.title or text or None
        self.prefix, self.tight = "", False

    def label(self, text: str) -> None:
        if has_words(text):
            self.prefix += " ".join(text.split()) + ": "

    def item(self, marker: str, first: bool) -> None:
        self.prefix, self.tight = self.prefix + marker, not first

    def add(self, text: str, start: int, end: int, *, code: bool = False) -> None:
        """A paragraph (whitespace folded) or code (lines kept); nothing without a word is kept."""
        text = text.strip("\n") if code else " ".join(text.split())
        if not has_words(text):
            return
        if self.prefix.endswith(": ") and code:
            text = self.prefix.rstrip() + "\n" + text
        elif self.prefix and not code:
            text = self.prefix + text
        self.blocks.append(Block(text, self.trail, start, max(start, end), tight=self.tight, code=code))
        self.prefix, self.tight = "", False

    def table(self, header: Sequence[str], rows: Sequence[tuple[Sequence[str], int, int]]) -> None:
        """One block per row, each cell named by its column: "Header: value; Header2: value".

        A row read on its own still says which column each value belongs to, so a
        table can be split between any two rows and never inside one.
        """
        first = True
        for cells, start, end in rows:
            parts = []
            for number, cell in enumerate(cells):
                cell = " ".join(cell.split())
                name = " ".join(header[number].split()) if number < len(header) else ""
                if cell:
                    parts.append(f"{name}: {cell}" if name and name != cell else cell)
            if has_words("".join(parts)):
                self.tight = not first
                self.add("; ".join(parts), start, end)
                first = False
        self.prefix, self.tight = "", False


def text_blocks(text: str, first_line: int = 1, trail: tuple[str, ...] = ()) -> list[Block]:
    """Paragraphs (blank-line separated) of plain text with their line ranges."""
    blocks: list[Block] = []
    lines: list[str] = []
    start = first_line
    for offset, line in enumerate([*text.split("\n"), ""]):
        if line.strip():
            if not lines:
                start = first_line + offset
            lines.append(line.rstrip())
        elif lines:
            blocks.append(Block("\n".join(lines), trail, start, start + len(lines) - 1))
            lines = []
    return blocks


def joined_text(blocks: Sequence[Block]) -> str:
    """The readable text of a document, blocks separated as they are in a passage."""
    return "".join(("\n" if b.tight else "\n\n") + b.text if i else b.text for i, b in enumerate(blocks))
