#!/usr/bin/env python3
"""Fit the duplicate judge (bot/dupes/judge.py) on the train split, report on held-out.

    .venv/bin/python scripts/fit_dupe_judge.py [--data tests/data/dupes.jsonl] [--sts PATH] [--errors]
        [--pair-scores FILE --pair-model ONNX | --dump-pairs FILE]

1. Runs the scan's first stage (real store, real bundled model) over the whole
   labelled stream at a low similarity (0.30), keeping DUP_CANDIDATES matches
   per later message.
2. Candidate threshold: the highest of 0.30, 0.35, … that still reaches an
   earlier same-group message for 99% of the train repeats (DUP_THRESHOLD).
3. Logistic regression (Newton's method, a small L2 penalty, classes weighted
   to count equally) on the train later messages' candidate pairs: label 1
   when both are in one group.
4. Cut: cross-validated on train (FOLDS folds by repeat group, SHUFFLES fold
   assignments: each fold's decisions made by a model fitted on the others), the lowest probability
   whose pooled decisions reach PRECISION at a recall of at least MIN_RECALL
   (a judge that stays silent is precise and useless); if none does, the one with the best
   pooled F0.5 (precision counted twice: a wrong public flag costs more than a
   miss). A cut picked on the decisions of the model that saw them would
   promise more precision than new messages get. `--errors` prints every
   out-of-fold train error at that cut (first fold assignment): the pairs to
   read before designing a feature, without looking at held-out.
5. Prints the constants to paste into bot/dupes/judge.py and settings.py, then
   held-out precision/recall for the judge and for threshold-only (0.69, the
   old default, and the threshold best on train), the candidate recall (the
   share of repeats whose earlier message reaches the judge at all: what no
   judge can exceed), and an outside check on the STS Benchmark test pairs
   (gold >= 4 duplicates, <= 2 not; skipped if absent).
6. `--pair-scores FILE --pair-model ONNX` (scripts/train_pair_model.py's
   output): also the pair model alone (its cut chosen on its out-of-fold train
   scores) and the judge refitted with the pair model's probability as one
   more feature, in the same table and STS check. `--dump-pairs FILE` writes
   the candidate pairs that script trains on, and stops.

Nothing here looks at held-out rows before the constants are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pair_model import PairModel, pair_probability  # noqa: E402  # scripts/pair_model.py

from bot.dupes.evaluate import (  # noqa: E402
    Candidate,
    Stream,
    Tally,
    f_half,
    judged,
    mistakes,
    read_rows,
    scan_stream,
    score,
    tally,
    threshold_only,
    with_values,
)
from bot.dupes.judge import FEATURES, evidence, probability  # noqa: E402
from bot.dupes.normalise import normalize_text  # noqa: E402
from bot.embeddings import LocalEmbedder  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.slack.format import from_slack  # noqa: E402
from bot.store import open_configured_store  # noqa: E402

OLD_THRESHOLD = 0.69  # the threshold-only scan's default before the judge
LOWEST = 0.30
CUTS = np.round(np.arange(0.05, 0.996, 0.005), 3)
PRECISION = 0.97  # what the cut aims for on train (cross-validated): a wrong public flag costs trust
MIN_RECALL = 0.5
FOLDS = 5
SHUFFLES = 5  # fold assignments pooled: one assignment's curve is too jumpy to pick a cut from
SEED = 17
SWEEP = np.round(np.arange(0.50, 0.951, 0.01), 2)
L2 = 0.1
JudgeSays = Callable[[str, str, float, float], bool]  # later, earlier, similarity, pair model probability


def candidate_threshold(stream: Stream) -> float:
    """The highest threshold (0.05 steps) at which 99% of train repeats still reach a same-group candidate."""
    best = {case.row["id"]: max((c.similarity for c in case.candidates if c.row["group"] == case.row["group"]),
                                default=-1.0) for case in stream.cases}
    reach = np.array([best.get(r["id"], -1.0) for r in stream.repeats if r["split"] == "train"])
    return float(max(t for t in np.arange(LOWEST, 0.9, 0.05) if (reach >= t - 1e-9).mean() >= 0.99).round(2))


def above(stream: Stream, threshold: float) -> Stream:
    cases = [replace(case, candidates=[c for c in case.candidates if c.similarity >= threshold])
             for case in stream.cases]
    return Stream([case for case in cases if case.candidates], stream.repeats)


def fit(stream: Stream, keep: Callable[[dict], bool]) -> tuple[np.ndarray, float]:
    """Logistic regression on the candidate pairs of the later messages `keep` keeps: (weights, bias)."""
    pairs = [(c.evidence.values, c.row["group"] == case.row["group"])
             for case in stream.cases if keep(case.row) for c in case.candidates]
    x = np.array([[1.0, *values] for values, _ in pairs])
    y = np.array([float(label) for _, label in pairs])
    balance = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    w = np.zeros(x.shape[1])
    penalty = np.diag([0.0] + [L2] * (x.shape[1] - 1))
    for _ in range(100):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (balance * p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, x.T @ (balance * (y - p)) - penalty @ w)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


FoldModel = tuple[Callable[[dict], bool], np.ndarray, float]  # a fold's rows, and the model fitted without them


def out_of_fold(stream: Stream, shuffles: int = SHUFFLES) -> tuple[dict[float, Tally], list[FoldModel]]:
    """Each cut's train decisions pooled over `shuffles` fold assignments by repeat group, every fold decided
    by a model fitted on the other folds; and the first assignment's fold models (for --errors)."""
    groups = sorted({case.row["group"] for case in stream.cases if case.row["split"] == "train"})
    pooled = dict.fromkeys(CUTS, Tally(0, 0, 0))
    first: list[FoldModel] = []
    for shuffle in np.random.default_rng(SEED).permuted(np.tile(np.arange(len(groups)), (shuffles, 1)), axis=1):
        fold_of = {groups[i]: position % FOLDS for position, i in enumerate(shuffle)}
        for fold in range(FOLDS):
            def inside(row: dict, fold_of: dict = fold_of, fold: int = fold) -> bool:
                return row["split"] == "train" and fold_of.get(row["group"], -1) == fold

            weights, bias = fit(stream, lambda row, inside=inside: row["split"] == "train" and not inside(row))
            if len(first) < FOLDS:
                first.append((inside, weights, bias))
            for cut in CUTS:
                pooled[cut] += tally(stream, judged(weights, bias, cut), inside)
    return pooled, first


