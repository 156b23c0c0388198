"""Run a pair model (scripts/train_pair_model.py's int8 ONNX) with onnxruntime and the bundled tokenizer.

For scripts/fit_dupe_judge.py's outside check (STS-B) and for timing: the pair
model did not earn its place in the judge (README "Tried since"), so nothing in
bot/ runs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bot.embeddings import MODEL_DIR

MAX_PIECES = 80  # both messages together, as trained


class PairModel:
    """One onnxruntime session: (later, earlier) text pairs in, one logit each out."""

    def __init__(self, onnx_path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(MAX_PIECES, strategy="longest_first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def logits(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """The model's logit for each (later, earlier) pair: above 0 leans "the same question"."""
        encoded = self._tokenizer.encode_batch(list(pairs))
        out = np.zeros(len(encoded), dtype=np.float32)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].ids))  # similar lengths pad little
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encoded[i].ids) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask, types = np.zeros_like(ids), np.zeros_like(ids)
            for row, i in enumerate(batch):
                n = len(encoded[i].ids)
                ids[row, :n], mask[row, :n], types[row, :n] = encoded[i].ids, 1, encoded[i].type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            out[batch] = self._session.run(None, feeds)[0]
        return out


def pair_probability(logit: float | np.ndarray) -> float | np.ndarray:
    """The model's logit as a probability: a judge feature in 0..1 like the others."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=np.float64)))
