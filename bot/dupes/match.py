"""Finding repeats: each new message against the earlier messages of the window, then the judge.

Stage one compares vectors (numpy, float16, WINDOW_CHUNK columns at a time)
and keeps each new message's DUP_CANDIDATES most similar earlier messages at
DUP_THRESHOLD or more; stage two, the judge (`bot.dupes.judge`), picks the one
that asks the same question, if any.

Cost as the window grows: a scan compares only the k new messages with the n
messages of the window (n ≈ messages a day × DUP_WINDOW_DAYS), never all pairs.
Each message is normalised and embedded once (`bot.dupes.prepare`); a scan reads
the window's vectors in one join into one float16 matrix (n × 768 bytes for the
384-dimension model) and compares it 4,096 columns at a time with the new rows
that can reach them: O(n) to load plus O(k·n·d) to compare, O(n·d) memory; the judge
reads the words of at most DUP_CANDIDATES pairs per new message.
Measured on 2 cores (benchmarks/dupes.py): see the README's Performance.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np

from bot.cache import embed_many
from bot.chat import ToPlain
from bot.dupes.judge import Verdict, judge
from bot.dupes.normalise import candidate_text, normalize_text
from bot.dupes.prepare import preparation_label, prepare_messages
from bot.dupes.rules import DupRules
from bot.embeddings import Embedder
from bot.store import Message, Store, WindowRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """A later message that repeats an earlier one: their cosine similarity and the judge's verdict."""

    earlier: Message
    later: Message
    score: float
    verdict: Verdict

    def as_dict(self) -> dict[str, object]:
        def side(m: Message) -> dict[str, str]:
            return {"channel": m.channel, "ts": m.ts, "text": m.text}

        return {"earlier": side(self.earlier), "later": side(self.later), "score": round(self.score, 4),
                "judge": self.verdict.as_dict()}


@dataclass
class Findings:
    """What one scan judged: its pairs, and every new message it looked at."""

    pairs: list[Pair] = field(default_factory=list)
    examined: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """The messages a scan compares, oldest first, with their vectors as one float16 matrix.

    Half precision halves the scan's memory (100,000 messages: 74 MB, not 147)
    and moves a similarity by at most 0.001 (2 × 2^-11; 0.0001 measured).
    """

    rows: list[WindowRow]
    vectors: np.ndarray


# Rows converted to float16 at a time while a window is read, and columns
# compared at a time (widened back to float32 for the product).
WINDOW_CHUNK = 4096


@dataclass(frozen=True)
class Candidates:
    """A new message and the earlier ones most like it (DUP_THRESHOLD or above), best first."""

    later: Message
    earlier: list[tuple[Message, float]]


def find_candidates(
    store: Store, embedder: Embedder, rules: DupRules, channels: Collection[str] | None = None, *,
    to_plain: ToPlain,
) -> tuple[list[Message], list[Candidates]]:
    """The unscanned messages, and for each that has any, its DUP_CANDIDATES best earlier matches.

    Stage one of the scan: vector similarity alone, at a threshold loose
    enough to reach honest rewordings; the judge (`bot.dupes.judge`) decides.
    """
    new = store.messages.unscanned_messages(channels)
    if not new:
        return [], []
    start, end = new[0].posted_at - rules.window_seconds, new[-1].posted_at
    label = preparation_label(embedder, rules)
    prepare_messages(store, embedder, rules, store.messages.unprepared_messages(start, end, label, channels),
                     to_plain=to_plain)
    window = _window(store, embedder, rules, store.messages.prepared_window(start, end, label, channels), to_plain)
    flagged = store.messages.flagged_laters()
    by_key = {(m.channel, m.ts): m for m in new}
    judge = [i for i, r in enumerate(window.rows) if (r.channel, r.ts) in by_key and (r.channel, r.ts) not in flagged]
    found = []
    for i, matches in _top_earlier(window, judge, rules):
        earlier = [(message, score) for j, score in matches
                   if (message := store.messages.get_message(window.rows[j].channel, window.rows[j].ts)) is not None]
        if earlier:
            found.append(Candidates(by_key[(window.rows[i].channel, window.rows[i].ts)], earlier))
    return new, found


def find_duplicates(
    store: Store, embedder: Embedder, rules: DupRules, channels: Collection[str] | None = None, *,
    to_plain: ToPlain,
) -> Findings:
    """Pair each unscanned message with the earlier one the judge is surest asks the same thing.

    Writes nothing but the messages' preparation and the embedding cache, so it
    is also the dry run.
    """
    new, found = find_candidates(store, embedder, rules, channels, to_plain=to_plain)
    return Findings([pair for candidates in found if (pair := judged_pair(candidates, to_plain)) is not None], new)


def judged_pair(candidates: Candidates, to_plain: ToPlain) -> Pair | None:
    """The candidate the judge most believes is the same question, or None if it believes none."""
    later = candidates.later
    best: Pair | None = None
    best_score = candidates.earlier[0][1]
    for rank, (earlier, score) in enumerate(candidates.earlier):
        verdict = judge(
            normalize_text(later.text, to_plain), normalize_text(earlier.text, to_plain), score, rank, best_score
        )
        if verdict.same and (best is None or verdict.probability > best.verdict.probability):
            best = Pair(earlier, later, score, verdict)
    return best


