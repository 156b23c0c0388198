"""Embed through the persistent cache: a text is embedded once per model, ever."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.embeddings import Embedder, embed_batches, known_dim, valid_text
from bot.store import Store

log = logging.getLogger(__name__)


@dataclass
class EmbedCounts:
    """Running totals a caller can pass in to learn what the cache saved."""

    cache_hits: int = 0
    embedded: int = 0


def embed_many(
    embedder: Embedder,
    store: Store,
    texts: Sequence[str],
    *,
    truncate: bool = False,
    counts: EmbedCounts | None = None,
) -> np.ndarray:
    """Vectors for `texts` (rows in order), embedding only the cache misses.

    Misses are embedded in the embedder's batch size and written to the cache
    batch by batch, so work done before a failure is kept for the next run.
    Vectors are keyed by model and dimension: an endpoint that changes its
    vectors' size under the same model name gets its stale cache entries
    re-embedded and replaced. Logs counts, hit ratio and latency — never the texts.
    """
    texts = [valid_text(t) for t in texts]
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    model = embedder.model_id
    found = store.cached_vectors(model, texts, known_dim(embedder))
    misses = list(dict.fromkeys(t for t in texts if t not in found))
    started = time.perf_counter()
    _embed_into(found, misses, embedder, store, truncate)
    stale = _stale(found, embedder)
    if stale:
        log.warning(
            "embed_many model=%s: %d cached vectors are not %d-dimensional as the embedder's now are; "
            "embedding them again", model, len(stale), embedder.dim,
        )
        _embed_into(found, stale, embedder, store, truncate)
        misses += stale
    unique = len(set(texts))
    if counts is not None:
        counts.cache_hits += unique - len(misses)
        counts.embedded += len(misses)
    log.info(
        "embed_many model=%s texts=%d unique=%d cache_hits=%d hit_ratio=%.2f embedded=%d ms=%.1f",
        model, len(texts), unique, unique - len(misses),
        (unique - len(misses)) / unique, len(misses), (time.perf_counter() - started) * 1000,
    )
    return np.vstack([found[t] for t in texts]).astype(np.float32, copy=False)


def _embed_into(
    found: dict[str, np.ndarray], texts: list[str], embedder: Embedder, store: Store, truncate: bool
) -> None:
    """Embed `texts` batch by batch, caching each batch as it finishes and adding it to `found`.

    Batches may finish out of order (a remote embedder keeps several in flight);
    `found` is keyed by text, so the caller's rows keep the input order.
    """
    size = embedder.batch_size
    batches = [texts[start : start + size] for start in range(0, len(texts), size)]
    for index, vectors in embed_batches(embedder, batches, truncate=truncate):
        store.cache_vectors(embedder.model_id, batches[index], vectors)
        found.update(zip(batches[index], vectors))


def _stale(found: dict[str, np.ndarray], embedder: Embedder) -> list[str]:
    """Texts whose cached vector has another size than the embedder's (known now, or probed if sizes differ)."""
    sizes = {len(v) for v in found.values()}
    dim = known_dim(embedder)
    if dim is None and len(sizes) > 1:
        dim = embedder.dim
    if dim is None or sizes <= {dim}:
        return []
    return [text for text, vector in found.items() if len(vector) != dim]
