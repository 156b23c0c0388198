"""Find the knowledge files and turn each into blocks of readable text, or a reason to skip it.

Supported: Markdown (markdown-it-py, MyST included), plain text,
reStructuredText (docutils, Sphinx roles and directives understood), HTML
(visible text only, headings kept; Jinja/Django templates skipped) and PDF (the
text layer). Hidden files and folders are ignored; symlinks that leave the folder are
not followed. A file that cannot be read becomes a `Skipped` with a one-line
reason; nothing here raises for bad content.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

from charset_normalizer import from_bytes

from bot.errors import KbError
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
TOO_LARGE = f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"


@dataclass(frozen=True)
class SourceFile:
    path: Path  # absolute, as found in the folder (a symlink's own path)
    rel: str  # relative to the knowledge folder, with forward slashes
    size: int
    mtime: float
    real: str = ""  # the file itself relative to the folder, through no symlink: what is read ("": rel)
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) at the scan: the read must find this file


@dataclass
class FolderScan:
    """What `walk` found: the files to read, and what it passed over."""

    root: Path  # the knowledge folder, symlinks resolved
    files: list[SourceFile]
    unsupported: dict[str, int]  # extension -> count
    skipped: dict[str, str]  # path -> reason; a folder's path ends in "/"


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


def walk(folder: Path) -> FolderScan:
    """Supported files under `folder`, each real file once, and what was passed over and why.

    The folder is listed through file descriptors, one name at a time, following
    no symlink. A symlink counts only when it leads to a file inside the folder
    that is not already listed under its real path; loops, broken links, links
    that leave the folder or lead to a folder, unreadable folders and names that
    are not UTF-8 are reported in `skipped`. Hidden files and folders are ignored.
    """
    root = folder.resolve()
    scan = FolderScan(root, [], {}, {})
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise KbError(f"cannot read the knowledge folder {root}: {exc.strerror}") from None
    found: list[_Found] = []
    folders = [""]
    try:
        while folders:
            folder_rel = folders.pop()
            try:
                entries = _list_folder(root_fd, folder_rel)
            except OSError as exc:
                scan.skipped[folder_rel + "/"] = f"unreadable folder ({exc.strerror})"
                continue
            subfolders = []
            for name, status in entries:
                rel = f"{folder_rel}/{name}" if folder_rel else name
                if isinstance(status, os.stat_result) and stat.S_ISDIR(status.st_mode):
                    subfolders.append(rel)
                elif entry := _classify(scan, rel, status):
                    found.append(entry)
            folders.extend(reversed(subfolders))
    finally:
        os.close(root_fd)
    scan.files = _each_file_once(root, found, scan.skipped)
    return scan


@dataclass(frozen=True)
class _Found:
    rel: str
    real: str
    status: os.stat_result
    is_link: bool


def _list_folder(root_fd: int, rel: str) -> list[tuple[str, os.stat_result | OSError]]:
    """The visible names in folder `rel`, sorted, each with its own (not followed) status."""
    fd = _open_inside(root_fd, rel, os.O_RDONLY | os.O_DIRECTORY) if rel else os.dup(root_fd)
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, _lstat(entry)) for entry in sorted(entries, key=lambda e: e.name)
                    if not entry.name.startswith(".")]
    finally:
        os.close(fd)


def _lstat(entry: os.DirEntry) -> os.stat_result | OSError:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError as exc:
        return exc


def _classify(scan: FolderScan, rel: str, status: os.stat_result | OSError) -> _Found | None:
    """A file to index, or None when `scan` records it as unsupported or skipped."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        scan.skipped[rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")] = "name is not valid UTF-8"
        return None
    if isinstance(status, OSError):
        scan.skipped[rel] = f"unreadable ({status.strerror})"
        return None
    real, is_link = rel, stat.S_ISLNK(status.st_mode)
    if is_link:
        target = _link_target(scan.root, rel)
        if isinstance(target, str):
            scan.skipped[rel] = target
            return None
        real, status = target
    suffix = PurePosixPath(rel).suffix.lower()
    if suffix not in SUPPORTED:
        scan.unsupported[suffix or "(no extension)"] = scan.unsupported.get(suffix or "(no extension)", 0) + 1
        return None
    if not stat.S_ISREG(status.st_mode):
        scan.skipped[rel] = "not a regular file"
        return None
    return _Found(rel, real, status, is_link)


