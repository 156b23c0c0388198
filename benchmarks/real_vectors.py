#!/usr/bin/env python3
"""Real MiniLM vectors for the search benchmark and the fast-path tests, computed once.

    .venv/bin/python benchmarks/real_vectors.py [--count 30000] [--out benchmarks/.cache]

Texts: SciFact sentences and sentence pairs (from ../shared/eval/scifact), then
STS Benchmark sentences, until `--count`; queries: the 1,109 SciFact queries.
Writes `real-<count>.npy` (float32, unit rows) and `real-queries.npy`. About 3
minutes for 30,000 texts on an idle 2-core machine; 100,000 took over an hour
with the machine shared, hence the smaller default.
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


def load(folder: Path = CACHE) -> tuple[np.ndarray, np.ndarray] | None:
    """(vectors, queries) of the largest set computed, else None."""
    sets = sorted(folder.glob("real-[0-9]*.npy"), key=lambda p: int(p.stem.split("-")[1]))
    queries = folder / "real-queries.npy"
    if sets and queries.exists():
        return np.load(sets[-1]), np.load(queries)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--count", type=int, default=30_000)
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
