#!/usr/bin/env python3
"""Document-level signals tried for ranking sources (issue 14): does the page's overall topic help?

    .venv/bin/python benchmarks/ranking_ideas.py [--cache-dir ~/.cache/kb-bot-quality]
        [--scifact ../shared/eval/scifact] [--test]

Hybrid scored a file by its best passage only; on numpy-docs the misses were mostly
a sibling or neighbouring page whose one passage matches as well as the right
page's. Each idea re-ranks the candidates `bot.ranking.candidates` proposes (the
same pool search() uses: 100 passages per ranking for the dev sets, 300 for
SciFact, as `bot.evaluation` asks), then orders files as `bot.ranking.order_hybrid`
does (the meaning guard kept, on the best passage's cosine). The baseline is the
best passage alone (`document_share` 0):

1. document vector: per file the normalised mean of its chunks' vectors; rank by
   cosine(question, document vector) alone, add `w` x it to the hybrid score, or
   blend it into the meaning part, (1 - w) x passage cosine + w x document cosine
   (shipped: w = DOCUMENT_SHARE, 0.5);
2. pseudo-relevance feedback (Rocchio): q' = normalise(q + a x mean of the first
   pass's top-m passage vectors, by the shipped hybrid passage score), and
   retrieval and cosines redone with q';
3. title/outline vector: per file the embedding of its title and its headings
   (in order, each once), added with weight `w` like 1.

Scored on the train split of all six dev sets (hit@1, hit@3, MRR by distinct file
over the answerable questions; numpy-docs apart) and on SciFact train (nDCG@10).
`--test` scores the rows on the test splits and SciFact test: run it once, after
choosing on train.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL, print_table  # noqa: E402
from benchmarks.quality import DATA, DEFAULT_CACHE, DEV_SETS, dev_set_db  # noqa: E402
from bot import ranking  # noqa: E402
from bot.cache import embed_many  # noqa: E402
from bot.embeddings import Embedder, LocalEmbedder  # noqa: E402
from bot.evaluation import BEIR_PASSAGES, BeirData, index_beir, load_beir, load_golden, mean, ndcg_at_k  # noqa: E402
from bot.search import MAX_QUERY_CHARS, active_generation_for, clean_query  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store import Generation, Store, open_store  # noqa: E402
from bot.vector_index import in_memory, rows_of  # noqa: E402

GOLDEN_K = 10  # sources ranked per dev-set question, as benchmarks/quality.py asks
ROCCHIO = [(m, a) for m in (3, 5, 10) for a in (0.3, 0.5, 1.0)]
DOC_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 1.0)
BLENDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass
class Folder:
    """One index's files with their title/outline vectors, and every chunk's vector."""

    paths: list[str]
    outlines: np.ndarray  # (files, dim) unit vectors, each file's title and headings embedded
    chunk_ids: np.ndarray  # ascending
    chunk_vectors: np.ndarray  # (chunks, dim) float32
    row: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row = {p: i for i, p in enumerate(self.paths)}


@dataclass
class Question:
    group: str
    answers: dict[str, int]  # file -> graded relevance (1 for the dev sets' answering files)
    vector: np.ndarray
    folder: Folder
    passages: list[ranking.Passage]  # the shipped candidates
    feedback: dict[tuple[int, float], list[ranking.Passage]]  # Rocchio's candidates by (m, a)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def folder_of(store: Store, gen: Generation, embedder: Embedder, cache: Store) -> Folder:
    """The outline vector of every file of `gen` (embedded through `cache`) and the chunks' vectors."""
    copy = in_memory(store, gen)
    assert copy is not None
    ids, vectors = copy.ids, copy.vectors.astype(np.float32)
    rows = store.chunks_by_id(ids.tolist())
    paths = sorted({r.path for r in rows.values()})
    outline: dict[str, dict[str, None]] = {p: {} for p in paths}
    titles: dict[str, str] = {}
    for cid in ids.tolist():
        r = rows[cid]
        titles.setdefault(r.path, r.title or r.path)
        if r.heading:
            outline[r.path].setdefault(r.heading)
    texts = [f"{titles[p]}: " + "; ".join(outline[p]) if outline[p] else titles[p] for p in paths]
    outlines = embed_many(embedder, cache, texts, truncate=True)  # a long outline: its first 256 pieces
    return Folder(paths, unit(np.asarray(outlines, np.float32)), ids, vectors)


