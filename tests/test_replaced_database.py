"""A database file deleted or replaced under a running server is never answered from or written into.

The connection would keep reading (and writing Slack messages into) the unlinked
file; kb-bot notices the path's device/inode changed, refuses with one line and
fails /healthz until it is restarted.
"""

from __future__ import annotations

import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.errors import DatabaseError
from bot.services import Services
from bot.slack.chat import SlackChat
from bot.slack.server import http_server
from tests.conftest import make_settings, stop_http_server


def _health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("change", ["replaced", "deleted"])
def test_a_replaced_or_deleted_database_is_refused_and_fails_healthz(sample_db, tmp_path: Path, embedder, change) -> None:
    settings = make_settings(tmp_path)
    shutil.copy(sample_db, settings.db_path)
    services = Services(settings, embedder, SlackChat(WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/")))
    server = http_server(None, "127.0.0.1", 0, healthy=services.healthy)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert services.search("how do I get reimbursed for a taxi").hits
        assert _health(server.effective_port) == (200, "ok\n")

        if change == "replaced":  # e.g. a backup restored over it
            copy = tmp_path / "restored.sqlite3"
            shutil.copy(sample_db, copy)
            os.replace(copy, settings.db_path)
        else:
            os.unlink(settings.db_path)

        with pytest.raises(DatabaseError, match="deleted or replaced while kb-bot had it open: restart kb-bot"):
            services.search("how do I get reimbursed for a taxi")
        with pytest.raises(DatabaseError):
            services.store()  # what message handlers write through
        status, body = _health(server.effective_port)
        assert status == 503 and "restart kb-bot" in body
    finally:
        stop_http_server(server, thread)
        services.close()
