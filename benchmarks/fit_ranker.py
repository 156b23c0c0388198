#!/usr/bin/env python3
"""Fit the source ranker and the "not sure" model of bot/ranking.py on the train splits.

    .venv/bin/python benchmarks/fit_ranker.py [--cache-dir ~/.cache/kb-bot-quality]
        [--scifact ../shared/eval/scifact] [--scifact-queries 200] [--variant fp32]
        [--chunk-tokens 192 [--chunk-overlap 24]]

Questions: the `train` split of every dev set (benchmarks/data), plus a fixed
sample of SciFact train queries when SciFact is there (`--scifact-queries 0`:
none). Test splits are never read. The "not sure" model also learns from the
sample folder's golden set (tests/data/golden.jsonl, all answerable): paraphrased
questions over a 20-file folder, where many everyday words of a question are in
no file, so it does not learn that missing words alone mean "unanswerable".
For each question the candidates come from the product's own retrieval
(`bot.ranking.candidates`) over the set's index (built by benchmarks/quality.py's
cache), so the features are exactly those search() computes.

1. Source ranker: logistic regression, one row per candidate source (file),
   label 1 when it answers the question; each question weighs the same, half
   on its answering sources, half on the others.
2. "Not sure": logistic regression over `answer_features` of the ranked list,
   label 1 when the question is answerable, with the threshold set to the
   lowest answer probability that keeps false flags on train at or under
   FALSE_FLAG_BUDGET. Also scored leave-one-set-out (fit without one dev set,
   flag its questions), the honest estimate for a folder it never saw.

Prints the constants to paste into bot/ranking.py, and train hit@1 / flag
numbers before and after. Numpy only: Newton's method with a small L2 penalty.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import KNOWLEDGE, ROOT, SHARED_EVAL  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    DATA,
    DEFAULT_CACHE,
    FIT_SETS,
    add_chunk_options,
    chunk_environ,
    dev_set_db,
)
from bot import ranking  # noqa: E402
from bot.embeddings import Embedder, LocalEmbedder  # noqa: E402
from bot.evaluation import BeirData, index_beir, load_beir, load_golden  # noqa: E402
from bot.indexer import index_folder  # noqa: E402
from bot.search import MAX_QUERY_CHARS, active_generation_for, sentence_cosine  # noqa: E402
from bot.settings import EMBED_LOCAL_VARIANTS, load_settings  # noqa: E402
from bot.store import Store, open_store  # noqa: E402

L2 = 0.01
FALSE_FLAG_BUDGET = 0.03  # on train; 0.02 and 0.05 were worse in leave-one-set-out runs


@dataclass
class Question:
    group: str
    text: str
    answers: frozenset[str]  # empty: the folder does not answer it
    passages: list[ranking.Passage]
    words: ranking.QuestionWords
    vector: np.ndarray  # the question's embedding, for the sentence feature


def collect(store: Store, embedder: Embedder, group: str, asked: list[tuple[str, frozenset[str]]]) -> list[Question]:
    gen = active_generation_for(store, embedder)
    texts = [q[:MAX_QUERY_CHARS] for q, _ in asked]
    vectors = embedder.embed(texts, truncate=True)
    out = []
    for text, vector, (_, answers) in zip(texts, vectors, asked):
        passages, words = ranking.candidates(store, gen, text, vector, ranking.RANKED_PASSAGES)
        out.append(Question(group, text, answers, passages, words, vector))
    return out


Asked = list[tuple[str, frozenset[str]]]  # questions and the files that answer each


def dev_sets(
    embedder: Embedder, cache_dir: Path, split: str, environ: Mapping[str, str]
) -> Iterator[tuple[str, Store, Asked]]:
    """Each dev set's name, open index and `split` questions."""
    for name in FIT_SETS:
        items = load_golden(DATA / name / "questions.jsonl", split)
        with open_store(dev_set_db(name, embedder, cache_dir, environ)) as store:
            yield name, store, [(i.question, i.answers) for i in items]