def best_f_half(pooled: dict[float, Tally]) -> float:
    return max(CUTS, key=lambda c: f_half(pooled[c].precision, pooled[c].recall))


def cross_validated_cut(stream: Stream, show_errors: bool = False) -> float:
    """The cut `chosen_cut` picks from the pooled out-of-fold train decisions."""
    pooled, first = out_of_fold(stream)
    cut = chosen_cut(pooled, f"cross-validated on train ({SHUFFLES}x{FOLDS} folds)")
    if show_errors:
        print_errors(stream, first, cut)
    return cut


def chosen_cut(pooled: dict[float, Tally], how: str) -> float:
    """The lowest cut whose train decisions reach PRECISION and MIN_RECALL (else the best F0.5)."""
    reached = [cut for cut in CUTS if pooled[cut].precision >= PRECISION and pooled[cut].recall >= MIN_RECALL]
    cut = min(reached) if reached else best_f_half(pooled)
    print(f"{how}: precision {PRECISION} {'reached' if reached else 'not reached, best F0.5'} at cut {cut}: "
          f"precision {pooled[cut].precision:.3f}, recall {pooled[cut].recall:.3f}")
    return float(cut)


def print_errors(stream: Stream, models: list[FoldModel], cut: float) -> None:
    """Each fold's wrong calls by the model fitted without it: what the judge cannot yet tell apart."""
    found = [(m, weights, bias) for inside, weights, bias in models
             for m in mistakes(stream, judged(weights, bias, cut), inside)]
    print(f"\n{len(found)} out-of-fold train errors at cut {cut} (first fold assignment):")
    for m, weights, bias in sorted(found, key=lambda f: (f[0].kind, f[0].case.row["id"])):
        p = probability(m.candidate.evidence.values, weights, bias)
        print(f"- {m.kind}, probability {p:.2f}, similarity {m.candidate.similarity:.2f}\n"
              f"  later:   {m.case.row['text']}\n  earlier: {m.candidate.row['text']}\n"
              f"  {'; '.join(m.candidate.evidence.reasons)}")


