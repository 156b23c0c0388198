"""Find the knowledge files and turn each into blocks of readable text, or a reason to skip it.

`folder`: which files to read, read safely (hidden files ignored, symlinks that
leave the folder not followed). `formats`: Markdown (MyST included), plain
text, reStructuredText, HTML and PDF into blocks. A file that cannot be read
becomes a `Skipped` with a one-line reason; nothing here raises for bad content.
"""

from bot.loaders.folder import (
    MAX_FILE_BYTES,
    SUPPORTED,
    TOO_LARGE,
    FolderScan,
    Skipped,
    SourceFile,
    iter_loaded,
    sha256_bytes,
    walk,
)
from bot.loaders.formats import LoadedDocument, decode_text, html_to_markdown, load

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED",
    "TOO_LARGE",
    "FolderScan",
    "LoadedDocument",
    "Skipped",
    "SourceFile",
    "decode_text",
    "html_to_markdown",
    "iter_loaded",
    "load",
    "sha256_bytes",
    "walk",
]
