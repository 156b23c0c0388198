"""Per-channel scopes: the filter runs inside the search, so a scoped question still gets k sources."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.errors import SettingsError
from bot.indexer import index_folder
from bot.scopes import parse_scope, scope_for, scope_note
from bot.search import search
from bot.settings import load_settings
from bot.store import open_store
from tests import test_slack_app as slack
from tests.conftest import make_settings
from tests.slack_fake import command_payload, form
from tests.test_slack_app import only

HR_QUESTION = "how much parental leave do we get"


def _outside(hits, scope):
    return [h.path for h in hits if not h.path.startswith(tuple(f"{f}/" for f in scope))]


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_a_scoped_question_gets_k_sources_all_inside_its_scope(sample_index, embedder, mode):
    scope = ("engineering", "it")
    everywhere = search(sample_index, embedder, HR_QUESTION, k=5, mode=mode)
    assert _outside(everywhere.hits, scope)  # unscoped, HR files lead: filtering afterwards would leave fewer than 5
    scoped = search(sample_index, embedder, HR_QUESTION, k=5, mode=mode, scope=scope)
    assert len(scoped.hits) == 5
    assert _outside(scoped.hits, scope) == []
    assert scoped.scope == scope and scoped.as_dict()["scope"] == ["engineering", "it"]


@pytest.mark.parametrize(
    "question", ["parental leave weeks", "vpn client", "enterprise plan price", "roll back a deploy", "expenses"]
)
def test_no_mode_ever_returns_a_file_outside_the_scope(sample_index, embedder, question):
    for mode in ("hybrid", "vector", "keyword"):
        result = search(sample_index, embedder, question, k=10, mode=mode, scope=("product",))
        assert _outside(result.hits, ("product",)) == [], (mode, question)


def test_a_folder_matches_whole_path_segments_only(tmp_path, kb_db, embedder):
    folder = tmp_path / "kb"
    for name in ("eng/a.md", "engineering/b.md", "Eng/c.md", "eng.md"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(f"# Deploys\n\nHow we deploy the service, file {name}.\n")
    settings = make_settings(tmp_path, knowledge_dir=folder, db_path=kb_db)
    with open_store(kb_db) as store:
        index_folder(store, embedder, settings)
        result = search(store, embedder, "how do we deploy", k=5, scope=("eng",))
    assert [h.path for h in result.hits] == ["eng/a.md"]


def test_kb_scopes_maps_channels_and_leaves_the_rest_unscoped():
    settings = load_settings(environ={"KB_SCOPES": "C0ENG=engineering, runbooks/ ; C0SALES=sales;"}, env_file=None)
    assert settings.scopes == (("C0ENG", ("engineering", "runbooks")), ("C0SALES", ("sales",)))
    assert scope_for(settings, "C0ENG") == ("engineering", "runbooks")
    assert scope_for(settings, "C0OTHER") == () and scope_for(settings, "D0DM") == () and scope_for(settings, None) == ()
    assert scope_note(("engineering", "runbooks")) == "Searched only engineering/, runbooks/."
    assert parse_scope(["hr", "it,engineering/", "hr"]) == ("hr", "it", "engineering")


@pytest.mark.parametrize("raw", ["C0ENG", "C0ENG=", "=engineering"])
def test_a_bad_kb_scopes_is_refused_in_one_line(raw):
    with pytest.raises(SettingsError, match=r"^KB_SCOPES expected CHANNEL=folder,folder;\.\.\. got"):
        load_settings(environ={"KB_SCOPES": raw}, env_file=None)


def test_cli_scope(sample_kb_db):
    runner = CliRunner()
    base = ["--env-file", "/dev/null", "ask", HR_QUESTION, "--db", str(sample_kb_db), "-k", "3", "--scope", "it"]
    out = runner.invoke(cli, base)
    assert out.exit_code == 0, out.output
    assert out.output.rstrip().endswith("Searched only it/.") and "hr/" not in out.output
    data = json.loads(runner.invoke(cli, [*base, "--json"]).output)
    assert data["scope"] == ["it"] and len(data["hits"]) == 3
    assert all(h["path"].startswith("it/") for h in data["hits"])


# --- through the loopback Slack -------------------------------------------------------------------


fake, bot_db, start_bot = slack.fake, slack.bot_db, slack.start_bot  # the loopback Slack app's fixtures


def test_a_question_from_a_scoped_channel_searches_only_its_folders_and_says_so(start_bot) -> None:
    bot = start_bot(scopes=(("C0ENG", ("engineering", "it")),))
    bot.post(form(command_payload(HR_QUESTION, response_url=bot.fake.response_url("eng"), channel_id="C0ENG")))
    bot.post(form(command_payload(HR_QUESTION, response_url=bot.fake.response_url("dm"), channel_id="D0DM")))
    scoped, everywhere = only(bot.fake.wait_responses("eng")), only(bot.fake.wait_responses("dm"))
    paths = re.findall(r"^\*\d+\.\* `\d+`  \*([^* ]+)", scoped.text, re.M)
    assert len(paths) == 5 and all(p.startswith(("engineering/", "it/")) for p in paths), paths
    assert "Searched only engineering/, it/." in scoped.text
    assert "hr/parental-leave.txt" in everywhere.text and "Searched only" not in everywhere.text