def _window(
    store: Store, embedder: Embedder, rules: DupRules, prepared: Iterable[tuple[WindowRow, bytes | None]],
    to_plain: ToPlain,
) -> Window:
    """The prepared rows and their vectors as one matrix; vectors deleted from the cache are embedded again."""
    rows: list[WindowRow] = []
    matrix = bytearray()
    pending: list[bytes] = []
    lost: list[Message] = []
    for row, vector in prepared:
        if vector is not None:
            rows.append(row)
            pending.append(vector)
            if len(pending) == WINDOW_CHUNK:
                matrix += _half(pending)
                pending = []
        elif (message := store.messages.get_message(row.channel, row.ts)) is not None:
            lost.append(message)
    matrix += _half(pending)
    vectors = np.frombuffer(matrix, dtype=np.float16).reshape(len(rows), embedder.dim)
    if not lost:
        return Window(rows, vectors)
    log.warning("dupes: %d message vectors missing from the embedding cache: embedding them again", len(lost))
    texts = {m: t for m in lost if (t := candidate_text(m.text, rules, to_plain)) is not None}
    rows += [WindowRow(m.channel, m.ts, m.thread_ts, m.user, m.posted_at) for m in texts]
    again = embed_many(embedder, store, list(texts.values()), truncate=True)
    vectors = np.vstack([vectors, again.astype(np.float16)])
    order = sorted(range(len(rows)), key=lambda i: (rows[i].posted_at, rows[i].ts))
    return Window([rows[i] for i in order], vectors[order])


def _half(blobs: list[bytes]) -> bytes:
    """float32 vector blobs as one run of float16 bytes."""
    return np.frombuffer(b"".join(blobs), dtype=np.float32).astype(np.float16).tobytes()


def _top_earlier(window: Window, judge: list[int], rules: DupRules) -> Iterable[tuple[int, list[tuple[int, float]]]]:
    """(row, [(earlier row, similarity), ...] best first) for each row in `judge` (ascending) with a match.

    A match is an earlier row at or above DUP_THRESHOLD; each row keeps its
    DUP_CANDIDATES best, for the judge to choose from (a look-alike may score
    above the true repeat). Earlier means before in posting order, within the
    window, outside the row's own thread, and — when DUP_SAME_AUTHOR_MINUTES > 0
    — not the same author re-posting within that many minutes. The window is
    compared WINDOW_CHUNK columns at a time, each chunk only with the judged
    rows that can reach it; only scores above a row's current k-th best are kept.
    """
    if not judge:
        return
    posted = np.array([r.posted_at for r in window.rows])
    family = _codes([(r.channel, r.thread_ts or r.ts) for r in window.rows])
    author = _codes([r.user for r in window.rows])
    span = rules.window_seconds
    same_author = rules.same_author_minutes * 60.0
    rows = np.array(judge)
    questions = window.vectors[rows].astype(np.float32)
    kept = _Kept.empty(len(rows), rules.threshold, rules.candidates)
    for lo in range(0, int(rows[-1]), WINDOW_CHUNK):
        hi = min(lo + WINDOW_CHUNK, int(rows[-1]))
        # the judged rows after the chunk's start whose window reaches back into it
        a = int(np.searchsorted(rows, lo, side="right"))
        b = int(np.searchsorted(posted[rows], posted[hi - 1] + span, side="right"))
        if a >= b:
            continue
        r = rows[a:b]
        allowed = np.arange(lo, hi)[None, :] < r[:, None]
        allowed &= posted[None, lo:hi] >= posted[r, None] - span
        allowed &= family[None, lo:hi] != family[r, None]
        if same_author > 0:
            allowed &= ~((author[None, lo:hi] == author[r, None])
                         & (posted[None, lo:hi] >= posted[r, None] - same_author))
        scores = questions[a:b] @ window.vectors[lo:hi].astype(np.float32).T
        np.copyto(scores, -np.inf, where=~allowed)
        floor = kept.floor[a:b]
        reached = np.flatnonzero(scores.max(axis=1) >= floor)  # most rows reach nothing in most chunks
        hit_row, hit_column = np.nonzero(scores[reached] >= floor[reached, None])
        kept.add(a + reached[hit_row], lo + hit_column, scores[reached[hit_row], hit_column])
    for i, matches in kept.by_row():
        yield int(rows[i]), matches


@dataclass
class _Kept:
    """Each judged row's best matches so far: parallel arrays, at most k per row.

    `floor` is the score a new match must reach: DUP_THRESHOLD, or the row's
    k-th best once it has k, so a chunk's few high scores are all that is kept.
    """

    row: np.ndarray
    column: np.ndarray
    score: np.ndarray
    floor: np.ndarray
    k: int

    @classmethod
    def empty(cls, rows: int, threshold: float, k: int) -> _Kept:
        none = np.empty(0, dtype=np.int64)
        return cls(none, none, np.empty(0, dtype=np.float32), np.full(rows, threshold, dtype=np.float32), k)

    def add(self, row: np.ndarray, column: np.ndarray, score: np.ndarray) -> None:
        if not len(row):
            return
        row, column = np.concatenate([self.row, row]), np.concatenate([self.column, column])
        score = np.concatenate([self.score, score])
        order = np.lexsort((-score, row))
        row, column, score = row[order], column[order], score[order]
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rank = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
        last = rank == self.k - 1
        self.floor[row[last]] = np.maximum(self.floor[row[last]], score[last])
        keep = rank < self.k
        self.row, self.column, self.score = row[keep], column[keep], score[keep]

    def by_row(self) -> Iterable[tuple[int, list[tuple[int, float]]]]:
        """(row, [(column, score), ...] best first), rows ascending."""
        starts = np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1]]) if len(self.row) else []
        for lo, hi in zip(starts, [*starts[1:], len(self.row)]):
            yield int(self.row[lo]), list(zip(self.column[lo:hi].tolist(), self.score[lo:hi].tolist()))


def _codes(keys: list[object]) -> np.ndarray:
    """Small integers standing for `keys`, equal where the keys are equal."""
    seen: dict[object, int] = {}
    return np.array([seen.setdefault(key, len(seen)) for key in keys])
