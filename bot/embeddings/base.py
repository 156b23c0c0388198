"""What every embedder provides: text in, L2-normalised float32 vectors out, tagged with a model id."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def valid_text(text: str) -> str:
    """`text` as valid Unicode: lone surrogates become U+FFFD, surrogate pairs the character they spell.

    They come from undecodable bytes on the command line (`\\xff\\xfe` arrives as
    `\\udcff\\udcfe`) and from escaped JSON; tokenizers and UTF-8 encoders refuse them.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def known_dim(embedder: Embedder) -> int | None:
    """`embedder.known_dim`; an object that only looks like an Embedder (a wrapper) has only `dim`."""
    return embedder.known_dim if isinstance(embedder, Embedder) else embedder.dim


def embed_batches(
    embedder: Embedder, batches: Sequence[Sequence[str]], *, truncate: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """`embedder.embed_batches`; an object that only looks like an Embedder (a wrapper) goes batch by batch."""
    if isinstance(embedder, Embedder):
        return embedder.embed_batches(batches, truncate=truncate)
    return Embedder.embed_batches(embedder, batches, truncate=truncate)  # type: ignore[arg-type]


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class Embedder:
    """What every backend provides. `embed` always returns unit-norm float32 rows."""

    model_id: str  # stored beside every vector; different ids never meet
    dim: int
    max_tokens: int
    batch_size: int

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        raise NotImplementedError

    def embed_batches(
        self, batches: Sequence[Sequence[str]], *, truncate: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Each batch's index and vectors as it finishes: one after another here.

        A remote backend overrides it to keep several requests in flight; the
        caller stores each finished batch at once, so a failure loses none of them.
        """
        for i, batch in enumerate(batches):
            yield i, self.embed(batch, truncate=truncate)

    @property
    def known_dim(self) -> int | None:
        """The vector size if known without asking a remote endpoint (`None` until it answered)."""
        return self.dim

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count_tokens(t) for t in texts]
