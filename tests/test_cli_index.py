"""`kb-bot index` and the first `kb-bot ask`, run as a user runs them: real processes, real files."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.lock import index_lock
from bot.store import open_store

ROOT = Path(__file__).resolve().parent.parent


def kb_bot(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot", "--env-file", "/nonexistent", *args]


def without_root_privileges(command: list[str], unreadable: Path) -> list[str]:
    """`command` as it runs for an ordinary user: root reads any folder, whatever its mode.

    As root, setpriv (util-linux) empties the capability bounding set, so the
    process keeps uid 0 (and its access to the venv) but loses the override.
    """
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which reads any folder, and setpriv (util-linux) is missing to drop that")
    dropped = [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]
    probe = subprocess.run([*dropped, "ls", str(unreadable)], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("running as root, and setpriv could not drop the capability to read any folder here")
    return [*dropped, *command]


@pytest.mark.sqlite_only("file permissions: as root it drops the override to read any file, which also shuts it out of "
                         "the test PostgreSQL's socket (in the server user's folder)")
def test_unreadable_folder_is_listed_as_skipped_in_the_index_report(tmp_path, kb_db):
    folder = tmp_path / "kb"
    (folder / "locked").mkdir(parents=True)
    (folder / "parking.md").write_text("# Parking\n\nStaff park on level -2 of the Harbour garage.\n")
    (folder / "locked" / "plans.md").write_text("# Plans\n\nThe reorganisation is announced in May.\n")
    (folder / "locked").chmod(0)
    try:
        command = without_root_privileges(
            kb_bot("index", "--knowledge", str(folder), "--db", str(kb_db)), folder / "locked"
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    finally:
        (folder / "locked").chmod(0o700)
    assert result.returncode == 0, result.stderr
    assert "files: 1 added, 0 changed, 0 unchanged, 0 removed, 1 skipped" in result.stdout
    assert "skipped locked/: unreadable folder (Permission denied)" in result.stdout


def knowledge(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "parking.md").write_text("# Parking\n\nStaff park on level -2 of the Harbour garage.\n")
    (folder / "printers.md").write_text("# Printers\n\nThe printer on floor 3 is called Kestrel.\n")
    (folder / "wifi.md").write_text("# Wifi\n\nVisitor wifi is called Lighthouse-Guest.\n")
    return folder


def test_ask_on_an_empty_database_does_not_index_while_a_reindex_holds_the_lock(tmp_path, kb_db):
    db = kb_db
    args = ["--env-file", "/nonexistent", "ask", "where do staff park", "--db", str(db),
            "--knowledge", str(knowledge(tmp_path))]
    with index_lock(db):  # a `kb-bot index` of the same database is running
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "LockHeldError: a re-index of" in result.output and "is already running" in result.output
    with open_store(db) as store:
        assert store.active_generation() is None
        assert store.stats()["cache_entries"] == 0  # nothing embedded twice


def test_ask_on_an_empty_database_shows_indexing_progress(tmp_path, kb_db):
    """In a terminal the first question shows the same progress bar as `kb-bot index`."""
    folder = knowledge(tmp_path)
    command = kb_bot("ask", "where do staff park", "-k", "1", "--db", str(kb_db),
                     "--knowledge", str(folder))
    terminal, terminal_end = pty.openpty()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal_end, stdin=subprocess.DEVNULL, cwd=ROOT)
    os.close(terminal_end)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    answer = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, shown.decode()
    assert "3/3 files, " in shown.decode() and "ETA " in shown.decode()
    assert "files: 3 added" in shown.decode()
    assert "parking.md" in answer