def hybrid_passage_score(p: ranking.Passage) -> float:
    return p.cosine + ranking.SOURCE_WEIGHTS[3] * p.keyword


def feedback_vector(q: np.ndarray, passages: list[ranking.Passage], folder: Folder, m: int, a: float) -> np.ndarray:
    top = sorted(passages, key=lambda p: (-hybrid_passage_score(p), p.chunk_id))[:m]
    rows, _ = rows_of(folder.chunk_ids, np.array([p.chunk_id for p in top], np.int64))
    return unit(q + a * folder.chunk_vectors[rows].mean(axis=0)).astype(np.float32)


def collect(
    group: str, store: Store, embedder: Embedder, cache: Store, asked: Sequence[tuple[str, dict[str, int]]], pool: int
) -> list[Question]:
    """Each question's shipped candidates and Rocchio's, over one index."""
    gen = active_generation_for(store, embedder)
    folder = folder_of(store, gen, embedder, cache)
    texts = [clean_query(q)[:MAX_QUERY_CHARS] for q, _ in asked]
    vectors = embedder.embed(texts, truncate=True)
    out = []
    for text, vector, (_, answers) in zip(texts, vectors, asked):
        passages, _ = ranking.candidates(store, gen, text, vector, pool)
        feedback = {}
        for m, a in ROCCHIO:
            q2 = feedback_vector(vector, passages, folder, m, a)
            feedback[m, a] = ranking.candidates(store, gen, text, q2, pool)[0]
        out.append(Question(group, answers, vector, folder, passages, feedback))
    return out


