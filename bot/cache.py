"""Embed through the persistent cache: a text is embedded once per model, ever."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.embeddings import Embedder
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
    Logs counts, hit ratio and latency — never the texts.
    """
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    model = embedder.model
    found = store.cached_vectors(model, texts)
    misses = list(dict.fromkeys(t for t in texts if t not in found))
    started = time.perf_counter()
    for start in range(0, len(misses), embedder.batch_size):
        batch = misses[start : start + embedder.batch_size]
        vectors = embedder.embed(batch, truncate=truncate)
        store.cache_vectors(model, batch, vectors)
        found.update(zip(batch, vectors))
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
