"""Answer a question with the best sources: each file once, with its best passage.

Three modes: `vector` ranks by meaning (cosine similarity of embeddings),
`keyword` by shared words (BM25 over FTS5), and `hybrid`, the default, by a
small learned model over both and a few more clues (`bot.ranking`): keywords
catch exact names and codes that embeddings blur, embeddings catch paraphrases
that share no word.

Each hit is a source: its best passage, with the other passages of the same
file that matched folded under it (`more`). `relevance` (0-100) is the score
that ordered the list; `score` is the best passage's cosine similarity to the
question, in [-1, 1] (`similarity` in JSON). `confident` is False when the
"not sure" model judges that the folder does not answer the question, or when
the shown passage's cosine is under `min_score`; such hits are still returned, so a
caller can say "no confident answer" and show the best guesses anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from bot.embeddings import Embedder, known_dim, valid_text
from bot.errors import IndexNotBuiltError, QueryError
from bot.excerpt import lead, sentences
from bot.ranking import ANSWER_THRESHOLD, RANKED_PASSAGES, Passage, Source, candidates, rank
from bot.settings import SEARCH_MODES, Settings
from bot.source_links import source_url as link_to
from bot.store import Generation, Store

# A question is embedded from its first 256 word pieces (the model's window);
# cutting the raw text first keeps a 50 KB paste from costing a 50 KB tokenisation.
MAX_QUERY_CHARS = 4000


# Passages of the same file kept under a source, besides its best one.
MORE_PASSAGES = 3

# Sentences of the best passage embedded for the "not sure" model: a chunk holds fewer
# (the dev sets' best passages had at most 19 of three words or more); a bound on the cost.
MAX_SENTENCES = 24


@dataclass(frozen=True)
class SearchOptions:
    """How many sources, how sure, how ranked: what `search` takes from the settings, built once."""

    k: int = 5
    min_score: float = 0.25
    mode: str = "hybrid"
    scope: tuple[str, ...] = ()  # only the files under these folders (a channel's KB_SCOPES); empty: all
    source_url: str = ""  # KB_SOURCE_URL: each hit's `url`; empty: no links

    @classmethod
    def from_settings(cls, settings: Settings, *, k: int | None = None) -> SearchOptions:
        """KB_TOP_K, KB_MIN_SCORE, KB_SEARCH_MODE and KB_SOURCE_URL; `k` overrides the first (a CLI flag)."""
        return cls(
            k=k or settings.top_k, min_score=settings.min_score, mode=settings.search_mode,
            source_url=settings.source_url,
        )

    def search(self, store: Store, embedder: Embedder, query: str) -> SearchResult:
        return search(
            store, embedder, query, self.k, min_score=self.min_score, mode=self.mode, scope=self.scope,
            source_url=self.source_url,
        )


@dataclass(frozen=True)
class Excerpt:
    """Another passage of a hit's file that matched the question."""

    score: float  # cosine similarity to the question
    heading: str | None
    text: str
    start_line: int
    end_line: int

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["similarity"] = data.pop("score")
        return data


@dataclass(frozen=True)
class Hit:
    score: float  # the best passage's cosine similarity to the question
    path: str
    heading: str | None
    text: str
    start_line: int
    end_line: int
    confident: bool
    title: str | None = None
    rank_score: float | None = None  # what the mode sorted by (the ranker's logit in hybrid)
    relevance: int = 0  # 0-100: the score that ordered the list, shown to people
    more: tuple[Excerpt, ...] = ()  # other matching passages of the same file, best first
    lead: str = ""  # the sentence or two of `text` that best match the question (`bot.excerpt`)
    url: str | None = None  # the file at these lines, from KB_SOURCE_URL; None without it

    def as_dict(self) -> dict[str, object]:
        data = {
            "relevance": self.relevance, "similarity": self.score, "path": self.path, "heading": self.heading,
            "lead": self.lead, "text": self.text, "start_line": self.start_line, "end_line": self.end_line,
            "confident": self.confident, "more": [m.as_dict() for m in self.more],
        }
        return {**data, "url": self.url} if self.url else data


