"""KB_SOURCE_URL: cited paths as links, checked at settings load, through the real CLI and search."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import SettingsError
from bot.search import Hit, search
from bot.settings import load_settings
from bot.slack.format import URL_CHARS, hit_block
from bot.source_links import source_url
from tests.conftest import KNOWLEDGE

GITHUB = "https://github.com/acme/handbook/blob/main/{path}#L{start_line}-L{end_line}"
TAXI = "how do I get reimbursed for a taxi"


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("https://github.com/acme/handbook/blob/{branch}/{path}", "unknown field {branch}"),
        ("https://wiki.example.com/{}", "unknown field {}"),
        ("https://wiki.example.com/{path.upper}", "unknown field {path.upper}"),
        ("https://wiki.example.com/{path", "not a valid template"),
        ("https://wiki.example.com/{path}}", "not a valid template"),
        ("https://wiki.example.com/{path!r}", "conversion in {path!r}"),
        ("https://wiki.example.com/{path:d}", "cannot be filled in"),
        ("javascript:alert(1)//{path}", "must start with http:// or https://"),
        ("https://wiki.example.com/{path}|click", "must not contain '|'"),
    ],
)
def test_a_bad_template_is_refused_at_settings_load_naming_the_problem(template: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"KB_SOURCE_URL": template}, env_file=None)
    message = str(caught.value)
    assert message.startswith("KB_SOURCE_URL ") and says in message and "\n" not in message


def test_a_good_template_loads_and_none_means_no_links() -> None:
    assert load_settings(environ={"KB_SOURCE_URL": f" {GITHUB} "}, env_file=None).source_url == GITHUB
    assert load_settings(environ={}, env_file=None).source_url == ""
    assert source_url("", "hr/expenses.md", 1, 2) is None


def test_each_path_segment_is_percent_encoded_and_slashes_kept() -> None:
    url = source_url(GITHUB, "Team Notes/Café menü #2?.md", 7, 9)
    assert url == "https://github.com/acme/handbook/blob/main/Team%20Notes/Caf%C3%A9%20men%C3%BC%20%232%3F.md#L7-L9"


def test_kb_bot_refuses_to_start_with_a_bad_template_in_one_line(sample_db: Path, monkeypatch) -> None:
    monkeypatch.setenv("KB_SOURCE_URL", "https://github.com/acme/handbook/blob/{branch}/{path}")
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "ask", TAXI, "--db", str(sample_db)])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "{branch}" in result.output, result.output


def ask(db: Path, *flags: str) -> str:
    args = ["--env-file", "/nonexistent", "ask", TAXI, "--db", str(db), "-k", "3", *flags]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_kb_bot_ask_json_has_each_sources_url_only_with_the_setting(sample_db: Path, tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, db)
    monkeypatch.setenv("KB_KNOWLEDGE_DIR", str(KNOWLEDGE))
    assert all("url" not in hit for hit in json.loads(ask(db, "--json"))["hits"])

    monkeypatch.setenv("KB_SOURCE_URL", GITHUB)
    hits = json.loads(ask(db, "--json"))["hits"]
    assert hits[0]["path"] == "hr/expenses.md"
    for hit in hits:
        assert hit["url"] == f"https://github.com/acme/handbook/blob/main/{hit['path']}#L{hit['start_line']}-L{hit['end_line']}"


def test_kb_bot_ask_shows_the_url_after_the_path_only_with_the_setting(sample_db: Path, tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, db)
    assert "https://" not in ask(db)
    monkeypatch.setenv("KB_SOURCE_URL", GITHUB)
    first = ask(db).splitlines()[0]
    path, _, url = first.split("] ", 1)[1].partition("  ")
    assert path.startswith("hr/expenses.md:")
    lines = path.split(":")[1].split("-")
    assert url == f"https://github.com/acme/handbook/blob/main/hr/expenses.md#L{lines[0]}-L{lines[1]}"


def test_python_search_fills_url_from_the_template(sample_store, embedder) -> None:
    bare = search(sample_store, embedder, TAXI, k=2)
    linked = search(sample_store, embedder, TAXI, k=2, source_url=GITHUB)
    assert all(hit.url is None for hit in bare.hits)
    assert [hit.url for hit in linked.hits] == [source_url(GITHUB, h.path, h.start_line, h.end_line) for h in bare.hits]


def test_an_overlong_link_is_left_out_and_the_path_stays_plain() -> None:
    def header(url: str | None) -> str:
        hit = Hit(score=0.8, path="hr/expenses.md", heading=None, text="Taxis.", start_line=1, end_line=2,
                  confident=True, relevance=80, url=url)
        return hit_block(1, hit)["text"]["text"].split("\n")[0]

    assert header(None) == "*1.* `80`  *hr/expenses.md*"
    assert header("https://x.example/a?b=1&c=2") == "*1.* `80`  *<https://x.example/a?b=1&amp;c=2|hr/expenses.md>*"
    assert header("https://x.example/" + "a" * URL_CHARS) == header(None)
