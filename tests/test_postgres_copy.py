"""`kb-bot store copy`: an SQLite install moved to PostgreSQL and back, verified, and resumed without rework."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bot.search import search
from bot.store import Message
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
