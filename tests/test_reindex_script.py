"""scripts/reindex.py: the admin entry point, and its lock against concurrent runs."""

from __future__ import annotations

import shutil
import subprocess
import sys

from bot.lock import index_lock
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "reindex.py"


def run_script(*args: str, env_db) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "KB_DB": str(env_db), "HOME": str(env_db.parent)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_second_reindex_is_refused_while_the_lock_is_held(tmp_path, sample_db, knowledge_copy):
    db = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, db)
    with index_lock(db):
        result = run_script("--knowledge", str(knowledge_copy), env_db=db)
    assert result.returncode == 1
    assert "already running" in result.stderr and "pid" in result.stderr
    assert "Traceback" not in result.stderr

    result = run_script("--knowledge", str(knowledge_copy), env_db=db)
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout and "texts embedded: 0" in result.stdout


def test_dry_run_from_cron_prints_a_summary(tmp_path, knowledge_copy):
    result = run_script("--dry-run", "--knowledge", str(knowledge_copy), env_db=tmp_path / "new.sqlite3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Would index")
    assert "texts to embed" in result.stdout
