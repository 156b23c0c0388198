"""Measure retrieval quality: on a BEIR benchmark folder, and on a team's golden set.

BEIR runs index the corpus through the product's own chunking, store and
`search()`, into a throw-away database, so the numbers describe what users get.
Their vectors go through a separate, persistent embedding cache, so reruns and
other modes cost only the queries.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.cache import embed_many
from bot.embeddings import Embedder
from bot.errors import KbError
from bot.indexer import prepare_chunks
from bot.parsing import text_blocks
from bot.search import Hit, search
from bot.settings import Settings
from bot.store import Store, open_store

# Passages fetched per BEIR query: enough to rank 100 distinct documents.
BEIR_PASSAGES = 300


# --- metrics ---------------------------------------------------------------


def ndcg_at_k(ranked: Sequence[str], relevance: dict[str, int], k: int = 10) -> float:
    """trec_eval's nDCG@k: gain = graded relevance, discount = log2(rank + 1)."""
    dcg = sum(relevance.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], start=1))
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevance: dict[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the top `k`."""
    relevant = {doc for doc, g in relevance.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def first_rank(ranked: Sequence[str], wanted: Collection[str]) -> int | None:
    """1-based rank of the first item of `ranked` that is in `wanted`, or None."""
    return next((rank for rank, item in enumerate(ranked, start=1) if item in wanted), None)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


# --- BEIR ------------------------------------------------------------------


@dataclass(frozen=True)
class BeirData:
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]  # query id -> text, only those judged in the split
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> graded relevance

    def subset(self, queries: int | None = None, other_docs: int | None = None, seed: int = 0) -> BeirData:
        """A fixed sample: `queries` queries, their judged documents plus `other_docs` others.

        A smaller corpus is easier than the full one, so only compare numbers
        measured on the same subset.
        """
        rng = random.Random(seed)
        query_ids = sorted(self.queries)
        if queries is not None and queries < len(query_ids):
            query_ids = sorted(rng.sample(query_ids, queries))
        corpus = self.corpus
        if other_docs is not None:
            judged = {doc for q in query_ids for doc in self.qrels[q] if doc in self.corpus}
            others = sorted(set(self.corpus) - judged)
            keep = judged | set(rng.sample(others, min(other_docs, len(others))))
            corpus = {doc: self.corpus[doc] for doc in sorted(keep)}
        return BeirData(corpus, {q: self.queries[q] for q in query_ids}, {q: self.qrels[q] for q in query_ids})


def load_beir(folder: Path, split: str = "test") -> BeirData:
    """Read a BEIR folder: corpus.jsonl, queries.jsonl and qrels/{split}.tsv."""
    folder = Path(folder)
    paths = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    for path in paths:
        if not path.is_file():
            raise KbError(f"not a BEIR folder: {path} is missing")
    corpus = {d["_id"]: (d.get("title") or "", d.get("text") or "") for d in _jsonl(paths[0])}
    qrels: dict[str, dict[str, int]] = {}
    for line in paths[2].read_text(encoding="utf-8").splitlines()[1:]:
        query_id, doc_id, score = line.split("\t")
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {q["_id"]: q["text"] for q in _jsonl(paths[1]) if q["_id"] in qrels}
    return BeirData(corpus, queries, {q: qrels[q] for q in queries})


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def index_beir(store: Store, cache: Store, embedder: Embedder, settings: Settings, data: BeirData) -> None:
    """Index the corpus into `store`, one document per id, its title on every chunk."""
    prepared = [
        (doc_id, title, text, *prepare_chunks(embedder, settings, text_blocks(text), title=title or None))
        for doc_id, (title, text) in data.corpus.items()
    ]
    vectors = embed_many(embedder, cache, [t for *_, texts in prepared for t in texts])
    gen = store.create_generation(embedder.model_id, embedder.dim, "beir")
    offset = 0
    with store.atomic():
        for doc_id, title, text, chunks, _ in prepared:
            store.replace_document(
                gen, path=doc_id, sha256=hashlib.sha256(text.encode()).hexdigest(), size=len(text),
                mtime=0.0, title=title or None, chunks=chunks, vectors=vectors[offset : offset + len(chunks)],
            )
            offset += len(chunks)
    store.activate(gen)


def rank_documents(hits: Sequence[Hit]) -> list[str]:
    """Documents in the order of their best passage."""
    return list(dict.fromkeys(hit.path for hit in hits))


def evaluate_beir(store: Store, embedder: Embedder, data: BeirData, mode: str) -> dict[str, float]:
    """nDCG@10 and recall@100 over the queries of `data`, against an index of its corpus."""
    ndcg, recall = [], []
    for query_id, text in data.queries.items():
        ranked = rank_documents(search(store, embedder, text, BEIR_PASSAGES, mode=mode).hits)
        ndcg.append(ndcg_at_k(ranked, data.qrels[query_id], 10))
        recall.append(recall_at_k(ranked, data.qrels[query_id], 100))
    return {"ndcg@10": mean(ndcg), "recall@100": mean(recall), "queries": len(ndcg)}


def run_beir(
    data: BeirData, embedder: Embedder, settings: Settings, cache_db: Path, modes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Index `data` into a temporary database and score each retrieval mode."""
    with tempfile.TemporaryDirectory(prefix="kb-eval-") as tmp, open_store(cache_db) as cache, \
            open_store(Path(tmp) / "beir.sqlite3") as store:
        index_beir(store, cache, embedder, settings, data)
        return {mode: evaluate_beir(store, embedder, data, mode) for mode in modes}


# --- golden set ------------------------------------------------------------


@dataclass(frozen=True)
class GoldenItem:
    question: str
    file: str | None  # the knowledge file (relative path) that answers it; None: the folder does not
    also: tuple[str, ...] = ()  # other files that answer it too
    split: str | None = None  # "train" or "test" in the dev sets: tune on one, report on the other

    @property
    def answers(self) -> frozenset[str]:
        return frozenset((self.file, *self.also)) if self.file else frozenset()


def load_golden(path: Path, split: str | None = None) -> list[GoldenItem]:
    """Read a JSONL golden set, keeping only `split`'s lines when given.

    One {"q": question, "file": path or null, "also": [paths], "split": name} a
    line; "also" and "split" are optional.
    """
    try:
        items = [_golden_item(row) for row in _jsonl(Path(path))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KbError(f"cannot read golden set {path}: {exc}") from None
    return [item for item in items if split is None or item.split == split]


def _golden_item(row: dict) -> GoldenItem:
    file, also = row["file"], row.get("also") or []
    if not isinstance(row["q"], str) or not (file is None or isinstance(file, str)) or not isinstance(also, list):
        raise ValueError(f"expected q: text, file: path or null, also: [paths] in {json.dumps(row)[:200]}")
    if file is None and also:
        raise ValueError(f"a question without a file cannot have 'also' files: {row['q']!r}")
    return GoldenItem(row["q"], file, tuple(also), row.get("split"))


def evaluate_golden(
    store: Store, embedder: Embedder, items: Sequence[GoldenItem], mode: str, k: int = 10
) -> dict[str, float | None]:
    """Ranking and "no confident answer" quality on a golden set.

    Answerable questions give hit@1, hit@3 and MRR of the first answering file
    among the distinct files of the top-`k` results. Unanswerable ones (file
    None) are not misses: with the answerable ones they score the flag, as the
    share of flagged answers that were unanswerable (precision), the share of
    unanswerable questions flagged (recall), and the share of answerable ones
    flagged (false_flags). A rate with nothing to count is None.
    """
    ranks, flagged = [], []
    for item in items:
        result = search(store, embedder, item.question, k, mode=mode)
        flagged.append((item.file is None, not result.confident))
        if item.file is not None:
            ranks.append(first_rank(rank_documents(result.hits), item.answers))
    unanswerable = sum(u for u, _ in flagged)
    caught = sum(u and f for u, f in flagged)
    raised = sum(f for _, f in flagged)
    return {
        "hit@1": mean(r is not None and r <= 1 for r in ranks),
        "hit@3": mean(r is not None and r <= 3 for r in ranks),
        "mrr": mean(1 / r if r else 0.0 for r in ranks),
        "flag_precision": caught / raised if raised else None,
        "flag_recall": caught / unanswerable if unanswerable else None,
        "false_flags": (raised - caught) / len(ranks) if ranks else None,
        "queries": len(items),
        "unanswerable": unanswerable,
    }
