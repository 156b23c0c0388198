"""The store seam: `open_store` picks the backend from KB_DB, and the SQLite store keeps the protocol's contract."""

from __future__ import annotations

import inspect
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bot.errors import DatabaseError, KbError
from bot.keyword_index import keyword_scores
from bot.store import MessageStore, Store, open_store
from bot.store.sqlite.messages import SqliteMessageStore
from bot.store.sqlite.store import SqliteStore
from bot.vector_index import in_memory, nearest


def _protocol_members(protocol: type) -> dict[str, object]:
    """The methods (name → signature) and attributes a backend must provide."""
    members: dict[str, object] = {}
    for name, value in vars(protocol).items():
        if callable(value) and (not name.startswith("_") or name in ("__enter__", "__exit__")):
            members[name] = inspect.signature(value)
    members.update({name: "attribute" for name in protocol.__annotations__})
    return members


@pytest.mark.parametrize(("protocol", "backend"), [(Store, SqliteStore), (MessageStore, SqliteMessageStore)])
def test_the_sqlite_backend_has_every_protocol_method_with_its_signature(protocol: type, backend: type) -> None:
    """What `bot.store.postgres` is checked against too: same names, parameters, defaults."""
    wanted = _protocol_members(protocol)
    assert len(wanted) > 10
    for name, signature in wanted.items():
        if signature == "attribute":
            continue
        found = getattr(backend, name, None)
        assert found is not None, f"{backend.__name__} lacks {name}"
        mine = inspect.signature(found)
        assert list(mine.parameters) == list(signature.parameters), name
        assert [p.default for p in mine.parameters.values()] == [p.default for p in signature.parameters.values()]


def test_an_open_sqlite_store_has_the_protocol_attributes(tmp_path: Path) -> None:
    with open_store(tmp_path / "kb.sqlite3") as store:
        for name in Store.__annotations__:
            assert hasattr(store, name), name
        assert store.location == str(tmp_path / "kb.sqlite3")


def test_a_path_and_a_sqlite_url_open_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite3"
    with open_store(path) as store:
        store.cache_vectors("m", ["hello"], np.ones((1, 64), np.float32) / 8)
    with open_store(f"sqlite:///{path}") as store:  # sqlite:////abs/path, as SQLAlchemy spells it
        assert isinstance(store, SqliteStore) and store.path == path
        assert list(store.cached_vectors("m", ["hello"])) == ["hello"]


def test_a_postgresql_url_without_the_backend_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bot.store.postgres", None)  # as if the package were not installed
    with pytest.raises(KbError) as caught:
        open_store("postgresql://kb:s3cret@db.example/kb")
    message = str(caught.value)
    assert "bot.store.postgres" in message and "db.example" in message
    assert "s3cret" not in message and "\n" not in message


def test_a_postgresql_url_opens_the_postgres_backend_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a postgresql:// KB_DB imports the backend, and it gets the URL as given, with the search settings."""
    opened: list[tuple[str, dict[str, object]]] = []
    backend = SimpleNamespace(PostgresStore=lambda url, **options: opened.append((url, options)) or "a store")
    monkeypatch.setitem(sys.modules, "bot.store.postgres", backend)
    assert open_store("postgres://h/kb") == "a store"
    assert open_store("postgres://h/kb", vector_copy=False, ef_search=40) == "a store"
    assert opened == [("postgres://h/kb", {"vector_copy": True}),
                      ("postgres://h/kb", {"vector_copy": False, "ef_search": 40})]


def test_each_thread_gets_its_own_connection_and_transaction(tmp_path: Path) -> None:
    """A store shared by threads: one thread's open `atomic()` is never joined by another's."""
    with open_store(tmp_path / "kb.sqlite3") as store:
        inside, release = threading.Event(), threading.Event()
        seen: dict[str, object] = {}

        def writer() -> None:
            with store.atomic():
                store.messages.set_channel_cursor("C1", "1.0")
                seen["writer"] = store.conn
                inside.set()
                release.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        assert inside.wait(10)
        assert store.conn is not seen["writer"] and not store.conn.in_transaction
        assert store.messages.channel_cursor("C1") is None  # not committed yet, and not ours
        release.set()
        thread.join(10)
        assert store.messages.channel_cursor("C1") == "1.0"
    with pytest.raises(Exception, match="closed"):
        seen["writer"].execute("SELECT 1")  # close() closed every thread's connection


def test_two_stores_on_one_file_never_share_in_memory_indexes(sample_db: Path, embedder) -> None:
    with open_store(sample_db) as first, open_store(sample_db) as second:
        gen = first.active_generation()
        query = embedder.embed(["how do I get reimbursed for a taxi"])[0]
        assert nearest(first, gen, query, 3) == nearest(second, gen, query, 3)
        keyword_scores(first, gen, "taxi receipts")
        keyword_scores(second, gen, "taxi receipts")
        assert in_memory(first, gen) is not in_memory(second, gen)
        assert first.memo.keys() == second.memo.keys() == {"bot.vector_index", "bot.keyword_index"}
        assert all(first.memo[key] is not second.memo[key] for key in first.memo)


def test_a_thread_never_opens_a_connection_on_a_file_that_replaced_the_store_s(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite3"
    with open_store(path) as store:
        path.unlink()  # e.g. a backup restored over it, or the file deleted
        seen: list[BaseException] = []
        thread = threading.Thread(target=lambda: _catch(seen, lambda: store.messages.channel_cursor("C1")))
        thread.start()
        thread.join(10)
        assert [type(e) for e in seen] == [DatabaseError] and "restart kb-bot" in str(seen[0])
        assert not path.exists(), "no new empty database was created in its place"


def _catch(seen: list[BaseException], call) -> None:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - the test inspects whatever the thread raised
        seen.append(exc)
