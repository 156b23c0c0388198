"""The records a store reads and writes, whatever database keeps them.

Plain frozen dataclasses with no database names in them (no table, no
column), so the rest of kb-bot and every backend share one vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.errors import EmbeddingError


@dataclass(frozen=True)
class Generation:
    """One embedding model's index: its documents, chunks, vectors and keyword index.

    Vectors of different models never meet: a model change builds a new
    generation beside the active one (`status` 'building'), then swaps them.
    `status` is 'building', 'active' or 'retired'; `knowledge_dir` is the folder
    it was built from. `id`s increase and are never reused.
    """

    id: int
    model: str
    dim: int
    status: str
    knowledge_dir: str


@dataclass(frozen=True)
class DocumentRecord:
    """A file as the index last saw it: what an incremental run compares the folder with."""

    id: int
    path: str
    sha256: str
    size: int
    mtime: float


@dataclass(frozen=True)
class ChunkRow:
    """A stored passage with its file's path and title, as search shows it."""

    id: int
    path: str
    title: str | None
    heading: str | None
    text: str
    start_line: int
    end_line: int


def cache_key(model: str, text: str) -> bytes:
    """The embedding cache key: sha256 of model + '::' + text."""
    return hashlib.sha256(f"{model}::{text}".encode()).digest()


@dataclass(frozen=True)
class Message:
    """A channel message as the duplicate scan sees it (`posted_at`: seconds since the epoch)."""

    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    text: str
    posted_at: float


@dataclass(frozen=True)
class WindowRow:
    """A prepared message worth judging: what a scan compares it by."""

    channel: str
    ts: str
    thread_ts: str | None
    user: str | None
    posted_at: float


@dataclass(frozen=True)
class Claim:
    """A flag claimed for `later` (it repeats `earlier`) that the chat never confirmed posting."""

    later: Message
    earlier: Message
    score: float
    action: str  # DUP_ACTION when it was claimed: thread, digest or both
    claimed_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Claim:
        """A row of the stores' claim query: the later message's six fields, the earlier's, then the claim's."""
        return cls(Message(*row[:6]), Message(*row[6:12]), *row[12:])


@dataclass(frozen=True)
class Feedback:
    """A flagged pair someone said is not the same question (`bot.dupes.feedback`)."""

    later_channel: str
    later_ts: str
    earlier_channel: str
    earlier_ts: str
    later_text: str
    earlier_text: str
    score: float
    reported_by: str
    reported_at: float

    def as_dict(self) -> dict[str, object]:
        """One training row: the pair, labelled not the same question."""
        return {
            "later": {"channel": self.later_channel, "ts": self.later_ts, "text": self.later_text},
            "earlier": {"channel": self.earlier_channel, "ts": self.earlier_ts, "text": self.earlier_text},
            "score": round(self.score, 4), "same": False,
            "reported_by": self.reported_by, "reported_at": self.reported_at,
        }


def check_vectors(gen: Generation, chunks: Sized, vectors: np.ndarray) -> None:
    """Refuse, before any write, vectors that don't pair one-to-one with the chunks or don't fit the generation."""
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
    if len(vectors) and vectors.shape[1] != gen.dim:
        raise EmbeddingError(
            f"the embedder returned {vectors.shape[1]}-dimensional vectors for an index of {gen.dim}: "
            "run `kb-bot index --full`"
        )


@dataclass(frozen=True)
class QuestionRecord:
    """A question people asked (`bot.questions`), as the gaps report and the map read it.

    `vector_key` is its embedding-cache key under `model`; `asker` a salted hash;
    `sources` what the answer showed ({"path", "start_line", "end_line", "score"}).
    """

    id: int
    text: str
    model: str
    vector_key: bytes
    asked_at: float
    channel: str | None
    asker: str | None
    confident: bool
    sources: list[dict[str, object]]
    not_helpful: int  # "Not helpful" votes on its answer
    helpful: int

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> QuestionRecord:
        """A row of the stores' question query (same columns in both backends): bytes, bool and JSON restored."""
        *head, key, asked_at, channel, asker, confident, sources, not_helpful, helpful = row
        return cls(*head, bytes(key), asked_at, channel, asker, bool(confident), json.loads(sources), not_helpful, helpful)
