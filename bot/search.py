"""Answer a question with the best passages, each with its score.

Three modes: `vector` ranks by meaning (cosine similarity of embeddings),
`keyword` by shared words (BM25 over FTS5), and `hybrid`, the default, fuses
both rankings: keywords catch exact names and codes that embeddings blur,
embeddings catch paraphrases that share no word.

Whatever the mode, `score` is the cosine similarity between the question and
the passage, in [-1, 1], higher is closer, and `confident` is `score >=
min_score`: a number with one meaning that a threshold can be set on.
`rank_score` is what the mode sorted by. Hits below `min_score` are still
returned, marked `confident=False`, so a caller can say "no confident answer"
and show the best guesses anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from bot.embeddings import Embedder, known_dim, valid_text
from bot.errors import IndexNotBuiltError, QueryError
from bot.keyword_index import keyword_scores
from bot.settings import SEARCH_MODES
from bot.store import Generation, Store
from bot.vector_index import nearest, similarities

# A question is embedded from its first 256 word pieces (the model's window);
# cutting the raw text first keeps a 50 KB paste from costing a 50 KB tokenisation.
MAX_QUERY_CHARS = 4000


@dataclass(frozen=True)
class Hit:
    score: float
    path: str
    heading: str | None
    text: str
    start_line: int
    end_line: int
    confident: bool
    title: str | None = None
    rank_score: float | None = None  # what the mode ranked by (fusion score in hybrid)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("title")
        data.pop("rank_score")  # an internal ordering value; `score` is the one to show
        return data


@dataclass(frozen=True)
class SearchResult:
    query: str
    model: str
    hits: list[Hit]
    query_truncated: bool = False

    @property
    def confident(self) -> bool:
        return any(h.confident for h in self.hits)

    def as_dict(self) -> dict[str, object]:
        return {"query": self.query, "model": self.model, "hits": [h.as_dict() for h in self.hits]}


def clean_query(query: str) -> str:
    """The question as valid Unicode with its whitespace collapsed; an empty one is an error."""
    text = " ".join(valid_text(str(query)).split())
    if not text:
        raise QueryError("the question is empty: ask something, e.g. “how do I reset my VPN password?”")
    return text


def active_generation_for(store: Store, embedder: Embedder) -> Generation:
    """The generation to search, checked to match the embedder's model (and size, once known)."""
    gen = store.active_generation()
    if gen is None:
        raise IndexNotBuiltError(f"no index yet in {store.path}: run `kb-bot index` first")
    if gen.model != embedder.model:
        raise IndexNotBuiltError(
            f"the index was built with {gen.model} but the embedder is {embedder.model}; "
            "run `kb-bot index` to rebuild it"
        )
    dim = known_dim(embedder)
    if dim not in (None, gen.dim):
        raise IndexNotBuiltError(
            f"the index holds {gen.dim}-dimensional vectors but {embedder.model} now returns "
            f"{dim}-dimensional ones; run `kb-bot index` to rebuild it"
        )
    return gen


def search(
    store: Store,
    embedder: Embedder,
    query: str,
    k: int = 5,
    *,
    min_score: float = 0.25,
    mode: str = "hybrid",
) -> SearchResult:
    """The top-`k` passages for `query`, best first, ranked as `mode` says."""
    text = clean_query(query)
    if k < 1:
        raise QueryError("k must be at least 1")
    if mode not in SEARCH_MODES:
        raise QueryError(f"unknown search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
    active_generation_for(store, embedder)  # no index: say so before embedding anything
    head = text[:MAX_QUERY_CHARS]
    vector = embedder.embed([head], truncate=True)[0]
    # One snapshot for every read: a re-index swapping generations meanwhile is not seen half-way.
    with store.snapshot():
        gen = active_generation_for(store, embedder)
        ranked = RANKERS[mode](store, gen, head, vector, k)
        rows = store.chunks_by_id(r.chunk_id for r in ranked)
    hits = [
        Hit(
            score=round(r.cosine, 4),
            path=rows[r.chunk_id].path,
            heading=rows[r.chunk_id].heading,
            text=rows[r.chunk_id].text,
            start_line=rows[r.chunk_id].start_line,
            end_line=rows[r.chunk_id].end_line,
            confident=r.cosine >= min_score,
            title=rows[r.chunk_id].title,
            rank_score=round(r.rank_score, 4),
        )
        for r in ranked
        if r.chunk_id in rows
    ]
    return SearchResult(query=text, model=gen.model, hits=hits, query_truncated=len(text) > MAX_QUERY_CHARS)


@dataclass(frozen=True)
class Ranked:
    """A passage as a mode ranked it: its cosine (shown) and what it was sorted by."""

    chunk_id: int
    cosine: float
    rank_score: float


def rank_vector(store: Store, gen: Generation, text: str, vector: np.ndarray, k: int) -> list[Ranked]:
    return [Ranked(chunk_id, cos, cos) for chunk_id, cos in nearest(store, gen, vector, k)]


def rank_keyword(store: Store, gen: Generation, text: str, vector: np.ndarray, k: int) -> list[Ranked]:
    """Passages by BM25, each with its cosine so `score` and `confident` mean what they mean elsewhere."""
    found = keyword_scores(store, gen, text).top(k)
    cosines = similarities(store, gen, vector, (chunk_id for chunk_id, _ in found))
    return [Ranked(chunk_id, cosines[chunk_id], bm25) for chunk_id, bm25 in found if chunk_id in cosines]


# Passages each ranking proposes to the fusion (more when more hits are asked for).
CANDIDATES = 100
# Up to this much is added to a passage's cosine for its keyword match: its BM25
# as a share of the question's best BM25. Tuned on SciFact train (flat 0.4-0.55).
KEYWORD_WEIGHT = 0.5


def rank_hybrid(store: Store, gen: Generation, text: str, vector: np.ndarray, k: int) -> list[Ranked]:
    """Both rankings' candidates, ranked by cosine + KEYWORD_WEIGHT * BM25 / best BM25.

    Every candidate gets its real cosine and BM25 (not 0 for "absent from the
    other list"), and the best BM25 is always a candidate, so a passage's fused
    score does not depend on `k`.
    """
    pool = max(k, CANDIDATES)
    cosines = dict(nearest(store, gen, vector, pool))
    keyword = keyword_scores(store, gen, text)
    keyword_best = keyword.top(pool)
    cosines.update(similarities(store, gen, vector, {chunk_id for chunk_id, _ in keyword_best} - set(cosines)))
    bm25 = keyword.of(cosines)
    top_bm25 = keyword_best[0][1] if keyword_best else 0.0
    scale = KEYWORD_WEIGHT / top_bm25 if top_bm25 > 0 else 0.0
    fused = {chunk_id: cos + scale * bm25[chunk_id] for chunk_id, cos in cosines.items()}
    best = sorted(fused, key=fused.__getitem__, reverse=True)[:k]
    return [Ranked(chunk_id, cosines[chunk_id], fused[chunk_id]) for chunk_id in best]


RANKERS = {"vector": rank_vector, "keyword": rank_keyword, "hybrid": rank_hybrid}