def candidate_recall(stream: Stream, split: str) -> float:
    """The share of `split`'s repeats with an earlier same-group message among their candidates."""
    reached = {case.row["id"] for case in stream.cases
               if any(c.row["group"] == case.row["group"] for c in case.candidates)}
    repeats = [r for r in stream.repeats if r["split"] == split]
    return sum(r["id"] in reached for r in repeats) / len(repeats)


Decider = tuple[Stream, Callable[[Candidate], float | None]]


def report(deciders: dict[str, Decider]) -> None:
    print("\n| decider | split | precision | recall |\n|---|---|---|---|")
    for name, (stream, decide) in deciders.items():
        for split in ("train", "heldout"):
            p, r = score(stream, decide, split)
            print(f"| {name} | {split} | {p:.3f} | {r:.3f} |")


def with_pair_logits(stream: Stream, path: Path) -> Stream:
    """The stream with the pair model's probability appended to each pair's features (from
    train_pair_model.py --scores: train pairs scored out-of-fold)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    logit = {(r["later_id"], r["earlier_id"]): r["logit"] for r in rows}
    return with_values(stream, lambda case, c: (pair_probability(logit[case.row["id"], c.row["id"]]),))


def pair_model_alone(cut: float) -> Callable[[Candidate], float | None]:
    """The pair model's probability (the last feature) as the only evidence."""
    return lambda c: c.evidence.values[-1] if c.evidence.values[-1] >= cut else None


def pair_model_cut(stream: Stream) -> float:
    """The cut for the pair model alone, chosen on train (its train probabilities are out-of-fold already)."""
    pooled = {cut: tally(stream, pair_model_alone(cut), lambda row: row["split"] == "train") for cut in CUTS}
    return chosen_cut(pooled, "pair model alone, on its out-of-fold train logits")


def says(weights: Sequence[float], bias: float, cut: float) -> JudgeSays:
    """A decider on one pair from a logistic model over the judge's features (and the pair model's probability)."""
    return lambda a, b, s, p: probability((*evidence(a, b, s).values, p)[: len(weights)], weights, bias) >= cut


def sts_check(path: Path, embedder: LocalEmbedder, threshold: float, deciders: dict[str, JudgeSays],
              pair_model: PairModel | None) -> None:
    """Outside check: STS-B test pairs with gold >= 4 as duplicates and <= 2 as not (2-4 left out)."""
    if not path.is_file():
        print(f"\nSTS Benchmark not found at {path}: outside check skipped")
        return
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if float(r[4]) >= 4 or float(r[4]) <= 2]
    gold = np.array([float(r[4]) >= 4 for r in rows])
    first, second = [normalize_text(r[5], from_slack) for r in rows], [normalize_text(r[6], from_slack) for r in rows]
    sims = (embedder.embed(first, truncate=True) * embedder.embed(second, truncate=True)).sum(axis=1)
    pair = pair_probability(pair_model.logits(list(zip(first, second)))) if pair_model else np.zeros(len(rows))
    flagged = {f"threshold-only {OLD_THRESHOLD}": sims >= OLD_THRESHOLD} | {
        name: np.array([s >= threshold and says(a, b, float(s), float(p))
                        for a, b, s, p in zip(first, second, sims, pair)])
        for name, says in deciders.items()}
    print(f"\nSTS Benchmark test, {gold.sum()} duplicate pairs (gold >= 4), {(~gold).sum()} not (gold <= 2):")
    for name, flags in flagged.items():
        right = (flags & gold).sum()
        print(f"  {name}: precision {right / max(1, flags.sum()):.3f}, recall {right / gold.sum():.3f}")


