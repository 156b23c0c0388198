"""Markdown (CommonMark, GFM tables, MyST) read with markdown-it-py into blocks of readable text.

MyST directive fences (```{note}, :::{tab} Linux) are parsed again as Markdown,
so their text and the headings inside them are found; code fences stay code;
front matter gives the title and is otherwise not indexed.
"""

from __future__ import annotations

import re
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.colon_fence import colon_fence_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.front_matter import front_matter_plugin
from mdit_py_plugins.myst_blocks import myst_block_plugin
from mdit_py_plugins.myst_role import myst_role_plugin

from bot.parsing import BlockWriter, Parsed, role_text

_DIRECTIVE = re.compile(r"^\{([\w:.+-]+)\}\s*(.*)$")
_OPTION = re.compile(r"^:[\w-]+:")
_DROPPED = {"toctree", "contents", "include", "literalinclude", "raw", "index", "highlight", "image", "figure-md"}
_CODE = {"code-block", "code", "sourcecode", "code-cell"}
_ADMONITION_LABELS = {"seealso": "See also", "versionadded": "New in version", "versionchanged": "Changed in version",
                      "deprecated": "Deprecated since version"}
_TEXT_TOKENS = {"text", "code_inline"}


@cache
def _parser() -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": True})
        .enable("table")
        .enable("strikethrough")
        .use(front_matter_plugin)
        .use(myst_role_plugin)
        .use(myst_block_plugin)
        .use(colon_fence_plugin)
        .use(deflist_plugin)
        .use(footnote_plugin)
    )


def parse_markdown(text: str) -> Parsed:
    """Blocks of readable text with heading trails; the front matter's title, else the first `#` heading."""
    walker = _Walker()
    walker.walk(_parser().parse(text), 0)
    return Parsed(walker.out.blocks, walker.front_title or walker.first_h1)


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self.hidden -= tag in ("script", "style") and self.hidden > 0

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _html_text(html: str) -> str:
    """The visible words of an HTML block inside Markdown (comments and scripts dropped)."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    return " ".join("".join(parser.parts).split())


def _inline(tokens: list[Token] | None) -> str:
    parts: list[str] = []
    for token in tokens or []:
        if token.type in _TEXT_TOKENS:
            parts.append(token.content)
        elif token.type == "myst_role":
            parts.append(role_text(token.meta.get("name", ""), token.content))
        elif token.type in ("softbreak", "hardbreak"):
            parts.append("\n" if token.type == "hardbreak" else " ")
    return "".join(parts)


class _Walker:
    """Walks markdown-it's flat token stream; nested fences are parsed and walked at their line offset."""

    def __init__(self) -> None:
        self.out = BlockWriter()
        self.front_title: str | None = None
        self.first_h1: str | None = None
        self.lists: list[int] = []  # next number of each open list; 0 for bullets

    def walk(self, tokens: list[Token], offset: int) -> None:
        i = 0
        while i < len(tokens):
            i = self.visit(tokens, i, offset) + 1

    def visit(self, tokens: list[Token], i: int, offset: int) -> int:
        """Handle tokens[i]; returns the index of the last token it consumed."""
        token = tokens[i]
        start, end = (token.map[0] + 1 + offset, token.map[1] + offset) if token.map else (0, 0)
        kind = token.type
        if kind == "front_matter":
            if match := re.search(r"^title:\s*(.+?)\s*$", token.content, re.M):
                self.front_title = match.group(1).strip("\"'") or None
        elif kind == "heading_open":
            level = int(token.tag[1])
            title = _inline(tokens[i + 1].children)
            self.out.heading(level, title)
            if level == 1 and not self.first_h1:
                self.first_h1 = " ".join(title.split()) or None
            return i + 2
        elif kind in ("bullet_list_open", "ordered_list_open"):
            self.lists.append(int(token.attrGet("start") or 1) if kind == "ordered_list_open" else 0)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
        elif kind == "list_item_open":
            number = self.lists[-1] if self.lists else 0
            first = tokens[i - 1].type in ("bullet_list_open", "ordered_list_open")
            self.out.item(f"{number}. " if number else "- ", first)
            if number:
                self.lists[-1] += 1
        elif kind == "inline" and tokens[i - 1].type == "dt_open":
            self.out.label(_inline(token.children))
        elif kind == "inline":
            self.out.add(_inline(token.children), start, end)
        elif kind == "html_block":
            self.out.add(_html_text(token.content), start, end)
        elif kind in ("fence", "code_block", "colon_fence"):
            self.fence(token, start, end, offset)
        elif kind == "table_open":
            return self.table(tokens, i, offset)
        return i

    def fence(self, token: Token, start: int, end: int, offset: int) -> None:
        match = _DIRECTIVE.match(token.info.strip())
        name = match.group(1).lower() if match else ""
        if not match or name in _CODE:
            self.out.add(token.content, start, end, code=True)
            return
        if name in _DROPPED:
            return
        if name == "eval-rst":
            self.rst(token.content, start)
            return
        argument = match.group(2)
        if name in _ADMONITION_LABELS:
            self.out.label(f"{_ADMONITION_LABELS[name]} {argument}")
        else:
            self.out.label(argument or (name.capitalize() if name.isalpha() else ""))
        lines = token.content.split("\n")
        skip = _options_length(lines)
        self.walk(_parser().parse("\n".join(lines[skip:])), start + skip)
        self.out.prefix = ""

    def rst(self, text: str, first_line: int) -> None:
        """rST embedded in MyST (```{eval-rst}): parsed by docutils, under the current heading trail."""
        from bot.parsing.rst import parse_rst

        for block in parse_rst(text, Path("eval-rst.rst"), None).blocks:
            self.out.tight = block.tight
            self.out.add(block.text, block.start_line + first_line, block.end_line + first_line, code=block.code)

    def table(self, tokens: list[Token], i: int, offset: int) -> int:
        header: list[str] = []
        rows: list[tuple[list[str], int, int]] = []
        cells: list[str] = []
        in_head, first, last = False, 0, 0
        while tokens[i].type != "table_close":
            token = tokens[i]
            if token.type in ("thead_open", "thead_close"):
                in_head = token.type == "thead_open"
            elif token.type == "tr_open" and token.map:
                cells, first, last = [], token.map[0] + 1 + offset, token.map[1] + offset
            elif token.type == "inline":
                cells.append(_inline(token.children))
            elif token.type == "tr_close":
                if in_head:
                    header = cells
                else:
                    rows.append((cells, first, last))
            i += 1
        self.out.table(header, rows)
        return i


def _options_length(lines: list[str]) -> int:
    """How many leading lines of a MyST directive are options (`:key: value`, or a `---` YAML block)."""
    if lines and lines[0].strip() == "---":
        for number, line in enumerate(lines[1:], start=1):
            if line.strip() == "---":
                return number + 1
        return 0
    count = 0
    while count < len(lines) and _OPTION.match(lines[count]):
        count += 1
    return count
