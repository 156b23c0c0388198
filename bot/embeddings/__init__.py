"""Embedders: text in, L2-normalised float32 vectors out, tagged with a model id.

One small interface (`base.Embedder`) and backends registered by name
(`registry`): `local` (the bundled MiniLM on onnxruntime, the default),
`openai` (any OpenAI-compatible endpoint) and `fake` (hashed words, for tests).
`make_embedder(settings)` builds the one EMBED_BACKEND names.
"""

from bot.embeddings.base import Embedder, embed_batches, known_dim, normalize, valid_text
from bot.embeddings.fake import FakeEmbedder
from bot.embeddings.local import (
    BUNDLED_MAX_TOKENS,
    BUNDLED_MODEL_ID,
    BUNDLED_ONNX_SHA256,
    MODEL_DIR,
    STANDARD_MODEL_ID,
    STANDARD_ONNX_PATH,
    STANDARD_ONNX_SHA256,
    TOKENIZER_SHA256,
    LocalEmbedder,
)
from bot.embeddings.registry import embedder_backends, make_embedder, register_embedder
from bot.embeddings.remote import OpenAIEmbedder

__all__ = [
    "BUNDLED_MAX_TOKENS",
    "BUNDLED_MODEL_ID",
    "BUNDLED_ONNX_SHA256",
    "MODEL_DIR",
    "STANDARD_MODEL_ID",
    "STANDARD_ONNX_PATH",
    "STANDARD_ONNX_SHA256",
    "TOKENIZER_SHA256",
    "Embedder",
    "FakeEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "embed_batches",
    "embedder_backends",
    "known_dim",
    "make_embedder",
    "normalize",
    "register_embedder",
    "valid_text",
]
