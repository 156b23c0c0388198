"""Knowledge gaps: the questions the folder did not answer, grouped by meaning.

A question counts as a gap when its answer was not confident or someone voted
it "Not helpful" (`include_all`: every question, i.e. what people ask most).
Questions are grouped by their stored vectors (the embedding cache, filled
when they were recorded, so nothing is embedded here) with average-linkage
clustering on cosine similarity: two groups merge while their questions are,
on average, at least GROUP_SIMILARITY alike. Each group names the file its
centre is closest to, where an answer would likely belong.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from bot.chat import ChatPort
from bot.questions import DAY
from bot.store import QuestionRecord, Store
from bot.vector_index import nearest

# Average cosine at which two groups of questions are the same topic. On the 40 questions in 6 topics of
# tests/test_gaps.py (bundled model): 0.1 merges topics (purity 0.825), 0.15-0.3 keeps them apart (purity
# 1.0) with 95%-70% of each topic in its largest group, 0.45 splits them (47%). 0.2: the middle, 87.5%.
GROUP_SIMILARITY = 0.2
# The newest questions grouped (clustering is quadratic in memory: 3000 -> 36 MB of similarities).
MAX_QUESTIONS = 3000
EXAMPLES = 3


@dataclass(frozen=True)
class Gap:
    """A group of questions alike in meaning."""

    count: int  # questions in the group
    askers: int  # distinct people who asked them (hashed; questions from the CLI count as none)
    examples: list[str]  # up to three different phrasings, most typical first
    closest_path: str | None  # the file whose passage is nearest the group's centre
    closest_score: float | None  # that passage's cosine similarity to the centre
    question_ids: list[int]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def gap_questions(store: Store, *, days: int, include_all: bool, now: float | None = None) -> list[QuestionRecord]:
    """The questions of the last `days` days that were not answered well (every one with `include_all`)."""
    since = (time.time() if now is None else now) - days * DAY
    asked = store.questions.since(since)
    return asked if include_all else [q for q in asked if not q.confident or q.not_helpful > 0]


def find_gaps(store: Store, *, days: int = 30, include_all: bool = False, now: float | None = None) -> list[Gap]:
    """The gaps of the last `days` days, largest group first."""
    gen = store.active_generation()
    questions = [
        q for q in gap_questions(store, days=days, include_all=include_all, now=now)
        if gen is None or q.model == gen.model
    ][-MAX_QUESTIONS:]
    if not questions:
        return []
    found = store.questions.vectors(questions[0].model, [q.vector_key for q in questions])
    questions = [q for q in questions if q.vector_key in found]
    vectors = _unit(np.vstack([found[q.vector_key] for q in questions])) if questions else np.zeros((0, 1))
    gaps = [_gap(store, [questions[i] for i in group], vectors[group]) for group in cluster(vectors)]
    return sorted(gaps, key=lambda g: (-g.count, -g.askers, g.question_ids[0]))


def _gap(store: Store, questions: list[QuestionRecord], vectors: np.ndarray) -> Gap:
    centre = _unit(vectors.mean(axis=0, keepdims=True))[0]
    typical = np.argsort(-(vectors @ centre), kind="stable")
    examples = list(dict.fromkeys(questions[i].text for i in typical))[:EXAMPLES]
    path, score = _closest_file(store, centre)
    askers = {q.asker for q in questions if q.asker}
    return Gap(len(questions), len(askers), examples, path, score, sorted(q.id for q in questions))


def _closest_file(store: Store, centre: np.ndarray) -> tuple[str | None, float | None]:
    gen = store.active_generation()
    if gen is None or gen.dim != len(centre):
        return None, None
    best = nearest(store, gen, centre.astype(np.float32), 1)
    if not best:
        return None, None
    chunk_id, score = best[0]
    row = store.chunks_by_id([chunk_id]).get(chunk_id)
    return (row.path, round(float(score), 3)) if row else (None, None)


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def cluster(unit: np.ndarray, threshold: float = GROUP_SIMILARITY) -> list[list[int]]:
    """Average-linkage groups of unit vectors (row indices), merged while the groups' mean cosine
    is at least `threshold`. Each row keeps its best partner, so a merge costs O(n), not O(n²)."""
    n = len(unit)
    if n == 0:
        return []
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    partner = sim.argmax(axis=1)
    while True:
        best = sim[np.arange(n), partner]
        i = int(best.argmax())
        j = int(partner[i])
        if not best[i] >= threshold:
            break
        merged = (sizes[i] * sim[i] + sizes[j] * sim[j]) / (sizes[i] + sizes[j])
        sim[i], sim[:, i] = merged, merged
        sim[j], sim[:, j] = -np.inf, -np.inf
        sim[i, i] = -np.inf
        sizes[i] += sizes[j]
        members[i] += members[j]
        members[j] = []
        stale = (partner == i) | (partner == j)
        stale[i] = True
        partner[stale] = sim[stale].argmax(axis=1)
        better = sim[:, i] > sim[np.arange(n), partner]
        partner[better] = i
    return [sorted(m) for m in members if m]


def format_gaps(gaps: list[Gap], *, days: int, include_all: bool) -> str:
    """The report as people read it, in a shell or a Slack channel."""
    what = "asked" if include_all else "without a good answer"
    if not gaps:
        return f"No questions {what} in the last {days} days."
    total = sum(g.count for g in gaps)
    lines = [
        f"{total} question{'s' * (total != 1)} {what} in the last {days} days, "
        f"in {len(gaps)} group{'s' * (len(gaps) != 1)}:"
    ]
    for n, gap in enumerate(gaps, 1):
        people = f", {gap.askers} {'person' if gap.askers == 1 else 'people'}" if gap.askers else ""
        lines.append(f"{n}. {gap.count} asked{people}")
        lines.extend(f"   “{text}”" for text in gap.examples)
        if gap.closest_path:
            lines.append(f"   closest file: {gap.closest_path} (similarity {gap.closest_score:.2f})")
    return "\n".join(lines)


REPORT_DAYS = 30  # the scheduled post covers what `kb-bot gaps` shows by default
_REPORTED = "gaps_reported_through"  # the newest question id the last post covered


def post_gaps_report(store: Store, chat: ChatPort, channel: str, now: float | None = None) -> bool:
    """Post the gaps report to `channel` when it holds a question no earlier post covered; True if posted."""
    gaps = find_gaps(store, days=REPORT_DAYS, now=now)
    newest = max((i for g in gaps for i in g.question_ids), default=0)
    if newest <= int(store.questions.mark(_REPORTED) or 0):
        return False
    chat.post(channel, format_gaps(gaps, days=REPORT_DAYS, include_all=False))
    store.questions.set_mark(_REPORTED, str(newest))
    return True
