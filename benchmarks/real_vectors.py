#!/usr/bin/env python3
"""Real MiniLM vectors for the search benchmark and the fast-path tests, computed once.

    .venv/bin/python benchmarks/real_vectors.py [--count 100000] [--out benchmarks/.cache]

Texts: SciFact sentences and sentence pairs (from ../shared/eval/scifact), then
STS Benchmark sentences, until `--count`; queries: the 1,109 SciFact queries.
Writes `real-<count>.npy` (float32, unit rows) and `real-queries.npy`. About 10
minutes for 100,000 texts on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL  # noqa: E402
from bot.embeddings import LocalEmbedder  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"


def scifact_texts(count: int) -> list[str]:
    seen: dict[str, None] = {}
    with (SHARED_EVAL / "scifact" / "corpus.jsonl").open() as f:
        for line in f:
            doc = json.loads(line)
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", doc["text"]) if len(s.split()) >= 4]
            for s in sentences:
                seen.setdefault(s)
            for a, b in zip(sentences, sentences[1:]):
                seen.setdefault(f"{a} {b}")
    for split in ("train", "dev", "test"):
        sts = SHARED_EVAL / "stsbenchmark" / f"sts-{split}.csv"
        for line in sts.read_text(encoding="utf-8").splitlines():
            for sentence in line.split("\t")[5:7]:
                seen.setdefault(sentence)
    texts = list(seen)
    np.random.default_rng(0).shuffle(texts)
    return texts[:count]


def scifact_queries() -> list[str]:
    with (SHARED_EVAL / "scifact" / "queries.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f]


def load(count: int, folder: Path = CACHE) -> tuple[np.ndarray, np.ndarray] | None:
    """(vectors, queries) if they were computed, else None."""
    vectors, queries = folder / f"real-{count}.npy", folder / "real-queries.npy"
    if vectors.exists() and queries.exists():
        return np.load(vectors), np.load(queries)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=CACHE)
    args = parser.parse_args()
    if not (SHARED_EVAL / "scifact").exists():
        sys.exit(f"needs {SHARED_EVAL}/scifact and stsbenchmark")
    args.out.mkdir(parents=True, exist_ok=True)
    embedder = LocalEmbedder.bundled()
    texts = scifact_texts(args.count)
    started = time.perf_counter()
    vectors = np.concatenate([
        embedder.embed(texts[i : i + 2048], truncate=True) for i in range(0, len(texts), 2048)
    ])
    np.save(args.out / f"real-{len(texts)}.npy", vectors)
    np.save(args.out / "real-queries.npy", embedder.embed(scifact_queries(), truncate=True))
    print(f"{len(texts)} texts embedded in {time.perf_counter() - started:.0f} s → {args.out}")


if __name__ == "__main__":
    main()
