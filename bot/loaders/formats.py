"""Turn a file's bytes into blocks of readable text by its format, or a reason to skip it.

Markdown (markdown-it-py, MyST included), plain text, reStructuredText
(docutils, Sphinx roles and directives understood), HTML (visible text only,
headings kept; Jinja/Django templates skipped) and PDF (the text layer).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from charset_normalizer import from_bytes

from bot.loaders.folder import HTML, MARKDOWN, MAX_FILE_BYTES, PDF, RST, TOO_LARGE, Skipped, SourceFile
from bot.parsing import Block, joined_text, text_blocks
from bot.parsing.markdown import parse_markdown
from bot.parsing.rst import parse_rst


@dataclass(frozen=True)
class LoadedDocument:
    text: str
    markdown: bool  # `text` is Markdown: its blocks come from parsing it
    title: str | None
    note: str | None = None  # e.g. "decoded as cp1252"
    blocks: tuple[Block, ...] = ()  # what is chunked; parsed from `text` when not given

    def __post_init__(self) -> None:
        if not self.blocks:
            blocks = parse_markdown(self.text).blocks if self.markdown else text_blocks(self.text)
            object.__setattr__(self, "blocks", tuple(blocks))



def load(source: SourceFile, data: bytes) -> LoadedDocument | Skipped:
    """Turn a file's bytes into text ready for chunking."""
    suffix = source.path.suffix.lower()
    if not data.strip():
        return Skipped("empty file")
    if len(data) > MAX_FILE_BYTES:
        return Skipped(TOO_LARGE)
    if suffix in PDF:
        return _load_pdf(data)
    decoded = decode_text(data)
    if isinstance(decoded, Skipped):
        return decoded
    text, note = decoded
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Skipped("only whitespace")
    stem_title = source.path.stem.replace("-", " ").replace("_", " ").strip().capitalize()
    if suffix in MARKDOWN:
        parsed = parse_markdown(text)
        return LoadedDocument(text, True, parsed.title or stem_title, note, tuple(parsed.blocks))
    if suffix in RST:
        root = source.path.parents[len(Path(source.rel).parts) - 1]
        parsed = parse_rst(text, source.path, root)
        return LoadedDocument(joined_text(parsed.blocks), False, parsed.title or stem_title, note, tuple(parsed.blocks))
    if suffix in HTML:
        if "_templates" in Path(source.rel).parts[:-1] or _TEMPLATE_TAG.search(text):
            return Skipped("HTML template (Jinja/Django tags), not a page")
        text, title = html_to_markdown(text)
        if not text.strip():
            return Skipped("no visible text")
        return LoadedDocument(text, True, title or stem_title, note)
    return LoadedDocument(text, False, _plain_title(text) or stem_title, note)


def decode_text(data: bytes) -> tuple[str, str | None] | Skipped:
    """UTF-8 when valid; otherwise the detected encoding. Binary content is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "decoded as UTF-16"
        except UnicodeDecodeError:
            return Skipped("invalid UTF-16")
    if b"\x00" in data[:8192]:
        return Skipped("binary content")
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    best = from_bytes(data[: 1 << 20]).best()
    if best is None:
        return Skipped("binary content (no text encoding fits)")
    text = data.decode(best.encoding, errors="replace")
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > len(text[:8192]) * 0.05:
        return Skipped("binary content")
    return text, f"decoded as {best.encoding}"


def _plain_title(text: str) -> str | None:
    """A short first line reads as the title of a plain text file."""
    for line in text.split("\n"):
        line = line.strip()
        if line:
            return line if len(line) <= 80 and not line.endswith((".", ",")) else None
    return None


# `{% block %}`, `{{ name }}`: the page is a template, rendered elsewhere, not text for people.
_TEMPLATE_TAG = re.compile(r"\{%-?\s*\w+[^%]*%\}|\{\{-?\s*[\w.]+(\(\))?\s*(\|[^}]*)?\}\}")


class _VisibleText(HTMLParser):
    BLOCK = {"p", "div", "section", "article", "li", "tr", "br", "table", "ul", "ol",
             "pre", "blockquote", "header", "footer", "main", "nav", "aside", "dd", "dt"}
    HIDDEN = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.title: str | None = None
        self._in_title = False
        self._heading: int | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.HIDDEN:
            self.hidden += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = int(tag[1])
            self.out.append("\n\n" + "#" * self._heading + " ")
        elif tag in self.BLOCK:
            self.out.append("\n\n" if tag in {"p", "div", "section", "table", "ul", "ol", "pre"} else "\n")
            if tag == "li":
                self.out.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self.hidden:
            self.out.append(" ".join(data.split()) if self._heading else re.sub(r"[ \t]+", " ", data))


def html_to_markdown(text: str) -> tuple[str, str | None]:
    """Visible text of an HTML page, headings as `#` lines; plus its <title>."""
    parser = _VisibleText()
    parser.feed(text)
    parser.close()
    body = "".join(parser.out)
    lines = [line.strip() for line in body.split("\n")]
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return body, parser.title or None


def _load_pdf(data: bytes) -> LoadedDocument | Skipped:
    from pypdf import PasswordType, PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        # Many PDFs are encrypted with an owner password only (no printing, no
        # copying): the empty user password opens them for reading.
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            return Skipped("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AssertionError) as exc:
        return Skipped(f"corrupt PDF ({type(exc).__name__})")
    except Exception as exc:  # pypdf raises many ad-hoc errors on damaged files
        return Skipped(f"unreadable PDF ({type(exc).__name__})")
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text.strip():
        return Skipped("PDF has no text layer (scanned?)")
    return LoadedDocument(text, False, title or _plain_title(text))