def dev_questions(embedder: Embedder, cache_dir: Path, cache: Store, split: str) -> list[Question]:
    out = []
    for name in DEV_SETS:
        items = [i for i in load_golden(DATA / name / "questions.jsonl", split) if i.answers]
        with open_store(dev_set_db(name, embedder, cache_dir)) as store:
            start = time.perf_counter()
            asked = [(i.question, dict.fromkeys(i.answers, 1)) for i in items]
            out += collect(name, store, embedder, cache, asked, ranking.RANKED_PASSAGES)
            print(f"{name} {split}: {len(items)} questions, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return out


def scifact_questions(folder: Path, embedder: Embedder, cache_dir: Path, cache: Store, split: str) -> list[Question]:
    """SciFact `split` queries over the whole corpus (the test split's corpus is all of it)."""
    data = load_beir(folder, split)
    full = BeirData(load_beir(folder, "test").corpus, data.queries, data.qrels)
    with open_store(cache_dir / "scifact-full.sqlite3") as store:
        if store.active_generation() is None:
            index_beir(store, cache, embedder, load_settings(environ={}, env_file=None), full)
        start = time.perf_counter()
        asked = [(full.queries[q], full.qrels[q]) for q in sorted(full.queries)]
        out = collect("scifact", store, embedder, cache, asked, BEIR_PASSAGES)
        print(f"scifact {split}: {len(out)} queries, {time.perf_counter() - start:.0f} s", file=sys.stderr)
        return out


# --- orderings: a question's files, best first -------------------------------

Ordering = Callable[[Question], list[str]]


def ordered(sources: list[ranking.Source], k: int = GOLDEN_K) -> list[str]:
    return [s.path for s in ranking.order_hybrid(sources, k)]


def passage_only(q: Question) -> list[str]:
    return ordered(ranking.group_sources(q.passages, 0.0))


def blended(share: float) -> Ordering:
    def order(q: Question) -> list[str]:
        return ordered(ranking.group_sources(q.passages, share))

    return order


def added(weight: float | None, outline: bool = False) -> Ordering:
    """The best passage's hybrid score plus `weight` x cosine to the file's document (or outline)
    vector; None: that cosine alone."""

    def order(q: Question) -> list[str]:
        sources = ranking.group_sources(q.passages, 0.0)
        for s in sources:
            cos = float(q.folder.outlines[q.folder.row[s.path]] @ q.vector) if outline else s.best.document
            s.logit = cos if weight is None else s.logit + weight * cos
        if weight is None:
            return [s.path for s in sorted(sources, key=lambda s: (-s.logit, s.path))[:GOLDEN_K]]
        return ordered(sources)

    return order


def with_feedback(m: int, a: float) -> Ordering:
    def order(q: Question) -> list[str]:
        return ordered(ranking.group_sources(q.feedback[m, a], 0.0))

    return order


def by_cosine(passages: list[ranking.Passage]) -> list[str]:
    return list(dict.fromkeys(p.row.path for p in sorted(passages, key=lambda p: (-p.cosine, p.chunk_id))))


def vector_feedback(m: int, a: float) -> Ordering:
    def order(q: Question) -> list[str]:
        return by_cosine(q.feedback[m, a])

    return order


def ideas() -> list[tuple[str, Ordering]]:
    rows: list[tuple[str, Ordering]] = [("best passage only (before)", passage_only)]
    rows += [("document cosine alone", added(None))]
    rows += [(f"hybrid + {w} x document cosine", added(w)) for w in DOC_WEIGHTS]
    rows += [(f"{1 - w:.1f} x passage + {w} x document cosine", blended(w)) for w in BLENDS]
    rows += [(f"Rocchio m={m} a={a}", with_feedback(m, a)) for m, a in ROCCHIO]
    rows += [("outline cosine alone", added(None, outline=True))]
    rows += [(f"hybrid + {w} x outline cosine", added(w, outline=True)) for w in DOC_WEIGHTS]
    rows += [("vector mode", lambda q: by_cosine(q.passages))]
    rows += [(f"vector mode, Rocchio m={m} a={a}", vector_feedback(m, a)) for m, a in ROCCHIO]
    return rows


# --- scores ---------------------------------------------------------------------


def dev_scores(questions: list[Question], order: Ordering) -> tuple[str, str]:
    """(all six sets, numpy-docs): 'hit@1 count, hit@3, MRR'."""
    ranks = {}
    for i, q in enumerate(questions):
        files = order(q)
        ranks[i] = next((r for r, f in enumerate(files, 1) if f in q.answers), None)

    def summary(which: list[int]) -> str:
        r = [ranks[i] for i in which]
        hit1 = sum(x == 1 for x in r)
        hit3 = mean(x is not None and x <= 3 for x in r)
        mrr = mean(1 / x if x else 0.0 for x in r)
        return f"{hit1}/{len(r)} ({hit1 / len(r):.3f}), {hit3:.3f}, {mrr:.3f}"

    everything = list(range(len(questions)))
    numpy = [i for i, q in enumerate(questions) if q.group == "numpy-docs"]
    return summary(everything), summary(numpy)


def scifact_score(questions: list[Question], order: Ordering) -> str:
    return f"{mean(ndcg_at_k(order(q), q.answers, 10) for q in questions):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact")
    parser.add_argument("--test", action="store_true", help="score the test splits (once, after choosing)")
    args = parser.parse_args()

    embedder = LocalEmbedder.bundled()
    split = "test" if args.test else "train"
    with open_store(args.cache_dir / "outline-cache.sqlite3") as outlines:
        dev = dev_questions(embedder, args.cache_dir, outlines, split)
    with open_store(args.cache_dir / "scifact-cache.sqlite3") as cache:
        scifact = scifact_questions(args.scifact, embedder, args.cache_dir, cache, split)
    rows = []
    for name, order in ideas():
        everything, numpy = dev_scores(dev, order)
        rows.append([name, everything, numpy, scifact_score(scifact, order)])
    header = ["idea", f"six dev sets {split}: hit@1, hit@3, MRR", f"numpy-docs {split}", f"SciFact {split} nDCG@10"]
    print_table(f"Document-level signals, {split} splits", header, rows)


if __name__ == "__main__":
    main()
