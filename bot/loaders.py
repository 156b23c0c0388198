"""Find the knowledge files and turn each into blocks of readable text, or a reason to skip it.

Supported: Markdown (markdown-it-py, MyST included), plain text,
reStructuredText (docutils, Sphinx roles and directives understood), HTML
(visible text only, headings kept; Jinja/Django templates skipped) and PDF (the
text layer). Hidden files and folders are ignored; symlinks that leave the folder are
not followed. A file that cannot be read becomes a `Skipped` with a one-line
reason; nothing here raises for bad content.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from charset_normalizer import from_bytes

from bot.parsing import Block, joined_text, text_blocks
from bot.parsing.markdown import parse_markdown
from bot.parsing.rst import parse_rst

MARKDOWN = {".md", ".markdown"}
PLAIN = {".txt", ".text"}
RST = {".rst"}
HTML = {".html", ".htm"}
PDF = {".pdf"}
SUPPORTED = MARKDOWN | PLAIN | RST | HTML | PDF

MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    path: Path  # absolute
    rel: str  # relative to the knowledge folder, with forward slashes
    size: int
    mtime: float


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


@dataclass(frozen=True)
class Skipped:
    reason: str


def walk(folder: Path) -> tuple[list[SourceFile], dict[str, int]]:
    """Supported files under `folder`, plus counts of unsupported types skipped."""
    root = folder.resolve()
    found: list[SourceFile] = []
    unsupported: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and _inside(Path(dirpath) / d, root)
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if not _inside(path, root) or not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix not in SUPPORTED:
                unsupported[suffix or "(no extension)"] = unsupported.get(suffix or "(no extension)", 0) + 1
                continue
            stat = path.stat()
            found.append(SourceFile(path, path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime))
    # os.walk does not descend into symlinked folders, but a symlinked folder
    # that stays inside the tree is simply reached through its real path.
    return found, unsupported


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(source: SourceFile, data: bytes) -> LoadedDocument | Skipped:
    """Turn a file's bytes into text ready for chunking."""
    suffix = source.path.suffix.lower()
    if not data.strip():
        return Skipped("empty file")
    if len(data) > MAX_FILE_BYTES:
        return Skipped(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
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
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return Skipped("encrypted PDF")
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


def iter_loaded(files: list[SourceFile]) -> Iterator[tuple[SourceFile, bytes | Skipped]]:
    """Each file's bytes, or why it could not be read (deleted meanwhile, no permission)."""
    for source in files:
        try:
            yield source, source.path.read_bytes()
        except OSError as exc:
            yield source, Skipped(f"unreadable ({exc.strerror or type(exc).__name__})")
