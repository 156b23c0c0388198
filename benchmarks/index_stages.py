#!/usr/bin/env python3
"""Where a first index's time goes on a docs folder: parsing, chunking, embedding per model variant.

    .venv/bin/python benchmarks/index_stages.py FOLDER [--sample 400] [--rounds 2] [--onnx FILE ...]

Reads and parses every file as `kb-bot index` does (bot.loaders), chunks it
(bot.indexer.prepare_chunks), then embeds the same fixed sample of the chunks
with each local variant (`standard`, int8; `fp32`, the default before issue 14),
the bundled file unfused (the first baseline) and any `--onnx` file (e.g. from
`scripts/fuse_model.py --int8 VARIANT --out FILE`), alternating them
`--rounds` times back to back so a shared machine's load hits all alike.
Prints each stage's seconds, the chunks' word-piece lengths, and each variant's
chunks per second with the time it implies for the whole folder and for a
15,600-chunk one (issue 14's 450-file Sphinx folder). A whole cold index is about parse + chunk
+ embed, plus SQLite writes (small next to embedding).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table  # noqa: E402
from bot.embeddings import BUNDLED_MAX_TOKENS, MODEL_DIR, LocalEmbedder  # noqa: E402
from bot.embeddings.local import _bundled_onnx_path  # noqa: E402
from bot.indexer import prepare_chunks  # noqa: E402
from bot.loaders import Skipped, iter_loaded, load, walk  # noqa: E402
from bot.settings import load_settings  # noqa: E402


def parse_and_chunk(folder: Path, embedder: LocalEmbedder) -> tuple[list[str], int, float, float]:
    """Every chunk's embedded text, the files parsed, and the seconds spent parsing and chunking."""
    settings = load_settings(environ={}, env_file=None, knowledge_dir=folder)
    scan = walk(folder)
    texts: list[str] = []
    files, parse_s, chunk_s = 0, 0.0, 0.0
    for source, data in iter_loaded(scan.files, scan.root):
        if isinstance(data, Skipped):
            continue
        started = time.perf_counter()
        doc = load(source, data)
        parsed = time.perf_counter()
        parse_s += parsed - started
        if isinstance(doc, Skipped):
            continue
        files += 1
        texts += prepare_chunks(embedder, settings, doc.blocks, title=doc.title)[1]
        chunk_s += time.perf_counter() - parsed
    return texts, files, parse_s, chunk_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sample", type=int, default=400, help="chunks embedded per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--onnx", nargs="*", type=Path, default=[], help="more model files to time alike")
    args = parser.parse_args()

    variants = {
        # the bundled file as it comes (what `standard` ran before scripts/fuse_model.py): the baseline
        "unfused": LocalEmbedder(_bundled_onnx_path(), MODEL_DIR / "tokenizer.json", model_id="unfused",
                                 max_tokens=BUNDLED_MAX_TOKENS),
        "fp32": LocalEmbedder.bundled(variant="fp32"),
        "standard": LocalEmbedder.bundled(),
    }
    for path in args.onnx:
        variants[path.stem] = LocalEmbedder(path, MODEL_DIR / "tokenizer.json", model_id=path.stem,
                                            max_tokens=BUNDLED_MAX_TOKENS)
    texts, files, parse_s, chunk_s = parse_and_chunk(args.folder, variants["standard"])
    lengths = variants["standard"].count_tokens_many(texts)
    print(f"{files} files, {len(texts)} chunks: parse {parse_s:.1f} s, chunk {chunk_s:.1f} s")
    print(f"word pieces per chunk: median {statistics.median(lengths):.0f}, "
          f"share over 128: {sum(n > 128 for n in lengths) / len(lengths):.2f}")

    sample = random.Random(14).sample(texts, min(args.sample, len(texts)))
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu_rates: dict[str, list[float]] = {name: [] for name in variants}  # chunks per CPU-second: less hit by load
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    for _ in range(args.rounds):
        for name, embedder in variants.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            embedder.embed(sample, truncate=True)
            rates[name].append(len(sample) / (time.perf_counter() - started))
            cpu_rates[name].append(len(sample) / (time.process_time() - cpu_started))
    rows = []
    baseline, fp32 = statistics.median(rates["unfused"]), statistics.median(rates["fp32"])
    for name, runs in rates.items():
        rate = statistics.median(runs)
        cpu_ratio = statistics.median(cpu_rates[name]) / statistics.median(cpu_rates["fp32"])
        rows.append([name, " / ".join(f"{r:.1f}" for r in runs), f"{rate:.1f}", f"{rate / baseline:.2f}×",
                     f"{rate / fp32:.2f}×", f"{cpu_ratio:.2f}×",
                     f"{len(texts) / rate:.0f}", f"{parse_s + chunk_s + len(texts) / rate:.0f}",
                     f"{parse_s + chunk_s + 15_600 / rate:.0f}"])
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print_table("Embedding, variants alternated back to back",
                ["variant", "chunks/s per round", "median", "vs unfused", "vs fp32", "per CPU-s vs fp32",
                 "embed all (s)", "parse+chunk+embed (s)", "15.6k chunks (s)"], rows)

if __name__ == "__main__":
    main()
