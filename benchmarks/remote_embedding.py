#!/usr/bin/env python3
"""Benchmark: remote embedding throughput against EMBED_CONCURRENCY (issue 15).

    .venv/bin/python benchmarks/remote_embedding.py [--latency 0.05] [--texts 1024] [--batch 32] [--dim 64]

A first index through `EMBED_BACKEND=openai` is mostly waiting on round trips.
This runs the real path — `embed_many` (cache misses, a cache write per finished
batch) over a real `OpenAIEmbedder` — against the loopback OpenAI-compatible
fake of the tests, which answers every request after a fixed delay, and prints
texts/s for 1, 2, 4 and 8 requests in flight (a fresh cache each time). The fake
runs on the same cores as the client; small vectors (`--dim`) keep its own work
from hiding the waiting that concurrency removes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import knowledge_sentences, print_table  # noqa: E402
from bot.cache import embed_many  # noqa: E402
from bot.embeddings import OpenAIEmbedder  # noqa: E402
from bot.store import open_store  # noqa: E402
from tests.openai_fake import OpenAIFake  # noqa: E402

CONCURRENCY = (1, 2, 4, 8)


def run(fake: OpenAIFake, texts: list[str], batch: int, concurrency: int, folder: Path) -> tuple[float, int]:
    """Seconds to embed `texts` into an empty cache, and the most requests the endpoint saw at once."""
    embedder = OpenAIEmbedder(
        base_url=fake.base_url, api_key="sk-bench", model=fake.model, batch_size=batch, concurrency=concurrency
    )
    fake.reset()
    with open_store(folder / f"c{concurrency}.sqlite3") as store:
        started = time.perf_counter()
        embed_many(embedder, store, texts)
        return time.perf_counter() - started, fake.max_in_flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the endpoint takes per request")
    parser.add_argument("--texts", type=int, default=1024, help="distinct texts to embed")
    parser.add_argument("--batch", type=int, default=32, help="texts per request")
    parser.add_argument("--dim", type=int, default=64, help="vector size the endpoint returns")
    args = parser.parse_args()
    sentences = knowledge_sentences(args.texts)
    texts = [f"{sentences[i % len(sentences)]} ({i})" for i in range(args.texts)]  # distinct: no cache hits
    rows = []
    with OpenAIFake(latency=args.latency, dim=args.dim) as fake, tempfile.TemporaryDirectory() as tmp:
        base = None
        for concurrency in CONCURRENCY:
            seconds, in_flight = run(fake, texts, args.batch, concurrency, Path(tmp))
            base = base or seconds
            rows.append([concurrency, in_flight, f"{seconds:.2f}", f"{len(texts) / seconds:,.0f}", f"{base / seconds:.2f}×"])
    print_table(
        f"Remote embedding: {len(texts)} texts, {args.batch} a request ({-(-len(texts) // args.batch)} requests), "
        f"{args.dim}-d, {args.latency * 1000:.0f} ms a request, loopback OpenAI-compatible endpoint",
        ["EMBED_CONCURRENCY", "max in flight", "seconds", "texts/s", "speed-up"],
        rows,
    )


if __name__ == "__main__":
    main()
