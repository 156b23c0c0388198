"""A poisoned or unlucky knowledge folder: bad entries are skipped with a reason, nothing outside is read.

Real files, symlinks and sparse files in temp folders, indexed into real SQLite
with the real model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot import indexer
from bot.indexer import IndexProgress, IndexReport, index_folder
from bot.loaders import MAX_FILE_BYTES, TOO_LARGE
from bot.search import search
from bot.store import Store, open_store
from tests.conftest import make_settings

PARKING = "# Parking\n\nStaff park on level -2 of the Harbour garage; spaces 40 to 80 are ours.\n"
PRINTER = "# Printers\n\nThe printer on floor 3 is called Kestrel; scan to email from its touch screen.\n"
SECRET = "SLACK_BOT_TOKEN=xoxb-outside-secret-1234\nDATABASE_PASSWORD=hunter2-outside\n"


def index(store: Store, embedder, folder: Path, tmp_path: Path, **kwargs: object) -> IndexReport:
    return index_folder(store, embedder, make_settings(tmp_path, knowledge_dir=folder), **kwargs)


def indexed_text(store: Store) -> str:
    return "\n".join(row[0] for row in store.conn.execute("SELECT text FROM chunks"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "parking.md").write_text(PARKING)
    return folder


def test_symlink_loops_are_skipped_with_a_reason_and_the_rest_indexed(folder, tmp_path, embedder):
    (folder / "self.md").symlink_to("self.md")
    (folder / "ping.md").symlink_to("pong.md")
    (folder / "pong.md").symlink_to("ping.md")
    (folder / "spiral").symlink_to("spiral")
    (folder / "docs").mkdir()
    (folder / "docs" / "gone.md").symlink_to("../nowhere.md")
    with open_store(tmp_path / "kb.sqlite3") as store:
        report = index(store, embedder, folder, tmp_path)
        assert report.added == ["parking.md"]
        assert report.skipped == {
            "self.md": "symlink loop",
            "ping.md": "symlink loop",
            "pong.md": "symlink loop",
            "spiral": "symlink loop",
            "docs/gone.md": "broken symlink (its target does not exist)",
        }
        assert search(store, embedder, "where do staff park", k=1).hits[0].path == "parking.md"


def test_file_swapped_for_a_symlink_after_the_scan_is_not_read(folder, tmp_path, embedder, monkeypatch):
    """The swap happens between the folder scan and the read, as an attacker racing the indexer would.

    Files are read one at a time here (no parsing ahead), so the swap after the first file lands
    before the others are read, whatever the folder's size.
    """
    monkeypatch.setattr(indexer, "PARSE_AHEAD_FILES", 0)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".env").write_text(SECRET)
    (outside / "printers.md").write_text("# Printers\n\n" + SECRET)
    (folder / "zz-notes.md").write_text(PRINTER)
    (folder / "team").mkdir()
    (folder / "team" / "printers.md").write_text(PRINTER)

    swapped = []

    def swap_after_first_read(progress: IndexProgress) -> None:
        if progress.files_done == 1 and not swapped:
            swapped.append(progress.path)
            (folder / "zz-notes.md").unlink()
            (folder / "zz-notes.md").symlink_to(outside / ".env")
            shutil.rmtree(folder / "team")
            (folder / "team").symlink_to(outside)  # a folder on the way, swapped too

    with open_store(tmp_path / "kb.sqlite3") as store:
        report = index(store, embedder, folder, tmp_path, progress=swap_after_first_read)
        assert report.added == ["parking.md"]
        assert report.skipped == {
            "team/printers.md": "a folder on its path was replaced since the folder scan: not read",
            "zz-notes.md": "replaced by a symlink since the folder scan: not read",
        }
        assert "outside-secret" not in indexed_text(store) and "hunter2" not in indexed_text(store)

        # The next run sees the symlinks at the scan and does not follow them either.
        again = index(store, embedder, folder, tmp_path)
        assert again.skipped == {
            "team": "symlink to outside the knowledge folder (not followed)",
            "zz-notes.md": "symlink to outside the knowledge folder (not followed)",
        }
        assert "outside-secret" not in indexed_text(store)


def _bytes_read_by_this_process() -> int:
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("needs /proc/self/io (Linux) to count the bytes read")
    fields = dict(line.split(": ") for line in io_stats.read_text().splitlines())
    return int(fields["rchar"])


def test_huge_file_is_refused_by_its_size_without_being_read(folder, tmp_path, embedder):
    with open(folder / "dump.md", "wb") as huge:
        huge.truncate(3 * 1024**3)  # a 3 GB sparse file: no disk used, 3 GB to read
    with open_store(tmp_path / "kb.sqlite3") as store:
        before = _bytes_read_by_this_process()
        report = index(store, embedder, folder, tmp_path)
        read = _bytes_read_by_this_process() - before
    assert report.skipped == {"dump.md": TOO_LARGE}
    assert report.added == ["parking.md"]
    assert read < MAX_FILE_BYTES, f"{read:,} bytes read"


def test_symlink_to_a_file_inside_is_indexed_once_under_its_real_path(folder, tmp_path, embedder):
    (folder / "alias.md").symlink_to("parking.md")
    (folder / "team").mkdir()
    (folder / "team" / "garage.md").symlink_to("../parking.md")
    (folder / "team" / "printers.md").write_text(PRINTER)
    (folder / "mirror").symlink_to("team")
    (folder / "drafts.md").symlink_to(".drafts/printers-2.md")  # the only way to reach a hidden file
    (folder / ".drafts").mkdir()
    (folder / ".drafts" / "printers-2.md").write_text(PRINTER.replace("Kestrel", "Osprey"))
    with open_store(tmp_path / "kb.sqlite3") as store:
        report = index(store, embedder, folder, tmp_path)
        assert sorted(report.added) == ["drafts.md", "parking.md", "team/printers.md"]
        assert report.skipped == {
            "alias.md": "duplicate of parking.md (a link to the same file)",
            "team/garage.md": "duplicate of parking.md (a link to the same file)",
            "mirror": "symlink to a folder (not followed)",
        }
        paths = [hit.path for hit in search(store, embedder, "where do staff park", k=5).hits]
        assert paths.count("parking.md") == 1 and "alias.md" not in paths
        assert indexed_text(store).count("Harbour garage") == 1
