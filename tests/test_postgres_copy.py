"""`kb-bot store copy`: an SQLite install moved to PostgreSQL and back, verified, and resumed without rework."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bot.chunking import Chunk
from bot.search import search
from bot.store import Message, open_store
from bot.store.sqlite.store import SqliteStore
from tests.pg_server import postgres_server_fixture, postgres_url_fixture  # noqa: F401


def kb_bot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=600)


def test_copy_to_postgresql_and_back_keeps_index_cache_and_slack_state(
    sample_db: Path, tmp_path: Path, postgres_url: str, embedder
) -> None:
    from bot.store.postgres import PostgresStore

    source = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, source)
    later = Message("C1", "200.0", None, "U2", "how do I reset the vpn?", 200.0)
    earlier = Message("C1", "100.0", None, "U1", "how to reset vpn password", 100.0)
    with SqliteStore(source) as store:
        store.messages.record_messages([earlier, later])
        store.messages.delete_message(channel="C1", ts="100.0")
        store.messages.set_channel_cursor("C1", "200.0")
        assert store.messages.claim_flag(later, earlier, 0.9, "thread")
        store.messages.mark_posted([(later, "1700000000.000001")])
        expected = store.stats()
        question = "how do I get reimbursed for a taxi"
        expected_hits = [(h.path, h.start_line) for h in search(store, embedder, question, k=5).hits]

    done = kb_bot("store", "copy", str(source), postgres_url)
    assert done.returncode == 0, done.stderr
    assert f"Copied {expected['documents']} document(s), 0 already there" in done.stdout

    with PostgresStore(postgres_url) as pg:
        stats = pg.stats()
        assert {k: stats[k] for k in ("model", "documents", "chunks", "cache_entries")} == {
            k: expected[k] for k in ("model", "documents", "chunks", "cache_entries")}
        assert [(h.path, h.start_line) for h in search(pg, embedder, question, k=5).hits] == expected_hits
        assert pg.messages.get_message("C1", "100.0") is None  # still deleted
        assert pg.messages.get_message("C1", "200.0") == later
        assert pg.messages.channel_cursor("C1") == "200.0"
        assert not pg.messages.claim_flag(later, earlier, 0.9, "thread")  # the flag came along
        assert pg.conn.execute("SELECT posted_ts FROM flagged_pairs").fetchone()[0] == "1700000000.000001"

    again = kb_bot("store", "copy", str(source), postgres_url)
    assert again.returncode == 0, again.stderr
    assert f"Copied 0 document(s), {expected['documents']} already there" in again.stdout

    back = tmp_path / "back.sqlite3"
    home = kb_bot("store", "copy", postgres_url, str(back))
    assert home.returncode == 0, home.stderr
    with SqliteStore(back) as store:
        assert store.stats()["chunks"] == expected["chunks"]
        assert store.messages.channel_cursor("C1") == "200.0"


def test_copy_from_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    done = kb_bot("store", "copy", "postgresql://kb:hunter2@127.0.0.1:1/kb?connect_timeout=1", str(tmp_path / "x.db"))
    assert done.returncode == 1
    assert done.stderr.startswith("Error: DatabaseError: cannot connect") and "hunter2" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- a copy killed mid-way resumes ------------------------------------------------------------------

MODEL, DIM = "all-MiniLM-L6-v2-int8", 384
DOCUMENTS, CHUNKS_PER_DOCUMENT = 600, 4  # a copy of a few seconds each way (a transaction per document)


def big_index(path: Path) -> None:
    """An SQLite index of DOCUMENTS files (random unit vectors: the copy never embeds), with Slack state."""
    rng = np.random.default_rng(7)
    with SqliteStore(path) as store, store.atomic():
        gen = store.create_generation(MODEL, DIM, "/knowledge")
        for n in range(DOCUMENTS):
            vectors = rng.standard_normal((CHUNKS_PER_DOCUMENT, DIM)).astype(np.float32)
            chunks = [Chunk(f"passage {i} of document {n}: words {n * 7 + i}", f"Doc {n} > Part {i}", i * 10 + 1,
                            i * 10 + 9) for i in range(CHUNKS_PER_DOCUMENT)]
            store.replace_document(gen, path=f"folder{n % 10}/doc{n}.md", sha256=f"{n:064x}", size=100 + n,
                                   mtime=1.0 + n, title=f"Document {n}",
                                   chunks=chunks, vectors=vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        store.activate(gen)
        store.messages.record_messages([Message("C1", f"{100 + n}.0", None, "U1", f"message {n}", 100.0 + n)
                                        for n in range(500)])


def documents_copied(location: str) -> int:
    """How many documents the copy has written into `location` so far (0 while it copies the tables)."""
    with open_store(location) as store:
        gen = store.active_generation() or store.building_generation(MODEL, DIM)
        return len(store.documents(gen)) if gen else 0


def copy_killed_mid_way(src: str, dst: str) -> int:
    """Start `kb-bot store copy src dst`, SIGKILL it once some but not all documents are in `dst`; return how many."""
    child = subprocess.Popen([sys.executable, "-m", "bot", "store", "copy", src, dst],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while (copied := documents_copied(dst) if Path(dst).exists() or "://" in dst else 0) < DOCUMENTS // 10:
            assert child.poll() is None, f"the copy ended before it could be killed: {child.stderr.read()!r}"
            assert time.monotonic() < deadline, "the copy wrote no documents in 300 s"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    copied = documents_copied(dst)
    assert 0 < copied < DOCUMENTS, f"not killed mid-way: {copied} of {DOCUMENTS} documents copied"
    return copied


def passages(location: str) -> dict[tuple[str, int], tuple[str, bytes]]:
    """Every passage of the active index by (path, start line): its text and vector (as bytes)."""
    with open_store(location) as store:
        gen = store.active_generation()
        rows = store.chunks_by_id(store.chunk_ids(gen).tolist())
        vectors = {i: v.tobytes() for ids, page in store.vector_pages(gen) for i, v in zip(ids.tolist(), page)}
        found = {(r.path, r.start_line): (r.text, vectors[i]) for i, r in rows.items()}
        assert len(vectors) == len(found) == len(rows)  # no passage twice
        return found


def assert_same_install(src: str, dst: str) -> None:
    """`dst` holds `src`'s passages, each once with an equal vector, one generation, and its messages."""
    mine, theirs = passages(src), passages(dst)
    assert len(theirs) == len(mine) == DOCUMENTS * CHUNKS_PER_DOCUMENT  # nothing twice, nothing missing
    sample = random.Random(1).sample(sorted(mine), 200)
    assert all(theirs[key] == mine[key] for key in sample)
    with open_store(src) as a, open_store(dst) as b:
        assert (a.stats()["documents"], a.stats()["chunks"]) == (b.stats()["documents"], b.stats()["chunks"])
        assert b.building_generation(MODEL, DIM) is None  # the resumed build was activated, not left beside
        assert len(b.messages.unscanned_messages()) == len(a.messages.unscanned_messages()) == 500


def test_a_copy_killed_mid_way_resumes_without_duplicates_both_ways(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "kb.sqlite3"
    big_index(source)

    before = copy_killed_mid_way(str(source), postgres_url)
    done = kb_bot("store", "copy", str(source), postgres_url)
    assert done.returncode == 0, done.stderr
    copied = int(done.stdout.split()[1])
    assert copied <= DOCUMENTS - before and f"{DOCUMENTS - copied} already there" in done.stdout
    assert_same_install(str(source), postgres_url)

    back = tmp_path / "back.sqlite3"
    copy_killed_mid_way(postgres_url, str(back))
    home = kb_bot("store", "copy", postgres_url, str(back))
    assert home.returncode == 0, home.stderr
    assert_same_install(postgres_url, str(back))
