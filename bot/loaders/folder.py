"""Which files of the knowledge folder to read, and reading each one safely.

Hidden files and folders are ignored; symlinks that leave the folder are not
followed; a file swapped after the scan is not read. A file that cannot be read
becomes a `Skipped` with a one-line reason; nothing here raises for bad content.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot.errors import KbError

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