def _link_target(root: Path, rel: str) -> tuple[str, os.stat_result] | str:
    """Where the symlink `rel` leads, relative to the folder, or why it is not followed."""
    try:
        real = Path(os.path.realpath(root / rel, strict=True))
        status = os.stat(real, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno == errno.ENOENT:
            return "broken symlink (its target does not exist)"
        return f"unreadable symlink ({exc.strerror})"
    if real != root and root not in real.parents:
        return "symlink to outside the knowledge folder (not followed)"
    if stat.S_ISDIR(status.st_mode):
        return "symlink to a folder (not followed)"
    return real.relative_to(root).as_posix(), status


def _each_file_once(root: Path, found: list[_Found], skipped: dict[str, str]) -> list[SourceFile]:
    """One entry per real file: its own path, else the first link to it; the other links are skipped."""
    kept: dict[tuple[int, int], _Found] = {}
    for entry in sorted(found, key=lambda e: e.is_link):  # stable: real paths first, each in walk order
        identity = (entry.status.st_dev, entry.status.st_ino)
        if identity in kept:
            skipped[entry.rel] = f"duplicate of {kept[identity].rel} (a link to the same file)"
        else:
            kept[identity] = entry
    files = []
    for entry in found:
        identity = (entry.status.st_dev, entry.status.st_ino)
        if kept[identity] is entry:
            files.append(SourceFile(
                root / entry.rel, entry.rel, entry.status.st_size, entry.status.st_mtime, entry.real, identity
            ))
    return files


def _open_inside(root_fd: int, rel: str, flags: int) -> int:
    """Open `rel` below the folder one name at a time, following no symlink on the way.

    Whatever was renamed or linked since the scan, what this opens is inside the folder.
    """
    *folders, last = rel.split("/")
    if {"", ".", ".."} & {*folders, last}:
        raise ValueError(f"not a path inside the folder: {rel!r}")
    fd = root_fd
    try:
        for name in folders:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            if fd != root_fd:
                os.close(fd)
            fd = inner
        return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def iter_loaded(files: list[SourceFile], root: Path) -> Iterator[tuple[SourceFile, bytes | Skipped]]:
    """Each file's bytes, or why it was not read (gone or replaced since the scan, too large, no permission)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for source in files:
            yield source, _read(root_fd, source)
    finally:
        os.close(root_fd)


def _read(root_fd: int, source: SourceFile) -> bytes | Skipped:
    """The very file the scan found, opened inside the folder through no symlink, up to the size limit.

    A file swapped for a symlink (or for another file) after the scan is not read:
    checking a path and then opening it would read whatever it points to by then.
    """
    try:
        fd = _open_inside(root_fd, source.real or source.rel, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skipped("replaced by a symlink since the folder scan: not read")
        if exc.errno == errno.ENOTDIR:  # what O_DIRECTORY | O_NOFOLLOW says of a symlink
            return Skipped("a folder on its path was replaced since the folder scan: not read")
        return Skipped(f"unreadable ({exc.strerror or type(exc).__name__})")
    try:
        with open(fd, "rb") as handle:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode) or (status.st_dev, status.st_ino) != source.identity:
                return Skipped("replaced since the folder scan: not read")
            if status.st_size > MAX_FILE_BYTES:
                return Skipped(TOO_LARGE)
            data = handle.read(MAX_FILE_BYTES + 1)  # it may have grown since the fstat
    except OSError as exc:
        return Skipped(f"unreadable ({exc.strerror or type(exc).__name__})")
    return Skipped(TOO_LARGE) if len(data) > MAX_FILE_BYTES else data
