"""The `fake` backend: deterministic vectors without a model, for tests that need only *some* vectors.

Each word is hashed to a signed position of the vector, the counts summed and
the row normalised: texts sharing words get similar vectors, and nothing else
about meaning holds. It counts calls and texts, so tests can check what reached
the embedder (as `llm` ships a demo model for its tests).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence

import numpy as np

from bot.embeddings.base import Embedder, normalize, valid_text
from bot.embeddings.registry import register_embedder
from bot.errors import TextTooLongError
from bot.settings import Settings

_WORD = re.compile(r"\w+")


class FakeEmbedder(Embedder):
    """Hashed bag of words; `calls` and `texts` count what `embed` was asked (thread-safe)."""

    def __init__(self, *, dim: int = 64, max_tokens: int = 256, batch_size: int = 64) -> None:
        self.model_id = f"fake-hashed-words-{dim}"
        self.dim = dim
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.calls = 0
        self.texts = 0
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(_WORD.findall(text)) + 2  # a word a token, and two for [CLS] and [SEP]

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        texts = [valid_text(t) for t in texts]
        with self._lock:
            self.calls += 1
            self.texts += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            if len(words) + 2 > self.max_tokens:
                if not truncate:
                    raise TextTooLongError(
                        f"text {row} has {len(words) + 2} tokens; {self.model_id} accepts {self.max_tokens}. "
                        "Split it first."
                    )
                words = words[: self.max_tokens - 2]
            for word in words or [text]:
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                out[row, int.from_bytes(digest[:4], "little") % self.dim] += 1 if digest[4] & 1 else -1
            if not out[row].any():  # words that cancelled out: any fixed direction will do
                out[row, 0] = 1
        return normalize(out)


@register_embedder("fake")
def _fake(settings: Settings) -> FakeEmbedder:
    return FakeEmbedder(batch_size=settings.embed_batch_size)
