"""Both stores, one behaviour: the SQLite file and a real PostgreSQL + pgvector run the same store tests.

The PostgreSQL cases use the server `tests/pg_server.py` starts (skipped, with
the reason, only where its wheel is missing); each test gets a new database.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.errors import LockHeldError
from bot.indexer import index_folder
from bot.keyword_index import keyword_scores
from bot.search import search
from bot.store import Message, open_store
from bot.store.sqlite.store import SqliteStore
from tests.conftest import KNOWLEDGE, make_settings
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401

STORES = ["sqlite", "postgresql"]


def new_location(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a new, empty store of `kind` goes (as KB_DB would say)."""
    return str(tmp_path / "kb.sqlite3") if kind == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_and_location(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, sample_db: Path
) -> Iterator[tuple[object, str]]:
    location = new_location(kind, request, tmp_path)
    with open_store(location) as store:
        warm_cache(store, sample_db)
        yield store, location


def warm_cache(store, sample_db: Path) -> None:
    """Give `store` the sample index's embedding cache: indexing the sample folder then embeds nothing."""
    with SqliteStore(sample_db) as sample:
        rows = [tuple(r) for r in sample.conn.execute("SELECT key, model, dim, vector, created_at FROM embedding_cache")]
    insert = "INSERT INTO embedding_cache (key, model, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)"
    if isinstance(store, SqliteStore):
        with store.atomic():
            store.conn.executemany(insert, rows)
        return
    with store.atomic(), store.conn.cursor() as cursor:
        cursor.executemany(insert.replace("?", "%s"), rows)


@pytest.fixture
def store(store_and_location: tuple[object, str]):
    return store_and_location[0]


def test_indexes_the_sample_folder_and_answers_from_it(store, embedder, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    report = index_folder(store, embedder, settings)
    assert report.chunks > 0 and not report.skipped
    stats = store.stats()
    assert (stats["documents"], stats["chunks"]) == (len(report.added), report.chunks)

    for mode in ("vector", "keyword", "hybrid"):
        hits = search(store, embedder, "how do I get reimbursed for a taxi", k=3, mode=mode).hits
        assert hits and "expense" in hits[0].path.lower(), (mode, [h.path for h in hits])


def test_both_stores_give_the_same_keyword_scores_and_ranking(
    embedder, tmp_path: Path, postgres_url: str, sample_db: Path
) -> None:
    from bot.store.postgres import PostgresStore

    settings = make_settings(tmp_path)
    with SqliteStore(settings.db_path) as lite, PostgresStore(postgres_url) as pg:
        warm_cache(lite, sample_db)
        warm_cache(pg, sample_db)
        index_folder(lite, embedder, settings)
        index_folder(pg, embedder, settings)
        for question in ("taxi receipt reimbursement", "vpn password reset", "on_call rotation pager", "the"):
            scores = [_scores_by_passage(s, question) for s in (lite, pg)]
            assert scores[0].keys() == scores[1].keys() and scores[0], question
            for passage, score in scores[0].items():
                assert scores[1][passage] == pytest.approx(score, rel=1e-5), (question, passage)
        for question in ("how do I get reimbursed for a taxi", "who do I call when production is down"):
            results = [search(s, embedder, question, k=5) for s in (lite, pg)]
            assert [h.path for h in results[0].hits] == [h.path for h in results[1].hits]
            assert [h.score for h in results[0].hits] == pytest.approx([h.score for h in results[1].hits], abs=1e-4)


def _scores_by_passage(store, question: str) -> dict[tuple[str, int], float]:
    gen = store.active_generation()
    found = keyword_scores(store, gen, question)
    rows = store.chunks_by_id(found.ids.tolist())
    return {(rows[i].path, rows[i].start_line): s for i, s in zip(found.ids.tolist(), found.scores.tolist())}


def test_exact_nearest_is_the_brute_force_answer(store, embedder, tmp_path: Path) -> None:
    index_folder(store, embedder, make_settings(tmp_path))
    gen = store.active_generation()
    ids, vectors = (np.concatenate(part) for part in zip(*store.vector_pages(gen)))
    for question in ("taxi receipts", "rotate the database password", "parental leave weeks"):
        query = embedder.embed([question])[0]
        cosines = vectors @ query
        best = np.argsort(-cosines)[:10]
        found = store.exact_nearest(gen, query, 10)
        assert [chunk for chunk, _ in found] == ids[best].tolist()
        assert [score for _, score in found] == pytest.approx(cosines[best].tolist(), abs=1e-5)


def test_reindex_follows_edits_and_deletions(store, embedder, tmp_path: Path) -> None:
    folder = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, folder)
    settings = make_settings(tmp_path, knowledge_dir=folder)
    first = index_folder(store, embedder, settings)
    victim = sorted(folder.rglob("*.md"))[0]
    victim.write_text("# Zanzibar ferries\n\nThe zanzibar ferry leaves at noon from pier 9.\n", encoding="utf-8")
    gone = sorted(folder.rglob("*.md"))[1]
    gone.unlink()

    second = index_folder(store, embedder, settings)
    assert second.changed == [victim.relative_to(folder).as_posix()]
    assert second.removed == [gone.relative_to(folder).as_posix()]
    assert second.texts_embedded == 1
    hits = search(store, embedder, "zanzibar ferry", k=1, mode="keyword").hits
    assert hits[0].path == victim.relative_to(folder).as_posix()
    paths = set(store.documents(store.active_generation()))
    assert gone.relative_to(folder).as_posix() not in paths
    assert store.stats()["chunks"] == second.chunks < first.chunks + 5


