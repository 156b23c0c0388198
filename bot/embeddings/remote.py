"""The `openai` backend: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Azure, self-hosted).

A big first index is mostly waiting on the network, so `embed_batches` keeps up
to `concurrency` requests in flight (EMBED_CONCURRENCY), each with the client's
own retries and backoff.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np

from bot.embeddings.base import Embedder, valid_text
from bot.embeddings.registry import register_embedder
from bot.errors import EmbeddingError, TextTooLongError
from bot.redact import install_log_redaction, redact_url
from bot.settings import Settings

log = logging.getLogger(__name__)


class OpenAIEmbedder(Embedder):
    """Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Azure, self-hosted).

    Requests hold at most 2,048 inputs and about `batch_tokens` tokens. The
    official client retries 429, 5xx, connection errors and timeouts with
    exponential backoff, honouring `Retry-After`.
    """

    MAX_INPUTS = 2048

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        dim: int | None = None,
        max_tokens: int = 8191,
        batch_size: int = 2048,
        batch_tokens: int = 100_000,
        timeout: float = 30.0,
        max_retries: int = 5,
        concurrency: int = 1,
    ) -> None:
        import openai

        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "no-key",
            timeout=timeout,
            max_retries=max_retries,
        )
        self._base_url = redact_url(base_url)  # for messages: never the URL's password or key
        install_log_redaction()  # the HTTP client logs the full URL of every request
        self._requested_dim = dim
        self._model_name = model
        self.model_id = f"openai:{model}" + (f"@{dim}" if dim else "")
        self.max_tokens = max_tokens
        self.batch_size = min(batch_size, self.MAX_INPUTS)
        self.batch_tokens = batch_tokens
        self.concurrency = max(concurrency, 1)
        self._dim = dim

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    @property
    def known_dim(self) -> int | None:
        return self._dim

    def count_tokens(self, text: str) -> int:
        """An upper-bound estimate (~3 bytes a token; real BPE averages ~4).

        An exact count would need tiktoken, which downloads its encodings at run
        time; overestimating only makes chunks a little smaller.
        """
        return math.ceil(len(text.encode("utf-8")) / 3) + 2

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        texts = [valid_text(t) for t in texts]
        counts = self.count_tokens_many(texts)
        for i, n in enumerate(counts):
            if n > self.max_tokens:
                if not truncate:
                    raise TextTooLongError(
                        f"text {i} has about {n} tokens; {self.model_id} accepts "
                        f"{self.max_tokens}. Split it first."
                    )
                texts[i] = texts[i].encode("utf-8")[: (self.max_tokens - 2) * 3].decode(
                    "utf-8", "ignore"
                )
                counts[i] = self.max_tokens
        parts = [self._request(batch) for batch in self._batches(texts, counts)]
        if not parts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return np.vstack(parts)

    def embed_batches(
        self, batches: Sequence[Sequence[str]], *, truncate: bool = False
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Each batch's index and vectors as it finishes, with at most `concurrency` batches in flight.

        After a batch fails (its retries spent), no new batch starts; the ones
        already in flight finish and are yielded, then the first error is raised.
        """
        if self.concurrency == 1 or len(batches) < 2:
            yield from super().embed_batches(batches, truncate=truncate)
            return
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="embed")
        waiting = iter(enumerate(batches))
        running: dict[Future[np.ndarray], int] = {}
        error: BaseException | None = None
        try:
            while True:
                while error is None and len(running) < self.concurrency:
                    item = next(waiting, None)
                    if item is None:
                        break
                    running[pool.submit(self.embed, item[1], truncate=truncate)] = item[0]
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=running.__getitem__):
                    index = running.pop(future)
                    if future.exception() is None:
                        yield index, future.result()
                    elif error is None:
                        error = future.exception()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if error is not None:
            raise error

    def _batches(self, texts: list[str], counts: list[int]) -> Iterator[list[str]]:
        batch: list[str] = []
        tokens = 0
        for text, n in zip(texts, counts):
            if batch and (len(batch) >= self.batch_size or tokens + n > self.batch_tokens):
                yield batch
                batch, tokens = [], 0
            batch.append(text)
            tokens += n
        if batch:
            yield batch

    def _request(self, batch: list[str]) -> np.ndarray:
        openai = self._openai
        extra = {"dimensions": self._requested_dim} if self._requested_dim else {}
        started = time.perf_counter()
        try:
            response = self._client.embeddings.create(
                model=self._model_name, input=batch, encoding_format="float", **extra
            )
        except openai.AuthenticationError:
            raise EmbeddingError(
                f"the embeddings endpoint {self._base_url} rejected the API key (401); "
                "check OPENAI_API_KEY"
            ) from None
        except openai.PermissionDeniedError:
            raise EmbeddingError(
                f"the API key may not use model {self._model_name!r} (403); check EMBED_MODEL"
            ) from None
        except (openai.NotFoundError, openai.BadRequestError) as exc:
            raise EmbeddingError(
                f"{self._base_url} does not serve embedding model {self._model_name!r} "
                f"({exc.status_code}: {_short(exc.message)}); check EMBED_MODEL and OPENAI_BASE_URL"
            ) from None
        except openai.APITimeoutError:
            raise EmbeddingError(
                f"the embeddings endpoint {self._base_url} timed out after retries"
            ) from None
        except openai.APIConnectionError:
            raise EmbeddingError(f"cannot reach the embeddings endpoint {self._base_url}") from None
        except openai.APIStatusError as exc:
            raise EmbeddingError(
                f"the embeddings endpoint failed with HTTP {exc.status_code} after retries: "
                f"{_short(exc.message)}"
            ) from None
        except (openai.APIError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EmbeddingError(
                f"the embeddings endpoint sent a response that is not an embeddings list: "
                f"{_short(str(exc))}"
            ) from None
        vectors = self._check(response, len(batch))
        log.debug(
            "openai_embed model=%s inputs=%d ms=%.1f",
            self.model_id, len(batch), (time.perf_counter() - started) * 1000,
        )
        return vectors

    def _check(self, response: object, expected: int) -> np.ndarray:
        data = getattr(response, "data", None)
        if not isinstance(data, list) or len(data) != expected:
            got = len(data) if isinstance(data, list) else "no"
            raise EmbeddingError(
                f"the embeddings endpoint returned {got} vectors for {expected} inputs"
            )
        try:
            rows = [item.embedding for item in sorted(data, key=lambda d: d.index)]
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused below
                matrix = np.asarray(rows, dtype=np.float32)
        except AttributeError:
            raise EmbeddingError("the embeddings endpoint returned items without an embedding") from None
        except (TypeError, ValueError):
            raise EmbeddingError("the embeddings endpoint returned malformed vectors") from None
        if matrix.ndim != 2 or matrix.shape[1] == 0:
            raise EmbeddingError("the embeddings endpoint returned vectors of uneven size")
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise EmbeddingError(
                f"the embeddings endpoint returned {matrix.shape[1]}-dimensional vectors, "
                f"expected {self._dim}"
            )
        if not np.isfinite(matrix).all():
            raise EmbeddingError("the embeddings endpoint returned non-numeric values")
        # in float64: the squares of large or tiny float32 values would overflow or vanish
        norms = np.linalg.norm(matrix.astype(np.float64), axis=1)
        if not (norms > 0).all():
            raise EmbeddingError("the embeddings endpoint returned an all-zero vector, which has no direction")
        return (matrix / norms[:, None]).astype(np.float32)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register_embedder("openai")
def _openai(settings: Settings) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        model=settings.embed_model,
        dim=settings.embed_dim,
        max_tokens=settings.embed_max_tokens,
        batch_size=max(settings.embed_batch_size, 256),
        batch_tokens=settings.embed_batch_tokens,
        timeout=settings.openai_timeout,
        max_retries=settings.openai_max_retries,
        concurrency=settings.embed_concurrency,
    )
