"""Shared fixtures: real SQLite files in temp folders, the real bundled model."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from waitress.server import BaseWSGIServer
from waitress.wasyncore import close_all

from bot.embeddings import LocalEmbedder
from bot.indexer import index_folder
from bot.settings import ENV_NAMES, Settings, load_settings
from bot.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"
DATA = Path(__file__).resolve().parent / "data"
SHARED_EVAL = ROOT.parent / "shared" / "eval"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's KB_*, EMBED_*, OPENAI_*, SLACK_*, DUP_* variables."""
    for name in list(os.environ):
        if name in ENV_NAMES or name.startswith(("KB_", "SLACK_", "DUP_", "EMBED_", "OPENAI_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The real bundled model, loaded once per test session."""
    return LocalEmbedder.bundled()


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values = {"db_path": tmp_path / "kb.sqlite3", "knowledge_dir": KNOWLEDGE}
    values.update(overrides)
    return load_settings(environ={}, env_file=None, **values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def knowledge_copy(tmp_path: Path) -> Path:
    """A writable copy of the sample knowledge folder."""
    target = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, target)
    return target


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> Path:
    """A database indexing the sample knowledge folder, built once. Copy before writing."""
    folder = tmp_path_factory.mktemp("sample")
    settings = make_settings(folder)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
    return settings.db_path


@pytest.fixture
def sample_store(sample_db: Path) -> Iterator[Store]:
    """A read-only use of the shared sample index."""
    with open_store(sample_db) as store:
        yield store


@pytest.fixture
def sample_store_copy(sample_db: Path, tmp_path: Path) -> Iterator[Store]:
    """A private copy of the sample index, for a test that writes (questions, votes, messages)."""
    copy = tmp_path / "kb.sqlite3"
    shutil.copy(sample_db, copy)
    with open_store(copy) as store:
        yield store


def stop_http_server(server: BaseWSGIServer, thread: threading.Thread) -> None:
    """Stop a waitress server serving on `thread`: its sockets are closed from that thread itself.

    asyncore is not thread-safe: closing them from here makes the serving loop's
    select() fail with EBADF. If the trigger pipe is already gone, the loop is ending.
    """
    try:
        server.trigger.pull_trigger(lambda: close_all(server._map))
    except OSError:
        close_all(server._map)
    thread.join()
    server.task_dispatcher.shutdown()
