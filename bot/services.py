"""What every listener and background job shares: search, re-index and the duplicate scan, wired once.

The settings, the embedder (loaded once; onnxruntime sessions are thread-safe),
the chat platform (`bot.chat.ChatPort`), and one `Store` shared by the
listeners' threads (it gives each thread its own connection), so its
in-memory indexes are loaded once. No chat library here: `bot.slack.server` builds the Slack side.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from bot.chat import ChatPort
from bot.dupes.rules import DupRules
from bot.embeddings import Embedder
from bot.indexer import IndexReport, index_folder
from bot.lock import index_lock
from bot.questions import record_question
from bot.scheduler import start_scheduler
from bot.scopes import scope_for
from bot.search import SearchOptions, SearchResult
from bot.settings import Settings
from bot.store import Store, open_configured_store


class Services:
    """What listeners and background jobs share; safe to use from any thread."""

    def __init__(self, settings: Settings, embedder: Embedder, chat: ChatPort) -> None:
        self.settings = settings
        self.dup_rules = DupRules.from_settings(settings)
        self.embedder = embedder
        self.chat = chat
        self.search_options = SearchOptions.from_settings(settings)
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._on_close: list[Callable[[], object]] = []

    def store(self) -> Store:
        """The shared `Store`, opened on first use."""
        with self._store_lock:
            if self._store is None:
                self._store = open_configured_store(self.settings)
            store = self._store
        store.check_file()  # never answer from, or write into, a deleted or replaced file
        return store

    def healthy(self) -> bool:
        """False once the database file was deleted or replaced under the open store."""
        with self._store_lock:
            return self._store is None or not self._store.replaced()

    def search(self, question: str, channel: str | None = None) -> SearchResult:
        """The answer to `question`, searched within `channel`'s scope (KB_SCOPES) when it has one."""
        options = replace(self.search_options, scope=scope_for(self.settings, channel))
        return options.search(self.store(), self.embedder, question)

    def log_question(
        self, result: SearchResult, *, channel: str | None, user: str | None, thread: str | None = None
    ) -> int:
        """Keep a question people asked and what it was shown (`bot.questions`); its id goes on the vote buttons."""
        return record_question(
            self.store(), self.embedder, self.settings, result, channel=channel, user=user, thread=thread
        )

    def reindex(self, on_start: Callable[[], object]) -> IndexReport:
        """An incremental re-index, on its own connection; `LockHeldError` if one is already running.

        The lock is a file lock, so a `kb-bot index` in a shell and a second
        `/ask reindex` are refused alike; `on_start` runs once it is held.
        """
        with index_lock(self.settings.db_path):
            on_start()
            with open_configured_store(self.settings) as store:
                return index_folder(store, self.embedder, self.settings)

    def at_close(self, stop: Callable[[], object]) -> None:
        """Run `stop` at shutdown, before the stores close (e.g. a scheduler's `shutdown`)."""
        self._on_close.append(stop)

    def close(self) -> None:
        for stop in reversed(self._on_close):
            stop()
        with self._store_lock:
            if self._store is not None:
                self._store.close()
            self._store = None

    def start_background_jobs(self) -> None:
        """Start jobs that run beside the listeners: the duplicate scan (`bot.scheduler`), stopped by `close`."""
        scheduler = start_scheduler(self.settings, self.embedder, self.chat)
        self.at_close(scheduler.shutdown)  # waits for a scan in progress to finish