@dataclass(frozen=True)
class SearchResult:
    query: str
    model: str
    hits: list[Hit]
    query_truncated: bool = False
    answerable: float | None = None  # the "not sure" model's probability that the folder answers it
    scope: tuple[str, ...] = ()  # the only folders searched (a channel's KB_SCOPES); empty: all of them

    @property
    def confident(self) -> bool:
        return any(h.confident for h in self.hits)

    def as_dict(self) -> dict[str, object]:
        data = {
            "query": self.query, "model": self.model, "confident": self.confident,
            "answerable": self.answerable, "hits": [h.as_dict() for h in self.hits],
        }
        return {**data, "scope": list(self.scope)} if self.scope else data


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
        raise IndexNotBuiltError(f"no index yet in {store.location}: run `kb-bot index` first")
    if gen.model != embedder.model_id:
        raise IndexNotBuiltError(
            f"the index was built with {gen.model} but the embedder is {embedder.model_id}; "
            "run `kb-bot index` to rebuild it"
        )
    dim = known_dim(embedder)
    if dim not in (None, gen.dim):
        raise IndexNotBuiltError(
            f"the index holds {gen.dim}-dimensional vectors but {embedder.model_id} now returns "
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
    scope: Sequence[str] = (),
    source_url: str = "",
) -> SearchResult:
    """The top-`k` sources for `query`, best first, ranked as `mode` says; only from the files under
    the `scope` folders when given (filtered inside both rankings, so still `k` when there are `k`);
    each hit linked by the `source_url` template (KB_SOURCE_URL) when given."""
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
        in_scope = store.chunk_ids_under(gen, scope) if scope else None
        passages, words = candidates(store, gen, head, vector, max(k, RANKED_PASSAGES), in_scope)
    ranking = rank(mode, passages, words, k, lambda passage: sentence_cosine(embedder, vector, passage))
    sure = ranking.answerable >= ANSWER_THRESHOLD
    hits = [
        _hit(source, score, relevance, sure, min_score, head, source_url)
        for source, score, relevance in zip(ranking.sources, ranking.scores, ranking.relevance)
    ]
    return SearchResult(
        query=text, model=gen.model, hits=hits, query_truncated=len(text) > MAX_QUERY_CHARS,
        answerable=round(ranking.answerable, 4), scope=tuple(scope),
    )


def sentence_cosine(embedder: Embedder, vector: np.ndarray, passage: Passage) -> float:
    """The best cosine to the question (`vector`) of one sentence of `passage`.

    A passage can be about the question's topic without saying what was asked
    (a travel policy, asked for a per-diem rate); its closest sentence tells them
    apart better than the passage's cosine. Sentences of fewer than three words
    (labels, list stubs) are left out; a passage with no other is its own sentence.
    """
    texts = [s for s in sentences(passage.row.text) if len(s.split()) >= 3][:MAX_SENTENCES]
    if not texts:
        return passage.cosine
    return float((embedder.embed(texts, truncate=True) @ vector).max())


def _hit(
    source: Source, score: float, relevance: int, sure: bool, min_score: float, question: str, template: str
) -> Hit:
    """A source as shown: its best passage led by the sentences that match, the next few folded under it."""
    best = source.best
    return Hit(
        score=round(best.cosine, 4), path=best.row.path, heading=best.row.heading, text=best.row.text,
        start_line=best.row.start_line, end_line=best.row.end_line, confident=sure and best.cosine >= min_score,
        title=best.row.title, rank_score=round(score, 4), relevance=relevance, lead=lead(best.row.text, question),
        url=link_to(template, best.row.path, best.row.start_line, best.row.end_line),
        more=tuple(
            Excerpt(round(p.cosine, 4), p.row.heading, p.row.text, p.row.start_line, p.row.end_line)
            for p in source.passages[1 : 1 + MORE_PASSAGES]
        ),
    )
