"""Questions asked while full re-indexes swap generations: every one answered, from one generation.

Askers are threads with a Store each, as `kb-bot serve` runs them, on each store
with the real model; the re-indexes are real `index_folder(full=True)` runs on
the same store.
"""

from __future__ import annotations

import threading
from pathlib import Path

from bot.indexer import index_folder
from bot.search import search
from bot.store import open_store
from tests.conftest import KNOWLEDGE, make_settings

QUESTIONS = [
    "how do I get reimbursed for a taxi",
    "vpn keeps disconnecting",
    "can I work from Portugal for a month",
    "who approves expenses",
]
FILES = ["hr/expenses.md", "it/vpn-setup.md", "hr/remote-work.md", "it/laptops.txt"]


def test_full_reindexes_while_asking_lose_no_answer(tmp_path: Path, kb_db: Path | str, embedder) -> None:
    folder = tmp_path / "knowledge"
    for name in FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((KNOWLEDGE / name).read_bytes())
    settings = make_settings(tmp_path, knowledge_dir=folder, db_path=kb_db)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)

    stop = threading.Event()
    answered: list[int] = []
    failures: list[str] = []

    def ask(offset: int) -> None:
        with open_store(settings.db_path) as store:
            count = 0
            while not stop.is_set():
                question = QUESTIONS[(offset + count) % len(QUESTIONS)]
                try:
                    result = search(store, embedder, question, k=5)
                except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                    failures.append(f"{question}: {type(exc).__name__}: {exc}")
                else:
                    if not result.hits:
                        failures.append(f"{question}: no hits")
                count += 1
            answered.append(count)

    askers = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in askers:
        thread.start()
    try:
        with open_store(settings.db_path) as store:
            generations = set()
            for _ in range(6):
                index_folder(store, embedder, settings, full=True)  # texts cached: only writes and the swap
                generations.add(store.active_generation().id)
    finally:
        stop.set()
        for thread in askers:
            thread.join()
    assert len(generations) == 6
    assert sum(answered) > 50, answered
    assert failures == [], f"{len(failures)} of {sum(answered)} questions failed: {failures[:5]}"
