"""Measure the duplicate scan on a labelled message stream (tests/data/dupes.jsonl).

The rows go through the real scan's first stage (`find_candidates`:
normalisation, candidate filter, the window's vectors, each later message's
best earlier matches) in a throw-away database, so the numbers are the
product's. Two deciders are scored on the same candidates: threshold-only
(the old scan: the best match, if its similarity reaches a threshold) and the
judge (`bot.dupes.judge`). Used by tests/test_dupes_quality.py and
scripts/fit_dupe_judge.py.

A decision is "flag later message L against earlier E". Precision: decisions
where E is in L's `group`. Recall: of the later messages with an earlier
same-group message worth judging (a repeat), those flagged against one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bot.dupes.judge import BIAS, CUT, WEIGHTS, Evidence, evidence, probability
from bot.dupes.match import find_candidates
from bot.dupes.normalise import candidate_text, normalize_text
from bot.dupes.rules import DupRules
from bot.embeddings import Embedder
from bot.settings import Settings
from bot.slack.format import from_slack  # the labelled stream is Slack messages
from bot.store import Store

STREAM_START = 1_717_000_000  # the first row's posting time; rows are 10 minutes apart


@dataclass(frozen=True)
class Candidate:
    row: dict
    similarity: float
    evidence: Evidence


@dataclass(frozen=True)
class Case:
    """A later message worth judging and its earlier candidates, best similarity first."""

    row: dict
    candidates: list[Candidate]

    def choice(self, decide: Callable[[Candidate], float | None]) -> Candidate | None:
        """The candidate `decide` flags this message against: its highest-scoring one, if any scores."""
        scored = [(score, c) for c in self.candidates if (score := decide(c)) is not None]
        return max(scored, key=lambda sc: sc[0])[1] if scored else None


@dataclass(frozen=True)
class Stream:
    cases: list[Case]
    repeats: list[dict]  # later messages worth judging with an earlier same-group one


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scan_stream(rows: Sequence[dict], store: Store, embedder: Embedder, settings: Settings) -> Stream:
    """Record `rows` (posting order) in an empty store and collect every later message's candidates."""
    rules = DupRules.from_settings(settings)
    by_key = {}
    for i, row in enumerate(rows):
        ts = f"{STREAM_START + i * 600}.000100"
        by_key[(row["channel"], ts)] = row
        store.messages.record_message(channel=row["channel"], ts=ts, user=row["user"], text=row["text"])
    _, found = find_candidates(store, embedder, rules, to_plain=from_slack)
    cases = []
    for found_one in found:
        later = normalize_text(found_one.later.text, from_slack)
        best = found_one.earlier[0][1]
        cases.append(Case(by_key[(found_one.later.channel, found_one.later.ts)], [
            Candidate(by_key[(m.channel, m.ts)], score,
                      evidence(later, normalize_text(m.text, from_slack), score, rank, best))
            for rank, (m, score) in enumerate(found_one.earlier)
        ]))
    seen: set[str] = set()
    repeats = []
    for row in rows:
        if candidate_text(row["text"], rules, from_slack) is None:
            continue  # too short, emoji or link only: never judged
        if row["group"] in seen:
            repeats.append(row)
        seen.add(row["group"])
    return Stream(cases, repeats)


def with_values(stream: Stream, added: Callable[[Case, Candidate], tuple[float, ...]]) -> Stream:
    """The stream with `added`'s values appended to every candidate's features."""

    def more(case: Case, c: Candidate) -> Candidate:
        return replace(c, evidence=replace(c.evidence, values=(*c.evidence.values, *added(case, c))))

    return Stream([replace(case, candidates=[more(case, c) for c in case.candidates]) for case in stream.cases],
                  stream.repeats)


def threshold_only(threshold: float) -> Callable[[Candidate], float | None]:
    """The old scan: the most similar candidate, if it reaches `threshold`."""
    return lambda c: c.similarity if c.similarity >= threshold else None


def judged(
    weights: Sequence[float] = WEIGHTS, bias: float = BIAS, cut: float = CUT
) -> Callable[[Candidate], float | None]:
    """The judge (with these constants): the candidate it believes most, if it believes any."""

    def decide(c: Candidate) -> float | None:
        p = probability(c.evidence.values, weights, bias)
        return p if p >= cut else None

    return decide


@dataclass(frozen=True)
class Tally:
    """A decider's flags over some later messages: how many, how many right, of how many repeats."""

    flags: int
    right: int
    repeats: int

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.flags + other.flags, self.right + other.right, self.repeats + other.repeats)

    @property
    def precision(self) -> float:
        return self.right / self.flags if self.flags else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.repeats if self.repeats else 1.0


def tally(stream: Stream, decide: Callable[[Candidate], float | None], counted: Callable[[dict], bool]) -> Tally:
    """What `decide` flags among the later messages `counted` keeps."""
    flags = [(case.row, chosen.row) for case in stream.cases if counted(case.row)
             if (chosen := case.choice(decide)) is not None]
    right = sum(later["group"] == earlier["group"] for later, earlier in flags)
    return Tally(len(flags), right, sum(counted(r) for r in stream.repeats))


@dataclass(frozen=True)
class Mistake:
    """A decider's wrong call on one later message, to read before adding a feature to the judge."""

    kind: str  # "false flag": flagged against another question; "missed": a repeat left unflagged
    case: Case
    candidate: Candidate  # what was flagged, or the missed repeat's most similar same-group candidate


def mistakes(stream: Stream, decide: Callable[[Candidate], float | None], counted: Callable[[dict], bool]
             ) -> list[Mistake]:
    """Every wrong call `decide` makes among the later messages `counted` keeps.

    A repeat whose earlier message is not among its candidates is no judge's
    mistake (stage one missed it) and is left out.
    """
    found = []
    for case in stream.cases:
        if not counted(case.row):
            continue
        chosen = case.choice(decide)
        same = [c for c in case.candidates if c.row["group"] == case.row["group"]]
        if chosen is not None and chosen.row["group"] != case.row["group"]:
            found.append(Mistake("false flag", case, chosen))
        elif chosen is None and same:
            found.append(Mistake("missed", case, same[0]))
    return found


def score(stream: Stream, decide: Callable[[Candidate], float | None], split: str | None = None) -> tuple[float, float]:
    """(precision, recall) of `decide` over the later messages of `split` (all when None)."""
    counts = tally(stream, decide, lambda row: split is None or row.get("split") == split)
    return counts.precision, counts.recall


def f_half(precision: float, recall: float) -> float:
    """F0.5: precision counts twice as much as recall (a wrong public reply costs more than a miss)."""
    return 1.25 * precision * recall / (0.25 * precision + recall) if precision + recall else 0.0
