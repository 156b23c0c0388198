"""Progress of a long index: files done / total, chunks embedded, rate and ETA (bot/indexer.py, bot/cli.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import _duration, _progress, cli
from bot.embeddings import FakeEmbedder
from bot.indexer import IndexProgress, index_folder
from bot.store import open_store
from tests.conftest import make_settings

# Progress needs vectors, not their meaning: the hashed-words embedder instead of the model.
ONLY_SOME_VECTORS = {"EMBED_BACKEND": "fake"}

SUMMARY = re.compile(r"^(\d+)/(\d+) files, (\d+) chunks embedded, [\d.]+ chunks/s, took \d+(m\d\ds|s)$")


def test_index_reports_each_file_and_the_embedded_chunks(knowledge_copy: Path, tmp_path: Path, kb_db: Path | str) -> None:
    events: list[IndexProgress] = []
    settings = make_settings(tmp_path, knowledge_dir=knowledge_copy, db_path=kb_db)
    with open_store(settings.db_path) as store:
        report = index_folder(store, FakeEmbedder(), settings, progress=events.append)
    files = len(report.added) + len(report.skipped)
    assert files > 3
    assert {e.files_total for e in events} == {files}
    done = [e.files_done for e in events]
    assert done == sorted(done) and set(done) == set(range(1, files + 1)), "one step per file, in order"
    chunks = [e.chunks_embedded for e in events]
    assert chunks == sorted(chunks), "chunks embedded never goes down"
    assert chunks[-2] == report.texts_embedded > 0, "the chunks are counted once embedded, before the end"
    assert events[-1].chunks_read == events[-1].chunks_written == report.chunks_written
    last = events[-1]
    assert last.finished and events.count(last) == 1
    assert (last.files_done, last.chunks_embedded) == (files, report.texts_embedded)


def test_index_without_a_terminal_prints_one_summary_line(knowledge_copy: Path, kb_db: Path | str) -> None:
    result = CliRunner().invoke(
        cli, ["--env-file", "/nonexistent/.env", "index", "--knowledge", str(knowledge_copy), "--db", str(kb_db)], obj={},
        env=ONLY_SOME_VECTORS,
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    done, total, embedded = (int(g) for g in match.groups()[:3])
    assert done == total > 3
    assert f"texts embedded: {embedded}," in result.stdout
    assert "\r" not in result.stderr and "\x1b" not in result.stderr


def test_json_index_prints_no_progress(knowledge_copy: Path, kb_db: Path | str) -> None:
    args = ["--env-file", "/nonexistent/.env", "index", "--knowledge", str(knowledge_copy), "--db", str(kb_db), "--json"]
    result = CliRunner().invoke(cli, args, obj={}, env=ONLY_SOME_VECTORS)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_a_terminal_gets_one_rewritten_line_with_an_eta(capsys: pytest.CaptureFixture[str]) -> None:
    show = _progress(live=True)
    show(IndexProgress(1, 10, "docs/first.rst", 40, 0, 0))  # nothing written yet: no rate to guess from
    for done in range(1, 4):  # 40 chunks a file, 30 written after each
        show(IndexProgress(done, 10, f"docs/page-{done}.rst", done * 40, done * 30, done * 30))
    show(IndexProgress(10, 10, "", 400, 400, 300, finished=True))
    err = capsys.readouterr().err
    first, *updates = err.split("\r")[1:]
    assert "ETA …  docs/first.rst" in first
    assert len(updates) == 4
    for done, update in enumerate(updates[:3], start=1):
        assert re.match(rf"{done}/10 files, {done * 30} chunks embedded, [\d.]+ chunks/s, ETA \d+(m\d\ds|s)  "
                        rf"docs/page-{done}\.rst\x1b\[K$", update), update
    assert SUMMARY.match(updates[3].removesuffix("\x1b[K\n")), updates[3]
    assert err.endswith("\n") and err.count("\n") == 1


def test_durations_read_as_minutes_and_seconds() -> None:
    assert _duration(0) == "0s"
    assert _duration(59.4) == "59s"
    assert _duration(75) == "1m15s"
    assert _duration(12 * 60 + 3) == "12m03s"
