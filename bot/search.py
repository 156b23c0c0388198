"""Answer a question with the passages closest in meaning, each with its score.

`score` is the cosine similarity between the question and the passage, in
[-1, 1], higher is closer. Hits below `min_score` are still returned, marked
`confident=False`, so a caller can say "no confident answer" and show the best
guesses anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bot.embeddings import Embedder
from bot.errors import IndexNotBuiltError, QueryError
from bot.store import Generation, Store

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

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.pop("title")
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
    """The question with surrounding whitespace removed; an empty one is an error."""
    text = " ".join(str(query).split())
    if not text:
        raise QueryError("the question is empty: ask something, e.g. “how do I reset my VPN password?”")
    return text


def active_generation_for(store: Store, embedder: Embedder) -> Generation:
    """The generation to search, checked to match the embedder's model."""
    gen = store.active_generation()
    if gen is None:
        raise IndexNotBuiltError(f"no index yet in {store.path}: run `kb-bot index` first")
    if gen.model != embedder.model:
        raise IndexNotBuiltError(
            f"the index was built with {gen.model} but the embedder is {embedder.model}; "
            "run `kb-bot index` to rebuild it"
        )
    return gen


def search(
    store: Store,
    embedder: Embedder,
    query: str,
    k: int = 5,
    *,
    min_score: float = 0.35,
) -> SearchResult:
    """The top-`k` passages for `query`, best first."""
    text = clean_query(query)
    if k < 1:
        raise QueryError("k must be at least 1")
    gen = active_generation_for(store, embedder)
    truncated = len(text) > MAX_QUERY_CHARS
    vector = embedder.embed([text[:MAX_QUERY_CHARS]], truncate=True)[0]
    scored = store.nearest(gen, vector, k)
    rows = store.chunks_by_id(chunk_id for chunk_id, _ in scored)
    hits = [
        Hit(
            score=round(score, 4),
            path=rows[chunk_id].path,
            heading=rows[chunk_id].heading,
            text=rows[chunk_id].text,
            start_line=rows[chunk_id].start_line,
            end_line=rows[chunk_id].end_line,
            confident=score >= min_score,
            title=rows[chunk_id].title,
        )
        for chunk_id, score in scored
        if chunk_id in rows
    ]
    return SearchResult(query=text, model=gen.model, hits=hits, query_truncated=truncated)
