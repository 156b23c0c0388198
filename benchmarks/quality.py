#!/usr/bin/env python3
"""Benchmark 4: answer quality on the dev sets (benchmarks/data) and SciFact.

    .venv/bin/python benchmarks/quality.py [--sets flask 18f-handbook] [--modes hybrid]
        [--cache-dir ~/.cache/kb-bot-quality] [--scifact ../shared/eval/scifact | --no-scifact]
        [--variant standard|fp32] [--chunk-tokens 192 [--chunk-overlap 24]] [--scifact-splits train test]

For each dev set, its `docs/` folder is indexed with the bundled model into a
database kept in the cache folder (a re-run re-chunks every file but embeds
only new text), then its questions are asked in each mode and scored per
split: hit@1, hit@3 and MRR by distinct file, and the "no confident answer"
flag's precision, recall and false flags (answerable questions flagged). Then
SciFact test nDCG@10 through `kb-bot eval beir`'s runner (skipped when the
folder is absent; `--scifact-splits train test` adds train, to choose on).
Choose settings on `train`; quote `test`. `numpy-docs` is large: its first run
embeds 6,384 chunks (about 13 minutes on 2 loaded cores); keep `--cache-dir`.
`--chunk-tokens` re-chunks every set at another passage size: the databases are per set, not per
size, so give each size its own `--cache-dir` (copy a filled one to keep the embeddings it shares).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import SHARED_EVAL, print_table  # noqa: E402
from bot.embeddings import Embedder, LocalEmbedder  # noqa: E402
from bot.evaluation import evaluate_golden, load_beir, load_golden, run_beir  # noqa: E402
from bot.indexer import index_folder  # noqa: E402
from bot.settings import EMBED_LOCAL_VARIANTS, SEARCH_MODES, load_settings  # noqa: E402
from bot.store import open_store  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
DEV_SETS = sorted(p.name for p in DATA.iterdir() if (p / "questions.jsonl").is_file())
# Measured, never fitted on: numpy-docs came after the "not sure" model and stays unseen by it, so its
# numbers show how the model carries to a large Sphinx folder (issue 14's weakest kind).
FIT_SETS = [name for name in DEV_SETS if name != "numpy-docs"]
SPLITS = ("train", "test")
METRICS = ("hit@1", "hit@3", "mrr", "flag_precision", "flag_recall", "false_flags")
DEFAULT_CACHE = Path.home() / ".cache" / "kb-bot-quality"


def add_chunk_options(parser: argparse.ArgumentParser) -> None:
    """--chunk-tokens / --chunk-overlap: measure another passage size than the shipped default."""
    parser.add_argument("--chunk-tokens", type=int, help="passage size in word pieces (KB_CHUNK_TOKENS)")
    parser.add_argument("--chunk-overlap", type=int, help="overlap (KB_CHUNK_OVERLAP_TOKENS); default 1/8 of the size")


def chunk_environ(args: argparse.Namespace) -> dict[str, str]:
    """The KB_CHUNK_* variables the options ask for, validated by load_settings like any other."""
    if args.chunk_tokens is None:
        return {}
    overlap = args.chunk_tokens // 8 if args.chunk_overlap is None else args.chunk_overlap
    return {"KB_CHUNK_TOKENS": str(args.chunk_tokens), "KB_CHUNK_OVERLAP_TOKENS": str(overlap)}


def dev_set_db(name: str, embedder: Embedder, cache_dir: Path, environ: Mapping[str, str]) -> Path:
    """The set's database in `cache_dir`, re-chunked from its files (embeddings come from the cache)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    db = cache_dir / f"{name}.sqlite3"
    settings = load_settings(environ=environ, env_file=None, db_path=db, knowledge_dir=DATA / name / "docs")
    with open_store(db) as store:
        report = index_folder(store, embedder, settings, full=True)
    print(f"{name}: {report.chunks} chunks, {report.texts_embedded} embedded, {report.seconds:.1f} s", file=sys.stderr)
    return db


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def dev_set_rows(name: str, db: Path, embedder: Embedder, modes: list[str]) -> list[list[object]]:
    rows = []
    with open_store(db) as store:
        for split in SPLITS:
            items = load_golden(DATA / name / "questions.jsonl", split)
            for mode in modes:
                scores = evaluate_golden(store, embedder, items, mode)
                counts = f"{scores['queries']} ({scores['unanswerable']})"
                rows.append([name, split, counts, mode, *(cell(scores[m]) for m in METRICS)])
    return rows


def scifact_rows(
    folder: Path, split: str, embedder: Embedder, cache_dir: Path, modes: list[str], environ: Mapping[str, str]
) -> list[list[object]]:
    settings = load_settings(environ=environ, env_file=None)
    results = run_beir(load_beir(folder, split), embedder, settings, cache_dir / "scifact-cache.sqlite3", modes)
    return [["scifact", split, mode, f"{s['ndcg@10']:.4f}", cell(s["recall@100"])] for mode, s in results.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sets", nargs="+", choices=DEV_SETS, default=DEV_SETS)
    parser.add_argument("--modes", nargs="+", choices=SEARCH_MODES, default=list(SEARCH_MODES))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scifact", type=Path, default=SHARED_EVAL / "scifact")
    parser.add_argument("--no-scifact", action="store_true")
    parser.add_argument("--scifact-splits", nargs="+", choices=SPLITS, default=["test"], help="train: to choose on")
    parser.add_argument("--variant", choices=EMBED_LOCAL_VARIANTS, default="standard", help="local model variant")
    add_chunk_options(parser)
    args = parser.parse_args()
    environ = chunk_environ(args)

    embedder = LocalEmbedder.bundled(variant=args.variant)
    rows = []
    for name in args.sets:
        rows += dev_set_rows(name, dev_set_db(name, embedder, args.cache_dir, environ), embedder, args.modes)
    header = ["set", "split", "questions (unanswerable)", "mode", *METRICS]
    print_table("Dev sets: hit@k/MRR over answerable questions; flag = 'no confident answer'", header, rows)
    if args.no_scifact:
        return
    if not args.scifact.is_dir():
        print(f"\nSciFact not found at {args.scifact}: skipped")
        return
    rows = [row for split in args.scifact_splits
            for row in scifact_rows(args.scifact, split, embedder, args.cache_dir, args.modes, environ)]
    print_table("SciFact", ["set", "split", "mode", "ndcg@10", "recall@100"], rows)


if __name__ == "__main__":
    main()
