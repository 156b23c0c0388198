"""The knowledge map: one self-contained HTML file whose data is every passage (or a stated sample).

The Chromium tests open the file in headless Chromium with the network cut off
(every host resolves to nothing, every request goes to a closed proxy) and read
back what the page's script drew; they are skipped, saying so, where no
Chromium is installed (Debian: `apt-get install chromium`). The data tests
parse the HTML's embedded JSON and run everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.knowledge_map import build_map, render_html, screenshot, telling_words
from bot.questions import record_question, record_vote
from bot.search import search
from bot.store import Store
from tests.conftest import make_settings

CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--disable-background-networking"]


def embedded(html: str) -> dict:
    raw = re.search(r'<script id="map-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    return json.loads(raw)


def dump_dom(page: Path) -> str:
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *OFFLINE, "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return run.stdout


@pytest.fixture
def store(sample_store_copy: Store) -> Store:
    return sample_store_copy


def _ask(store, embedder, tmp_path, question, *, unhelpful=False) -> None:
    qid = record_question(store, embedder, make_settings(tmp_path), search(store, embedder, question),
                          channel="C1", user="U1")
    if unhelpful:
        record_vote(store, qid, "U2", helpful=False)


def test_every_passage_is_a_point_coloured_by_its_top_folder(store, embedder, tmp_path):
    _ask(store, embedder, tmp_path, "how do I roll back a deploy")
    _ask(store, embedder, tmp_path, "can I bring my dog to the office </script><script>alert(1)</script>", unhelpful=True)
    html = render_html(build_map(store))
    assert "http://" not in html and "https://" not in html and "<script src" not in html  # nothing to fetch
    data = embedded(html)
    total = len(store.chunk_ids(store.active_generation()))
    assert data["total"] == data["shown"] == total == len(data["x"]) == len(data["folder"])
    assert data["folders"] == ["(top level)", "engineering", "hr", "it", "product"]
    for folder, path in zip(data["folder"], data["path"]):
        top = data["paths"][path].split("/")[0] if "/" in data["paths"][path] else "(top level)"
        assert data["folders"][folder] == top
    assert all(0 <= v <= 1 for v in data["x"] + data["y"])
    assert len(data["labels"]) == 12 and sum(label["size"] for label in data["labels"]) == total
    assert [q["answered"] for q in data["questions"]] == [True, False]
    assert data["questions"][1]["text"].endswith("</script><script>alert(1)</script>")


def test_past_max_points_a_sample_is_plotted_and_the_legend_says_so(store):
    data = embedded(render_html(build_map(store, max_points=100)))
    assert (data["shown"], len(data["x"])) == (100, 100) and data["total"] > 100


def test_labels_are_the_words_that_tell_groups_apart():
    words = telling_words({
        0: ["VPN client setup: install the VPN client", "the VPN drops on wifi"],
        1: ["parental leave is sixteen weeks", "leave for adoption counts as parental leave"],
    }, count=2)
    assert words == {0: ["vpn", "client"], 1: ["leave", "parental"]}


@needs_chromium
def test_the_map_opens_offline_in_headless_chromium_and_draws_every_point(store, embedder, tmp_path):
    _ask(store, embedder, tmp_path, "how do I roll back a deploy")
    page = tmp_path / "map.html"
    page.write_text(render_html(build_map(store)), encoding="utf-8")
    dom = dump_dom(page)
    total = len(store.chunk_ids(store.active_generation()))
    assert f'data-points-drawn="{total}"' in dom and 'data-questions-drawn="1"' in dom
    assert f"Showing all {total} passages." in dom
    png = tmp_path / "map.png"
    screenshot(page, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


@needs_chromium
def test_a_sampled_map_says_so_in_its_legend(store, tmp_path):
    page = tmp_path / "map.html"
    page.write_text(render_html(build_map(store, max_points=100)), encoding="utf-8")
    dom = dump_dom(page)
    assert 'data-points-drawn="100"' in dom and "Showing a random sample of 100 of" in dom


def test_cli_map(sample_db, tmp_path):
    out = tmp_path / "map.html"
    run = CliRunner().invoke(cli, ["--env-file", "/dev/null", "map", "--db", str(sample_db), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert run.output.startswith(f"Wrote {out}: ") and "0 questions" in run.output
    assert embedded(out.read_text(encoding="utf-8"))["shown"] > 0


def test_cli_map_without_an_index_says_so_in_one_line(tmp_path):
    run = CliRunner().invoke(cli, ["--env-file", "/dev/null", "map", "--db", str(tmp_path / "new.sqlite3"),
                                   "--out", str(tmp_path / "m.html")])
    assert run.exit_code == 1 and "IndexNotBuiltError: no index yet" in run.output