def test_a_full_rebuild_reads_every_vector_from_the_cache(store, embedder, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = index_folder(store, embedder, settings)
    rebuilt = index_folder(store, embedder, settings, full=True)
    assert rebuilt.texts_embedded == 0 and rebuilt.cache_hits == first.cache_hits + first.texts_embedded > 0
    assert store.stats()["chunks"] == first.chunks
    gens = store.active_generation()
    assert len(store.chunk_ids(gens)) == first.chunks


def test_a_flag_is_claimed_once_by_two_replicas_racing(store_and_location) -> None:
    store, location = store_and_location
    later = Message("C1", "200.0", None, "U2", "how do I reset the vpn?", 200.0)
    earlier = Message("C1", "100.0", None, "U1", "how to reset vpn password", 100.0)
    store.messages.record_messages([earlier, later])
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def replica() -> None:
        with open_store(location) as mine:
            barrier.wait()
            won.append(mine.messages.claim_flag(later, earlier, 0.9, "thread"))

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]
    assert store.messages.flagged_laters() == {("C1", "200.0")}
    store.messages.release_flags([(later, earlier)])
    assert store.messages.claim_flag(later, earlier, 0.9, "thread")


def test_message_state_round_trips(store) -> None:
    msgs = store.messages
    first = Message("C1", "100.0", None, "U1", "where is the holiday calendar", 100.0)
    second = Message("C2", "101.0", "100.5", "U2", "holiday calendar location?", 101.0)
    assert msgs.record_messages([first, second]) == 2
    assert msgs.record_messages([first]) == 0
    assert [m.ts for m in msgs.unscanned_messages(["C1"])] == ["100.0"]
    msgs.set_prepared([(first, b"k1"), (second, None)], "rules-1")
    assert msgs.unprepared_messages(0, 200, "rules-1") == []
    assert [m.ts for m in msgs.unprepared_messages(0, 200, "rules-2")] == ["100.0", "101.0"]
    store.cache_vectors("m", ["x"], np.ones((1, 4), np.float32))
    msgs.mark_scanned([first])
    msgs.edit_message(channel="C1", ts="100.0", text="where is the new holiday calendar")
    assert [m.ts for m in msgs.unscanned_messages()] == ["100.0", "101.0"]
    msgs.delete_message(channel="C2", ts="101.0")
    assert msgs.get_message("C2", "101.0") is None
    assert msgs.remember_event("Ev1") and not msgs.remember_event("Ev1")
    assert msgs.channel_cursor("C1") is None
    msgs.set_channel_cursor("C1", "100.0")
    msgs.set_channel_cursor("C1", "150.0")
    assert msgs.channel_cursor("C1") == "150.0"
    edited = msgs.get_message("C1", "100.0")
    assert msgs.claim_flag(edited, edited, 0.8, "thread")
    feedback = msgs.record_not_same("C1", "100.0", "U9")
    assert feedback and feedback.reported_by == "U9" and msgs.all_feedback() == [feedback]
    assert msgs.record_not_same("C9", "1.0", "U9") is None


