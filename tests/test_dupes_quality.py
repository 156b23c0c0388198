"""How well the duplicate scan decides, measured with the real bundled model.

tests/data/dupes.jsonl is a Slack-like stream (file order = posting order):
messages of one `group` ask the same thing; `hard_negative_of` marks look-alikes
that ask something else; `split` is train (what scripts/fit_dupe_judge.py fits
the judge on) or heldout (never used to choose anything). The rows go through
the real scan's first stage (`bot.dupes.evaluate.scan_stream`), and two deciders
are scored on the same candidates in the same run: threshold-only (the scan
before the judge: the best match at DUP_THRESHOLD 0.69) and the judge.

Run `pytest tests/test_dupes_quality.py -s` to see the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.dupes.evaluate import Stream, judged, read_rows, scan_stream, score, threshold_only
from bot.dupes.judge import judge
from bot.dupes.normalise import normalize_text
from bot.embeddings import LocalEmbedder
from bot.settings import Settings
from bot.slack.format import from_slack
from bot.store import open_store
from tests.conftest import DATA, SHARED_EVAL, make_settings

DEFAULT = Settings()
BEFORE = 0.69  # DUP_THRESHOLD of the threshold-only scan
PRECISION_FLOOR = 0.82  # held-out, measured 0.865 (fp32: 0.849; threshold-only 0.69: 0.444); issue 17 asks 0.97
RECALL_FLOOR = 0.72  # held-out, measured 0.750 (threshold-only 0.69: 0.600); issue 17 asks 0.95
STS_TEST = SHARED_EVAL / "stsbenchmark" / "sts-test.csv"
STS_FLOOR = 0.80  # measured 0.818 (the fp32 variant: 0.820); published 0.820 for all-MiniLM-L6-v2
STS_JUDGE_PRECISION_FLOOR = 0.93  # measured 0.952 (threshold-only 0.69: 0.878)
STS_JUDGE_RECALL_FLOOR = 0.39  # measured 0.411 (fp32: 0.414; threshold-only 0.69: 0.876): STS pairs are mostly not questions


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Stream:
    settings = make_settings(tmp_path_factory.mktemp("dupes"))
    with open_store(settings.db_path) as store:
        return scan_stream(read_rows(DATA / "dupes.jsonl"), store, embedder, settings)


@pytest.mark.quality
def test_the_judge_beats_threshold_only_on_held_out(stream: Stream) -> None:
    print(f"\n{len(stream.cases)} later messages with candidates, {len(stream.repeats)} true repeats")
    print("| decider | split | precision | recall |\n|---|---|---|---|")
    results = {}
    for name, decide in ((f"threshold-only {BEFORE}", threshold_only(BEFORE)), ("candidates + judge", judged())):
        for split in ("train", "heldout"):
            results[name, split] = score(stream, decide, split)
            print(f"| {name} | {split} | {results[name, split][0]:.3f} | {results[name, split][1]:.3f} |")
    precision, recall = results["candidates + judge", "heldout"]
    before_precision, before_recall = results[f"threshold-only {BEFORE}", "heldout"]
    assert precision >= PRECISION_FLOOR and recall >= RECALL_FLOOR
    assert precision > before_precision + 0.2 and recall >= before_recall


def test_the_default_threshold_reaches_the_train_repeats(stream: Stream) -> None:
    """DUP_THRESHOLD only gathers candidates: 99% of train repeats must reach an earlier same-group one."""
    reached = {case.row["id"] for case in stream.cases
               if any(c.row["group"] == case.row["group"] for c in case.candidates)}
    train = [r for r in stream.repeats if r["split"] == "train"]
    assert sum(r["id"] in reached for r in train) >= 0.99 * len(train)
    assert DEFAULT.dup_threshold < BEFORE


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (what Spearman needs)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    result = np.empty(len(values))
    for start, end in zip(starts, ends):
        result[order[start:end]] = (start + end + 1) / 2
    return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def test_ranks_average_ties() -> None:
    assert ranks(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 90.0])) == pytest.approx(1.0)


def read_sts(path: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Gold scores and sentence pairs. Split on tabs only: quotes are literal text, and
    some lines carry extra trailing columns (source notes) after the two sentences."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return np.array([float(r[4]) for r in rows]), [r[5] for r in rows], [r[6] for r in rows]


@pytest.fixture(scope="module")
def sts(embedder: LocalEmbedder) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    if not STS_TEST.is_file():
        pytest.skip(f"STS Benchmark not found at {STS_TEST}")
    gold, first, second = read_sts(STS_TEST)
    similarity = (embedder.embed(first, truncate=True) * embedder.embed(second, truncate=True)).sum(axis=1)
    return gold, first, second, similarity


@pytest.mark.quality
def test_sts_benchmark_spearman(sts: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> None:
    gold, _, _, similarity = sts
    assert len(gold) == 1379
    rho = spearman(similarity, gold)
    print(f"\nSTS Benchmark test: Spearman {rho:.4f} over {len(gold)} pairs (published 0.820)")
    assert rho >= STS_FLOOR


@pytest.mark.quality
def test_sts_pairs_as_an_outside_check_of_the_judge(sts: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> None:
    """Gold >= 4 as duplicates, <= 2 as not (the middle left out); the judge sees only what reaches DUP_THRESHOLD."""
    gold, first, second, similarity = sts
    kept = (gold >= 4) | (gold <= 2)
    same = gold[kept] >= 4
    plain = lambda text: normalize_text(text, from_slack)  # noqa: E731
    flagged = np.array([s >= DEFAULT.dup_threshold and judge(plain(a), plain(b), float(s)).same
                        for a, b, s in zip(np.array(first)[kept], np.array(second)[kept], similarity[kept])])
    precision, recall = (flagged & same).sum() / flagged.sum(), (flagged & same).sum() / same.sum()
    print(f"\nSTS test pairs, judge: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= STS_JUDGE_PRECISION_FLOOR and recall >= STS_JUDGE_RECALL_FLOOR
