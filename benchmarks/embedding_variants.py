#!/usr/bin/env python3
"""Bundled vs quantised model: retrieval quality on the dev sets and SciFact, and speed ratios.

    .venv/bin/python benchmarks/embedding_variants.py [ONNX ...] [--scifact DIR | --no-scifact]
        [--sets flask ...] [--modes hybrid] [--speed-only]

Each ONNX file (default: the shipped fast model, bot/model/) runs through the
same LocalEmbedder code as the bundled model, under its own model id and cache
folder, so no vector is shared. Quality is benchmarks/quality.py's scoring;
speed is passages/s and sentences/s of every model on the same texts, measured
back to back in rounds (bundled, variant, bundled, ...) so a loaded machine
shows in the ratio less than in the absolute numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL, knowledge_sentences, print_table  # noqa: E402
from benchmarks.embedding import throughput  # noqa: E402
from benchmarks.quality import DEFAULT_CACHE, DEV_SETS, dev_set_db, dev_set_rows, scifact_rows  # noqa: E402
from bot.embeddings import BUNDLED_MAX_TOKENS, FAST_ONNX_PATH, MODEL_DIR, LocalEmbedder  # noqa: E402
from bot.evaluation import load_beir  # noqa: E402
from bot.settings import SEARCH_MODES  # noqa: E402


def embedders(paths: list[Path]) -> dict[str, LocalEmbedder]:
    models = {"bundled": LocalEmbedder.bundled()}
    for path in paths:
        models[path.stem] = LocalEmbedder(
            path, MODEL_DIR / "tokenizer.json", model_id=f"variant-{path.stem}", max_tokens=BUNDLED_MAX_TOKENS
        )
    return models


def speed_rows(models: dict[str, LocalEmbedder], passages: list[str], sentences: list[str], rounds: int) -> list:
    best: dict[str, list[float]] = {name: [0.0, 0.0] for name in models}
    for _ in range(rounds):
        for name, embedder in models.items():
            best[name][0] = max(best[name][0], throughput(embedder, passages, 64))
            best[name][1] = max(best[name][1], throughput(embedder, sentences, 32))
    base = best["bundled"]
    return [[name, f"{p:.1f}", f"{p / base[0]:.2f}×", f"{s:.0f}", f"{s / base[1]:.2f}×"] for name, (p, s) in best.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("onnx", nargs="*", type=Path, default=[FAST_ONNX_PATH])
    parser.add_argument("--sets", nargs="*", choices=DEV_SETS, default=DEV_SETS)
    parser.add_argument("--modes", nargs="+", choices=SEARCH_MODES, default=["hybrid", "vector"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE / "variants")
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact")
    parser.add_argument("--no-scifact", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    models = embedders(args.onnx)
    if args.scifact.is_dir():
        passages = [f"{title} {text}" for title, text in list(load_beir(args.scifact).corpus.values())[:200]]
    else:
        passages = knowledge_sentences(200)
    print_table("Speed (best of rounds, same texts, back to back)",
                ["model", "passages/s", "ratio", "sentences/s", "ratio"],
                speed_rows(models, passages, knowledge_sentences(1000), args.rounds))
    if args.speed_only:
        return
    rows, sci = [], []
    for name, embedder in models.items():
        cache = args.cache_dir / name
        for dev_set in args.sets:
            rows += [[name, *r] for r in dev_set_rows(dev_set, dev_set_db(dev_set, embedder, cache), embedder, args.modes)]
        if args.scifact.is_dir() and not args.no_scifact:
            sci += [[name, *r] for r in scifact_rows(args.scifact, embedder, cache, args.modes)]
    print_table("Dev sets", ["model", "set", "split", "questions (unanswerable)", "mode",
                             "hit@1", "hit@3", "mrr", "flag_precision", "flag_recall", "false_flags"], rows)
    if sci:
        print_table("SciFact test", ["model", "set", "split", "mode", "ndcg@10", "recall@100"], sci)


if __name__ == "__main__":
    main()
