#!/usr/bin/env python3
"""Standard vs quantised model files: speed, closeness of vectors, retrieval quality.

    .venv/bin/python benchmarks/embedding_variants.py [ONNX ...] [--scifact DIR | --no-scifact]
        [--sets flask ...] [--modes hybrid] [--rounds 2] [--fidelity 2000] [--speed-only]

Each ONNX file (default: the standard model's, bot/model/; make others with
`scripts/fuse_model.py --int8 VARIANT --out FILE`) runs through the same
LocalEmbedder code as the fp32 variant (the reference: the default before issue
14), under its own model id and cache folder, so no vector is shared. Printed,
per file:
- speed: passages/s and sentences/s on the same texts, measured back to back in
  rounds (fp32, variant, fp32, ...) so a loaded machine shows in the
  ratio less than in the absolute numbers (`--rounds 0`: skipped);
- fidelity: min / median cosine to the fp32 model's vector over
  `--fidelity` SciFact passages (the embedded text's first 256 word pieces);
- quality: benchmarks/quality.py's scoring of the dev sets, and SciFact test
  nDCG@10 to four decimals (the guard is 0.7376).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL, knowledge_sentences, print_table  # noqa: E402
from benchmarks.embedding import throughput  # noqa: E402
from benchmarks.quality import DEFAULT_CACHE, DEV_SETS, dev_set_db, dev_set_rows  # noqa: E402
from bot.embeddings import BUNDLED_MAX_TOKENS, MODEL_DIR, STANDARD_ONNX_PATH, LocalEmbedder  # noqa: E402
from bot.evaluation import load_beir, run_beir  # noqa: E402
from bot.settings import SEARCH_MODES, load_settings  # noqa: E402


def embedders(paths: list[Path]) -> dict[str, LocalEmbedder]:
    models = {"fp32": LocalEmbedder.bundled(variant="fp32")}
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
    base = best["fp32"]
    return [[name, f"{p:.1f}", f"{p / base[0]:.2f}×", f"{s:.0f}", f"{s / base[1]:.2f}×"] for name, (p, s) in best.items()]


def fidelity_rows(models: dict[str, LocalEmbedder], passages: list[str]) -> list:
    """Each model's cosine to the fp32 model's vector of the same passage."""
    reference = models["fp32"].embed(passages, truncate=True)
    rows = []
    for name, embedder in list(models.items())[1:]:
        cosines = (embedder.embed(passages, truncate=True) * reference).sum(axis=1)
        rows.append([name, len(passages), f"{cosines.min():.4f}", f"{np.percentile(cosines, 1):.4f}",
                     f"{statistics.median(cosines):.4f}"])
    return rows


def scifact_rows(folder: Path, embedder: LocalEmbedder, cache: Path, modes: list[str]) -> list:
    results = run_beir(load_beir(folder, "test"), embedder, load_settings(environ={}, env_file=None),
                       cache / "scifact-cache.sqlite3", modes)
    return [[mode, f"{s['ndcg@10']:.4f}", f"{s['recall@100']:.4f}"] for mode, s in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("onnx", nargs="*", type=Path, default=[STANDARD_ONNX_PATH])
    parser.add_argument("--sets", nargs="*", choices=DEV_SETS, default=DEV_SETS)
    parser.add_argument("--modes", nargs="+", choices=SEARCH_MODES, default=["hybrid", "vector"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE / "variants")
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact")
    parser.add_argument("--no-scifact", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="speed rounds (0: no speed)")
    parser.add_argument("--fidelity", type=int, default=2000, help="SciFact passages for the cosine check (0: none)")
    args = parser.parse_args()

    models = embedders(args.onnx)
    if args.scifact.is_dir():
        corpus = list(load_beir(args.scifact).corpus.values())[:max(200, args.fidelity)]
        passages = [f"{title} {text}" for title, text in corpus]
    else:
        passages = knowledge_sentences(200)
    if args.rounds:
        print_table("Speed (best of rounds, same texts, back to back)",
                    ["model", "passages/s", "ratio", "sentences/s", "ratio"],
                    speed_rows(models, passages[:200], knowledge_sentences(1000), args.rounds))
    if args.speed_only:
        return
    if args.fidelity:
        print_table("Cosine to the fp32 model's vectors", ["model", "passages", "min", "1st percentile", "median"],
                    fidelity_rows(models, passages[:args.fidelity]))
    for name, embedder in models.items():  # one model at a time, printed as it is done
        cache = args.cache_dir / name
        rows = []
        for dev_set in args.sets:
            rows += dev_set_rows(dev_set, dev_set_db(dev_set, embedder, cache, {}), embedder, args.modes)
        if rows:
            print_table(f"Dev sets, {name}", ["set", "split", "questions (unanswerable)", "mode", "hit@1", "hit@3",
                                              "mrr", "flag_precision", "flag_recall", "false_flags"], rows)
        if args.scifact.is_dir() and not args.no_scifact:
            print_table(f"SciFact test, {name}", ["mode", "ndcg@10", "recall@100"],
                        scifact_rows(args.scifact, "test", embedder, cache, args.modes, {}))
        sys.stdout.flush()

if __name__ == "__main__":
    main()
