""""Not the same question" on a duplicate flag: a signed click into the real app, the pair kept, the flag edited,
and `kb-bot dupes feedback --export` (loopback Slack, real model, real SQLite)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.dupes.feedback import NOT_SAME_ACTION, record_not_same
from bot.embeddings import LocalEmbedder
from bot.settings import Settings
from bot.store import open_store
from tests.slack_fake import FakeSlack, interaction_form, post_signed, share_click_payload
from tests.test_dupes_slack import (
    SECRET,
    VPN,
    VPN_AGAIN,
    post,
    replies,
    scan,
    serving,
    slack_settings,
    stamp,
    wait_until,
)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.channels = [{"id": "C1", "name": "general"}, {"id": "C2", "name": "it-help"}]
        yield fake


@pytest.fixture
def settings(tmp_path: Path, fake: FakeSlack) -> Settings:
    return slack_settings(tmp_path, fake)


def click(url: str, value: str, *, user: str, channel: str, flag_ts: str) -> None:
    payload = share_click_payload(value, response_url="https://unused.example/", user_id=user, channel_id=channel,
                                  action_id=NOT_SAME_ACTION)
    payload["container"].update(message_ts=flag_ts, is_ephemeral=False)
    reply = post_signed(url, interaction_form(payload), SECRET)
    assert reply.status == 200, reply.body


def test_not_the_same_question_records_the_pair_and_edits_the_flag(
    settings: Settings, fake: FakeSlack, embedder: LocalEmbedder
) -> None:
    post(settings, "C1", stamp(20), VPN, "U1")
    post(settings, "C2", stamp(10), VPN_AGAIN, "U2")
    scan(settings, embedder)
    [flag] = replies(fake)
    section, actions = flag.params["blocks"]
    assert section["text"]["text"] == flag.params["text"]
    [button] = actions["elements"]
    assert button["action_id"] == NOT_SAME_ACTION and button["value"] == f"C2 {stamp(10)}"

    with serving(settings, embedder) as (_, url):
        click(url, button["value"], user="U9", channel="C2", flag_ts="1700000000.000042")
        wait_until(lambda: bool(fake.calls_to("chat.update")))
        click(url, button["value"], user="U8", channel="C2", flag_ts="1700000000.000042")  # a second click
        wait_until(lambda: len(fake.calls_to("chat.update")) == 2)
    update = fake.calls_to("chat.update")[0].params
    assert (update["channel"], update["ts"]) == ("C2", "1700000000.000042")
    assert update["text"].startswith("<@U9> says this is not the same question")

    with open_store(settings.db_path) as store:
        [report] = store.messages.all_feedback()
    assert report.reported_by == "U9"  # the first report is kept
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "dupes", "feedback", "--export",
                                      "--db", str(settings.db_path)])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    row = json.loads(line)
    assert row["later"] == {"channel": "C2", "ts": stamp(10), "text": VPN_AGAIN}
    assert row["earlier"] == {"channel": "C1", "ts": stamp(20), "text": VPN}
    assert row["same"] is False and row["reported_by"] == "U9"


def test_a_click_on_an_unknown_flag_records_nothing(settings: Settings) -> None:
    with open_store(settings.db_path) as store:
        assert record_not_same(store.messages, "C2 1700000000.000001", "U9") is None
        assert record_not_same(store.messages, "garbage", "U9") is None
        assert store.messages.all_feedback() == []