def sample_set(embedder: Embedder, cache_dir: Path, environ: Mapping[str, str]) -> Iterator[tuple[str, Store, Asked]]:
    """The sample folder's golden set, over an index of the sample folder."""
    db = cache_dir / "sample.sqlite3"
    settings = load_settings(environ=environ, env_file=None, db_path=db, knowledge_dir=KNOWLEDGE)
    items = load_golden(ROOT / "tests" / "data" / "golden.jsonl")
    with open_store(db) as store:
        index_folder(store, embedder, settings, full=True)
        yield "sample", store, [(i.question, i.answers) for i in items]


def questions_of(sets: Iterator[tuple[str, Store, Asked]], embedder: Embedder) -> list[Question]:
    return [q for group, store, asked in sets for q in collect(store, embedder, group, asked)]


def scifact_questions(
    folder: Path, embedder: Embedder, cache_dir: Path, count: int, environ: Mapping[str, str]
) -> list[Question]:
    train = load_beir(folder, "train")
    full = BeirData(load_beir(folder, "test").corpus, train.queries, train.qrels)
    db = cache_dir / "scifact-full.sqlite3"
    with open_store(db) as store:
        if store.active_generation() is None:
            with open_store(cache_dir / "scifact-cache.sqlite3") as cache:
                index_beir(store, cache, embedder, load_settings(environ=environ, env_file=None), full)
        ids = sorted(random.Random(14).sample(sorted(full.queries), min(count, len(full.queries))))
        asked = [(full.queries[q], frozenset(d for d, g in full.qrels[q].items() if g > 0)) for q in ids]
        return collect(store, embedder, "scifact", asked)


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted L2-penalised logistic regression by Newton's method; returns (weights, bias)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    beta = np.zeros(a.shape[1])
    penalty = np.full(a.shape[1], L2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-(a @ beta)))
        grad = a.T @ (w * (p - y)) + penalty * beta
        hess = (a * (w * p * (1 - p))[:, None]).T @ a + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def source_rows(questions: list[Question]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, ws = [], [], []
    for q in questions:
        if not q.answers:
            continue
        sources = ranking.group_sources(q.passages)
        labels = np.array([s.path in q.answers for s in sources], float)
        if not labels.any() or labels.all():
            continue
        xs.append(np.array([s.features for s in sources]))
        ys.append(labels)
        ws.append(np.where(labels > 0, 0.5 / labels.sum(), 0.5 / (len(labels) - labels.sum())))
    return np.vstack(xs), np.concatenate(ys), np.concatenate(ws)


def hit_at_1(questions: list[Question]) -> dict[str, float]:
    by_group: dict[str, list[bool]] = {}
    for q in questions:
        if q.answers:
            top = ranking.order_hybrid(ranking.group_sources(q.passages), 1)
            by_group.setdefault(q.group, []).append(bool(top) and top[0].path in q.answers)
    return {g: round(float(np.mean(v)), 3) for g, v in by_group.items()}


def answer_rows(questions: list[Question], embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """Each question's `answer_features`, the sentence feature always computed (search() skips it
    only where it cannot change the answer)."""
    x = []
    for q in questions:
        ordered = ranking.order_hybrid(ranking.group_sources(q.passages), 2)
        sentence = sentence_cosine(embedder, q.vector, ordered[0].best) if ordered else 0.0
        x.append(ranking.answer_features(ordered, q.words, sentence))
    return np.array(x), np.array([bool(q.answers) for q in questions], float)


def threshold_for(p: np.ndarray, y: np.ndarray, budget: float = FALSE_FLAG_BUDGET) -> float:
    """The highest threshold whose false flags (answerable under it) stay within the budget."""
    answerable = np.sort(p[y > 0])
    allowed = int(np.floor(budget * len(answerable)))
    return float(answerable[allowed]) if allowed < len(answerable) else 0.5


def fit_flag(x: np.ndarray, y: np.ndarray, budget: float = FALSE_FLAG_BUDGET) -> tuple[np.ndarray, float, float]:
    """The "not sure" model's weights, bias and threshold, each answer class weighing half."""
    weights, bias = fit_logistic(x, y, np.where(y > 0, 0.5 / y.sum(), 0.5 / (len(y) - y.sum())))
    p = 1 / (1 + np.exp(-(x @ weights + bias)))
    return weights, bias, threshold_for(p, y, budget)


def leave_one_set_out(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, budget: float = FALSE_FLAG_BUDGET
) -> np.ndarray:
    """Flags on each dev set by a model fitted without it (the sample folder always stays in, never flagged)."""
    flagged = np.zeros(len(y), bool)
    for name in FIT_SETS:
        out = groups == name
        weights, bias, threshold = fit_flag(x[~out], y[~out], budget)
        flagged[out] = 1 / (1 + np.exp(-(x[out] @ weights + bias))) < threshold
    return flagged


def held_out_report(flagged: np.ndarray, y: np.ndarray, groups: np.ndarray) -> str:
    held = np.isin(groups, FIT_SETS)
    caught, false = flagged[held & (y == 0)], flagged[held & (y == 1)]
    return f"{int(caught.sum())}/{len(caught)} flagged, {int(false.sum())}/{len(false)} false"


def flag_report(p: np.ndarray, y: np.ndarray, threshold: float) -> str:
    flagged = p < threshold
    recall = flagged[y == 0].mean() if (y == 0).any() else float("nan")
    false = flagged[y == 1].mean()
    return f"flag recall {recall:.3f} ({int(flagged[y == 0].sum())}/{int((y == 0).sum())}), false flags {false:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact")
    parser.add_argument("--scifact-queries", type=int, default=200)
    parser.add_argument("--keep-ranker", action="store_true", help="fit only the 'not sure' model")
    parser.add_argument("--variant", choices=EMBED_LOCAL_VARIANTS, default="standard", help="local model variant")
    add_chunk_options(parser)
    args = parser.parse_args()
    environ = chunk_environ(args)

    embedder = LocalEmbedder.bundled(variant=args.variant)
    questions = questions_of(dev_sets(embedder, args.cache_dir, "train", environ), embedder)
    if args.scifact.is_dir() and args.scifact_queries:
        questions += scifact_questions(args.scifact, embedder, args.cache_dir, args.scifact_queries, environ)
    print(f"{len(questions)} train questions; hit@1 with the shipped constants: {hit_at_1(questions)}")

    weights, bias = np.array(ranking.SOURCE_WEIGHTS), ranking.SOURCE_BIAS
    if not args.keep_ranker:
        weights, bias = fit_logistic(*source_rows(questions))
        ranking.SOURCE_WEIGHTS, ranking.SOURCE_BIAS = tuple(weights.round(3)), round(bias, 3)
        print(f"hit@1 with the fitted ranker: {hit_at_1(questions)}")

    flag_questions = [q for q in questions if q.group != "scifact"] + questions_of(
        sample_set(embedder, args.cache_dir, environ), embedder
    )
    x, y = answer_rows(flag_questions, embedder)
    groups = np.array([q.group for q in flag_questions])
    a_weights, a_bias, threshold = fit_flag(x, y)
    p = 1 / (1 + np.exp(-(x @ a_weights + a_bias)))
    print(f"not sure on train: {flag_report(p, y, threshold)}")
    print(f"  of which the sample folder's answerable questions flagged: {int((p[groups == 'sample'] < threshold).sum())}"
          f"/{int((groups == 'sample').sum())}")
    median = float(np.median(x[:, -1]))
    print(f"not sure, leave one dev set out: {held_out_report(leave_one_set_out(x, y, groups), y, groups)}")

    print("\n# paste into bot/ranking.py")
    print(f"SOURCE_WEIGHTS = {tuple(float(w) for w in weights.round(3))}")
    print(f"SOURCE_BIAS = {round(bias, 3)}")
    print(f"ANSWER_WEIGHTS = {tuple(float(w) for w in a_weights.round(3))}")
    print(f"ANSWER_BIAS = {round(a_bias, 3)}")
    print(f"ANSWER_THRESHOLD = {round(threshold, 3)}")
    print(f"TYPICAL_SENTENCE_COSINE = {round(median, 2)}")


if __name__ == "__main__":
    main()