def test_cache_keeps_vectors_and_replaces_a_stale_dimension(store) -> None:
    store.cache_vectors("m", ["a", "b"], np.arange(8, dtype=np.float32).reshape(2, 4))
    found = store.cached_vectors("m", ["a", "b", "c"])
    assert set(found) == {"a", "b"} and found["b"].tolist() == [4, 5, 6, 7]
    assert store.cached_vectors("m", ["a"], dim=8) == {}
    store.cache_vectors("m", ["a"], np.ones((1, 8), np.float32))
    assert store.cached_vectors("m", ["a"], dim=8)["a"].shape == (8,)
    assert store.cached_vectors("other", ["a"]) == {}


# --- PostgreSQL across replicas -------------------------------------------------


def test_the_reindex_lock_is_the_databases_and_dies_with_its_holder(postgres_url: str) -> None:
    from bot.store.postgres import PostgresStore

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom bot.store.postgres import PostgresStore\n"
         "with PostgresStore(sys.argv[1]) as s, s.index_lock():\n    print('held', flush=True); time.sleep(60)\n",
         postgres_url],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with PostgresStore(postgres_url) as store:
            with pytest.raises(LockHeldError, match="already running"), store.index_lock():
                pass
            holder.kill()
            holder.wait()
            assert _lock_frees_within(store, seconds=10)  # once the server sees the session end, its lock goes
    finally:
        holder.kill()
        holder.stdout.close()


def _lock_frees_within(store, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with store.index_lock():
                return True
        except LockHeldError:
            time.sleep(0.05)
    return False


def test_one_replica_leads_the_duplicate_scan_until_its_lease_runs_out(postgres_url: str) -> None:
    from bot.lock import leads

    other = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom bot.lock import leads\nprint(leads(sys.argv[1], 'dupes-scan', 2.0))",
         postgres_url],
        capture_output=True, text=True, timeout=120,
    )
    assert other.stdout.strip() == "True", other.stderr  # a replica that has since died took the lease
    taken = time.monotonic()
    assert not leads(postgres_url, "dupes-scan", 2.0)  # still its, for 2 s
    assert leads(postgres_url, "another-job", 2.0)
    while time.monotonic() - taken < 2.5:
        time.sleep(0.1)
    assert leads(postgres_url, "dupes-scan", 2.0)  # it ran out: this replica leads now
    assert leads(postgres_url, "dupes-scan", 2.0)  # and renews its own


def test_migrations_run_once_when_replicas_start_together(postgres_url: str) -> None:
    from bot.store.postgres import PostgresStore
    from bot.store.postgres.migrations import MIGRATIONS, migrate

    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresStore(postgres_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PostgresStore(postgres_url) as store:
        assert migrate(store.conn) == []
        rows = store.conn.execute("SELECT name FROM _migrations ORDER BY name").fetchall()
        assert [r[0] for r in rows] == [m.__name__ for m in MIGRATIONS]


def test_stats_name_the_store_and_server(postgres_url: str) -> None:
    from bot.store.postgres import PostgresStore

    with PostgresStore(postgres_url) as store:
        stats = store.stats()
    assert stats["store"] == "postgresql"
    assert stats["server"].startswith("PostgreSQL 18") and "pgvector 0.8" in stats["server"]


def test_a_wrong_password_or_host_is_one_line_without_the_secret(postgres_server: str) -> None:
    from bot.errors import DatabaseError
    from bot.store.postgres import PostgresStore

    with pytest.raises(DatabaseError) as caught:
        PostgresStore("postgresql://kb:hunter2@127.0.0.1:1/kb?connect_timeout=1")
    message = str(caught.value)
    assert "hunter2" not in message and "\n" not in message.strip() and "cannot connect" in message


def test_the_cli_indexes_and_answers_from_postgresql_by_url(postgres_url: str, sample_db: Path) -> None:
    import json
    import os

    from bot.store.postgres import PostgresStore

    with PostgresStore(postgres_url) as store:
        warm_cache(store, sample_db)
    env = {**os.environ, "KB_DB": postgres_url, "KB_KNOWLEDGE_DIR": str(KNOWLEDGE)}

    def kb_bot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=300)

    indexed = kb_bot("index")
    assert indexed.returncode == 0, indexed.stderr
    stats = json.loads(kb_bot("stats", "--json").stdout)
    assert stats["store"] == "postgresql" and stats["server"].startswith("PostgreSQL 18") and stats["chunks"] > 0
    answer = json.loads(kb_bot("ask", "--json", "how do I get reimbursed for a taxi").stdout)
    assert answer["hits"][0]["path"] == "hr/expenses.md"