def dump_pairs(stream: Stream, path: Path) -> None:
    """The candidate pairs (normalised texts, as the judge reads them) with their labels, one JSON object a line."""
    with path.open("w", encoding="utf-8") as out:
        for case in stream.cases:
            later = normalize_text(case.row["text"], from_slack)
            for c in case.candidates:
                out.write(json.dumps({
                    "later_id": case.row["id"], "earlier_id": c.row["id"], "split": case.row["split"],
                    "earlier_split": c.row["split"], "group": case.row["group"],
                    "same": c.row["group"] == case.row["group"], "similarity": round(c.similarity, 6),
                    "later": later, "earlier": normalize_text(c.row["text"], from_slack),
                }) + "\n")
    print(f"{sum(len(case.candidates) for case in stream.cases)} candidate pairs written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "dupes.jsonl")
    parser.add_argument("--sts", type=Path, default=ROOT.parent / "shared" / "eval" / "stsbenchmark" / "sts-test.csv")
    parser.add_argument("--errors", action="store_true", help="print every out-of-fold train error")
    parser.add_argument("--pair-scores", type=Path, metavar="FILE",
                        help="train_pair_model.py --scores output: also report the pair model alone and as a feature")
    parser.add_argument("--pair-model", type=Path, metavar="ONNX", help="the model that made --pair-scores (for STS-B)")
    parser.add_argument("--dump-pairs", type=Path, metavar="FILE",
                        help="write the candidate pairs as JSON lines (scripts/train_pair_model.py reads them) and stop")
    args = parser.parse_args()
    if bool(args.pair_scores) != bool(args.pair_model):
        parser.error("--pair-scores and --pair-model go together")
    embedder = LocalEmbedder.bundled()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(environ={}, env_file=None, db_path=Path(folder) / "kb.sqlite3", dup_threshold=LOWEST)
        with open_configured_store(settings) as store:
            stream = scan_stream(read_rows(args.data), store, embedder, settings)
    threshold = candidate_threshold(stream)
    stream = above(stream, threshold)
    if args.dump_pairs:
        dump_pairs(stream, args.dump_pairs)
        return
    cut = cross_validated_cut(stream, args.errors)
    weights, bias = fit(stream, lambda row: row["split"] == "train")
    best_t = float(max(SWEEP, key=lambda t: f_half(*score(stream, threshold_only(t), "train"))))
    print(f"\nDUP_THRESHOLD = {threshold}  (settings.dup_threshold)")
    print_constants(FEATURES, weights, bias, cut)
    deciders = {f"threshold-only {OLD_THRESHOLD} (before)": (stream, threshold_only(OLD_THRESHOLD)),
                f"threshold-only {best_t} (best F0.5 on train)": (stream, threshold_only(best_t)),
                "candidates + judge": (stream, judged(weights, bias, cut))}
    sts_deciders = {"candidates + judge": says(weights, bias, cut)}
    pair_model = None
    if args.pair_scores:
        paired = with_pair_logits(stream, args.pair_scores)
        alone_cut = pair_model_cut(paired)
        paired_cut = cross_validated_cut(paired)
        paired_weights, paired_bias = fit(paired, lambda row: row["split"] == "train")
        print("\nwith the pair model:")
        print_constants((*FEATURES, "pair_model"), paired_weights, paired_bias, paired_cut)
        deciders["candidates + pair model alone"] = (paired, pair_model_alone(alone_cut))
        sts_deciders["candidates + pair model alone"] = lambda a, b, s, p: p >= alone_cut
        deciders["candidates + judge with the pair model"] = (paired, judged(paired_weights, paired_bias, paired_cut))
        sts_deciders["candidates + judge with the pair model"] = says(paired_weights, paired_bias, paired_cut)
        pair_model = PairModel(args.pair_model)
    report(deciders)
    print(f"\ncandidate recall at DUP_THRESHOLD {threshold} (an earlier repeat among the candidates): "
          f"train {candidate_recall(stream, 'train'):.3f}, heldout {candidate_recall(stream, 'heldout'):.3f}")
    sts_check(args.sts, embedder, threshold, sts_deciders, pair_model)


def print_constants(features: tuple[str, ...], weights: np.ndarray, bias: float, cut: float) -> None:
    print(f"WEIGHTS = ({', '.join(f'{w:.3f}' for w in weights)})  # {', '.join(features)}")
    print(f"BIAS = {bias:.3f}\nCUT = {cut}")


if __name__ == "__main__":
    main()
