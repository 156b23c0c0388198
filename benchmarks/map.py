#!/usr/bin/env python3
"""Benchmark: `kb-bot map` on 100k passages (target: under a minute on 2 cores).

    .venv/bin/python benchmarks/map.py [--sizes 10000 100000] [--max-points 20000] [--png]

A real kb-bot SQLite file is filled with synthetic clustered 384-d vectors in
8 top folders (benchmarks/search.py's fill_store), 500 questions recorded, and
the map built and written as `kb-bot map` does, timed step by step: loading
the vectors, the projection, the groups and their words, the HTML. With
`--png` (and Chromium), a screenshot of each page is written to the current
folder (tests/test_map.py reads back the points the page drew).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table  # noqa: E402
from benchmarks.search import DIM, clustered_unit_vectors, fill_store, real_texts  # noqa: E402
from bot import knowledge_map  # noqa: E402
from bot.store import Store, cache_key, open_store  # noqa: E402
from bot.vector_index import in_memory  # noqa: E402

MODEL = "synthetic"


def make_store(path: Path, n: int, rng: np.random.Generator) -> Store:
    store = open_store(path)
    docs, _ = real_texts()
    fill_store(store, MODEL, clustered_unit_vectors(n, rng, clusters=40), docs)
    with store.atomic() as conn:
        conn.execute("UPDATE documents SET path = 'folder' || (id % 8) || '/' || path")
    questions = clustered_unit_vectors(500, rng, clusters=40)
    texts = [f"question {i}" for i in range(len(questions))]
    store.cache_vectors(MODEL, texts, questions)
    for i, text in enumerate(texts):
        store.questions.add(text=text, model=MODEL, vector_key=cache_key(MODEL, text), asked_at=time.time(),
                            channel="C1", asker=None, confident=i % 3 > 0, sources=[])
    return store


def one_size(n: int, max_points: int, folder: Path, png: bool) -> list[list[object]]:
    store = make_store(folder / f"map-{n}.sqlite3", n, np.random.default_rng(0))
    with store:
        started = time.perf_counter()
        in_memory(store, store.active_generation())  # what a fresh `kb-bot map` process loads first
        loaded = time.perf_counter()
        built = knowledge_map.build_map(store, max_points=max_points)
        mapped = time.perf_counter()
        page = folder / f"map-{n}.html"
        page.write_text(knowledge_map.render_html(built), encoding="utf-8")
        done = time.perf_counter()
    shot = "–"
    if png:
        shot = f"map-{n}.png"
        knowledge_map.screenshot(page, Path(shot))
    return [[f"{n:,}", f"{len(built.xy):,}", f"{loaded - started:.1f} s", f"{mapped - loaded:.1f} s",
             f"{done - mapped:.2f} s", f"{done - started:.1f} s", f"{page.stat().st_size / 1e6:.1f} MB", shot]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--max-points", type=int, default=knowledge_map.MAX_POINTS)
    parser.add_argument("--png", action="store_true", help="screenshot each map with headless Chromium")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            rows += one_size(n, args.max_points, Path(folder), args.png)
    print_table(f"kb-bot map, {DIM}-d vectors, 8 folders, 500 questions; 2 cores",
                ["passages", "plotted", "load vectors", "project+group+words", "HTML", "total", "file", "PNG"], rows)


if __name__ == "__main__":
    main()
