"""Quality floors per dev set (benchmarks/data): each set indexed from scratch with the real model,
its held-out (test) questions asked in hybrid mode. Floors are the measured values less a margin;
benchmarks/quality.py prints the full table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.evaluation import evaluate_golden, load_golden
from bot.indexer import index_folder
from bot.store import open_store
from tests.conftest import ROOT, make_settings

DEV_SETS = ROOT / "benchmarks" / "data"
# set: (hit@1 floor, flag recall floor, false-flag ceiling) on the test split. Measured (hybrid, the
# five-feature "not sure" model fitted on all five sets' train splits): 18f-handbook 1.000 / 0.00 / 0.00,
# flask 0.895 / 0.25 / 0.053, hackerbay-handbook 0.941 / 0.667 / 0.00, jupyter-book 0.875 / 0.75 / 0.00,
# sourcegraph-eng 1.000 / 0.00 / 0.00. Floors allow one more miss where that leaves a floor above zero.
# 18f's flag catches none of its 4 (one with the model fitted on four sets) and sourcegraph-eng's none of
# its 5: raise their floors when they do.
FLOORS = {
    "18f-handbook": (0.9, 0.0, 0.1),
    "flask": (0.84, 0.25, 0.1),
    "hackerbay-handbook": (0.94, 0.33, 0.1),
    "jupyter-book": (0.81, 0.5, 0.1),
    "sourcegraph-eng": (0.9, 0.0, 0.1),
}
# Sets too large to index here: numpy-docs (402 Sphinx pages, ~6.4k chunks) takes minutes to embed on
# 2 cores. They belong to the benchmark only: benchmarks/quality.py measures them like the others.
LARGE_SETS = {"numpy-docs"}


def test_every_dev_set_has_a_floor_or_is_large():
    assert not set(FLOORS) & LARGE_SETS
    assert {p.name for p in DEV_SETS.iterdir() if (p / "questions.jsonl").is_file()} == set(FLOORS) | LARGE_SETS


@pytest.mark.parametrize("name", sorted(FLOORS))
@pytest.mark.quality
def test_dev_set_test_split_floors(name: str, tmp_path: Path, embedder):
    settings = make_settings(tmp_path, knowledge_dir=DEV_SETS / name / "docs")
    items = load_golden(DEV_SETS / name / "questions.jsonl", "test")
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        scores = evaluate_golden(store, embedder, items, "hybrid")
    print(f"\n{name} test:", json.dumps(scores))
    hit_floor, recall_floor, false_ceiling = FLOORS[name]
    assert scores["hit@1"] >= hit_floor
    assert scores["flag_recall"] >= recall_floor
    assert scores["false_flags"] <= false_ceiling
