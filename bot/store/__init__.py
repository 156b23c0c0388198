"""Where kb-bot keeps documents, chunks, vectors, the embedding cache and the duplicate scan's state.

Everything outside this package speaks to the two protocols below and the
records of `bot.store.records`, never SQL; `open_store` picks the backend from
KB_DB. A backend implements `Store` and `MessageStore` (structurally: no base
class to inherit) and nothing else:

- `bot.store.sqlite`: one SQLite file with sqlite-vec and FTS5 (`SqliteStore`);
- `bot.store.postgres`: PostgreSQL, imported only when KB_DB is a
  `postgresql://` URL; it must provide `PostgresStore(url)`.

Words used below: a *generation* is one embedding model's complete index
(documents, chunks, vectors, keyword index; `records.Generation`). At most one
is 'active' and answers questions; a rebuild fills a 'building' one beside it
and `activate` swaps them. Chunk ids are unique across generations and never
reused. Vectors are float32 unit vectors; a similarity is their cosine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

import numpy as np

from bot.errors import KbError
from bot.redact import redact_url
from bot.store.records import (
    ChunkRow,
    Claim,
    DocumentRecord,
    Feedback,
    Generation,
    Message,
    QuestionRecord,
    WindowRow,
    cache_key,
)

if TYPE_CHECKING:
    from bot.chunking import Chunk
    from bot.settings import Settings

T = TypeVar("T")

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


class MessageStore(Protocol):
    """The duplicate scan's state: channel messages, chat event ids, backfill cursors, flags, feedback.

    Every write is atomic on its own. A message is keyed by (channel, ts);
    deleted messages are kept but never returned. Lists come oldest first
    (by `posted_at`, then `ts`). `prepared_as` is a label naming the model and
    rules a message's vector was prepared under (`bot.dupes.flag`); a message
    prepared under another label counts as unprepared.
    """

    def record_message(
        self, *, channel: str, ts: str, user: str | None, text: str, thread_ts: str | None = None
    ) -> None:
        """Keep a message posted at float(ts); idempotent: a redelivered event changes nothing."""

    def record_messages(self, messages: Iterable[Message], *, scanned_at: float | None = None) -> int:
        """Keep messages in one transaction and return how many were new (known ones are left as they are).

        A `thread_ts` equal to the message's own ts is stored as None. With
        `scanned_at`, new messages count as already scanned (context for later
        ones, never flagged themselves).
        """

    def edit_message(self, *, channel: str, ts: str, text: str) -> None:
        """Replace a message's text; if it changed, the message is unscanned and unprepared again."""

    def delete_message(self, *, channel: str, ts: str) -> None:
        """Hide a message from every later read and drop its text; an unknown one is kept as deleted."""

    def forget_messages_before(self, cutoff: float) -> int:
        """Drop the scanned or deleted messages posted before `cutoff`; return how many went."""

    def get_message(self, channel: str, ts: str) -> Message | None:
        """The live message at (channel, ts), or None if unknown or deleted."""

    def unscanned_messages(self, channels: Collection[str] | None = None) -> list[Message]:
        """Live messages the scan has not judged yet (in `channels`, or all)."""

    def unprepared_messages(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> list[Message]:
        """Live messages posted in [start, end] (in `channels`, or all) not prepared under `prepared_as`."""

    def set_prepared(self, prepared: Iterable[tuple[Message, bytes | None]], prepared_as: str) -> None:
        """Record each message's embedding-cache key (None: not worth judging) under `prepared_as`, atomically.

        A message whose stored text differs from the given one (edited since) stays unprepared.
        """

    def prepared_window(
        self, start: float, end: float, prepared_as: str, channels: Collection[str] | None = None
    ) -> Iterator[tuple[WindowRow, bytes | None]]:
        """Live messages posted in [start, end] prepared under `prepared_as` with a key, and their vector.

        The vector is the float32 bytes found in the embedding cache under the
        message's key, or None when that entry is gone. A generator, so callers
        can copy vectors out one by one.
        """

    def mark_scanned(self, messages: Iterable[Message]) -> None:
        """Record that the scan judged these texts; a message whose text changed since stays unscanned."""

    def remember_event(self, event_id: str) -> bool:
        """Record a chat event id; False if it was seen before (a retry). Ids older than a week may be forgotten."""

    def channel_cursor(self, channel: str) -> str | None:
        """The newest ts the backfill has fetched from `channel`, if it ever has."""

    def set_channel_cursor(self, channel: str, last_ts: str) -> None:
        """Remember the newest ts fetched from `channel` (replacing the previous one)."""

    def flagged_laters(self) -> set[tuple[str, str]]:
        """(channel, ts) of unscanned messages that were flagged already (edited since, or a scan cut short)."""

    def claim_flag(self, later: Message, earlier: Message, score: float, action: str) -> bool:
        """Record the pair before posting it; False (and nothing written) if `later` was ever flagged.

        Atomic, so two scans never both flag one message. The claim stays
        unposted until `mark_posted`, so a post cut short is found again
        (`unposted_claims`).
        """

    def release_flags(self, pairs: Iterable[tuple[Message, Message]]) -> None:
        """Forget claimed (later, earlier) pairs whose flag never reached anyone."""

    def mark_posted(self, posts: Iterable[tuple[Message, str]]) -> None:
        """Record that the chat accepted the flag of each later message, as the post with the given ts."""

    def unposted_claims(self, claimed_before: float) -> list[Claim]:
        """Claims made before `claimed_before` and never marked posted, oldest first.

        A claim whose later or earlier message was deleted since is left out:
        there is nothing left to flag.
        """

    def record_not_same(self, channel: str, ts: str, user: str) -> Feedback | None:
        """Keep the pair flagged for the later message (channel, ts) as "not the same question".

        Returns the kept report (a second report, anyone's, keeps the first), or
        None if that message was never flagged.
        """

    def all_feedback(self) -> list[Feedback]:
        """Every reported pair, oldest report first."""


class QuestionStore(Protocol):
    """The question log (`bot.questions`): questions people asked, their votes, and retention.

    Every write is atomic on its own. People are only ever salted hashes here.
    """

    def salt(self) -> str:
        """The random salt of this database's person hashes, made once with the tables."""

    def add(
        self, *, text: str, model: str, vector_key: bytes, asked_at: float, channel: str | None,
        asker: str | None, confident: bool, sources: list[dict[str, object]], thread: str | None = None,
    ) -> int:
        """Keep a question and return its id; `thread` is the chat thread its answer went to, if any."""

    def vote(self, question_id: int, voter: str, helpful: bool, at: float) -> bool:
        """One vote per voter per question, a later one replacing it; False if the question is gone."""

    def votes(self, question_id: int) -> dict[str, bool]:
        """Each voter's vote on a question (voter hash -> helpful)."""

    def since(self, asked_after: float) -> list[QuestionRecord]:
        """Questions asked at or after `asked_after`, oldest first, with their vote counts."""

    def in_thread(self, channel: str, thread: str, limit: int) -> list[str]:
        """The texts of the last `limit` questions answered in a chat thread, oldest first."""

    def vectors(self, model: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        """The embedding-cache vectors of `keys` under `model` (keys whose entry is gone are left out)."""

    def prune(self, questions_before: float, votes_before: float) -> tuple[int, int]:
        """Delete questions asked before `questions_before` (with their votes) and votes cast before
        `votes_before`; return how many of each."""

    def mark(self, key: str) -> str | None:
        """A value the question features keep between runs (e.g. what the last gaps post covered)."""

    def set_mark(self, key: str, value: str) -> None:
        """Replace the value `mark(key)` returns."""


class Store(Protocol):
    """Documents, chunks and vectors by generation, the embedding cache, and `messages`.

    Use it as a context manager or call `close()`. Each write method is atomic
    on its own; `atomic()` groups several into one. Reads see committed data;
    `snapshot()` makes a block's reads all see one state, however others write
    meanwhile. A store may be shared by threads: each thread works on its own
    connection, so a `snapshot()` or `atomic()` block belongs to the thread in it.
    """

    location: str
    """Where the data lives, fit to show people (a file path, a URL without its password)."""

    messages: MessageStore
    questions: QuestionStore

    vector_copy: bool
    """Whether searches use an in-process copy of the vectors (`bot.vector_index`) or ask `index_nearest`."""

    memo: dict[str, object]
    """What other modules keep in memory about this store's data (e.g. `bot.vector_index`'s copy), by module name.

    Starts empty with the store and goes with it, so two stores never share it
    (use `memoized`).
    """

    def __enter__(self) -> Store: ...
    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None:
        """Close every connection the store opened (any thread's); the store is unusable after."""

    def replaced(self) -> bool:
        """Whether the database was deleted or replaced since this store opened it (False where it cannot be)."""

    def check_file(self) -> None:
        """Raise `DatabaseError` ("restart kb-bot") if `replaced()`: only a new process reads the new one safely."""

    def snapshot(self) -> AbstractContextManager[object]:
        """A block whose reads all see one consistent state; nested use joins the outer block.

        A search runs in one, so a re-index swapping generations meanwhile
        never makes it mix two states nor lose the tables it reads.
        """

    def atomic(self) -> AbstractContextManager[object]:
        """A block whose writes land together or not at all (rolled back on any exception).

        Nested blocks are savepoints: an inner failure undoes only the inner
        block. Never left open: a failed commit is rolled back.
        """

    # --- embedding cache: a text's vector is computed once per model -------

    def cached_vectors(self, model: str, texts: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """Vectors stored for `texts` under `model` (only those of dimension `dim` when given), by text."""

    def cache_vectors(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text under `model` (keys: `records.cache_key`).

        An entry of the same size is kept as it is; one of another size is
        replaced (the endpoint changed its vectors under the same name).
        """

    # --- generations ---------------------------------------------------------

    def active_generation(self) -> Generation | None:
        """The generation answering questions, if one was ever activated."""

    def building_generation(self, model: str, dim: int) -> Generation | None:
        """The newest unfinished build for `model` at `dim`, to resume it."""

    def create_generation(self, model: str, dim: int, knowledge_dir: str) -> Generation:
        """A new, empty generation in 'building' state with its own vector and keyword indexes."""

    def activate(self, gen: Generation) -> None:
        """Make `gen` the active generation atomically, then drop every other one.

        A reader inside a `snapshot()` that began before keeps reading the old one undisturbed.
        """

    def drop_generations(self, except_id: int) -> None:
        """Delete every generation but `except_id` with all it holds (retired ones, abandoned builds)."""

    # --- documents and chunks --------------------------------------------------

    def documents(self, gen: Generation) -> dict[str, DocumentRecord]:
        """The files indexed in `gen`, by path relative to the knowledge folder."""

    def set_knowledge_dir(self, gen: Generation, knowledge_dir: str) -> None:
        """Record that `gen` now stands for `knowledge_dir`."""

    def touch_document(self, gen: Generation, path: str, size: int, mtime: float) -> None:
        """Record a new size and mtime for a file whose content did not change."""

    def replace_document(
        self,
        gen: Generation,
        *,
        path: str,
        sha256: str,
        size: int,
        mtime: float,
        title: str | None,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
    ) -> None:
        """Swap a file's chunks, vectors and keyword entries for new ones, atomically.

        Chunks get new ids (ascending in `chunks` order) and `vectors_version`
        changes. `ValueError` if the counts differ; `EmbeddingError` if the
        vectors are not `gen.dim` wide.
        """

    def remove_document(self, gen: Generation, path: str) -> None:
        """Delete a file with its chunks, vectors and keyword entries, atomically."""

    # --- reading -------------------------------------------------------------

    def vectors_version(self, gen: Generation) -> int:
        """A number that changes with every write to `gen`'s chunks (-1 for an unknown generation).

        In-memory copies (`bot.vector_index`, `bot.keyword_index`) compare it to know they are stale.
        """

    def chunk_ids(self, gen: Generation) -> np.ndarray:
        """Every chunk id of `gen`, int64, ascending."""

    def vector_pages(
        self, gen: Generation, ids: np.ndarray | None = None, page: int = 5_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(int64 chunk ids, float32 (n, dim) vectors) of the chunks in `ids`, or of all, a page at a time, any order."""

    def exact_nearest(self, gen: Generation, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunks closest to `vector` by exact search, as (chunk id, cosine), best first.

        The reference `bot.vector_index.nearest` approximates.
        """

    def index_nearest(self, gen: Generation, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The `k` chunks closest to `vector` by the store's own vector index, as (chunk id, cosine), best first.

        What searches use without an in-process copy: approximate where the
        backend keeps an index for it (pgvector's HNSW), else `exact_nearest`.
        """

    def word_scores(self, gen: Generation, word: str) -> tuple[np.ndarray, np.ndarray]:
        """(int64 chunk ids ascending, float64 BM25 scores, higher better) of the chunks holding `word`.

        `word` comes from `bot.words.query_words` and must be matched as a plain
        word (stemmed as the index stems its text), never read as query syntax.
        Scores are per word so that a question's BM25 is the sum of its words'
        (`bot.keyword_index`) and of title, heading and body alike.
        """

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, ChunkRow]:
        """The chunks of `ids` that exist, by id."""

    def chunk_ids_under(self, gen: Generation, folders: Sequence[str]) -> np.ndarray:
        """The chunk ids of `gen`, int64 ascending, of files under any of `folders` (whole path segments,
        case-sensitive: "eng" holds "eng/a.md", not "engineering/b.md"); a channel's scope (`bot.scopes`)."""

    def file_chunk_ids(self, gen: Generation, paths: Collection[str]) -> dict[str, np.ndarray]:
        """The chunk ids, int64 ascending, of each of `paths` that is a file of `gen` (a file's whole
        page, for its document vector in `bot.vector_index`)."""

    def stats(self) -> dict[str, object]:
        """What `kb-bot stats` prints, by name; counts are of the active generation.

        At least: db (`location`), db_bytes, model, dim, knowledge_dir (None without an
        active generation), documents, chunks, cache_entries, schema_version; a
        backend adds its own details (SQLite: which driver and library).
        """


def memoized(store: Store, key: str, make: Callable[[], T]) -> T:
    """What `store.memo` holds under `key`, made by `make` on first use; threads racing to make it keep one."""
    if key not in store.memo:
        store.memo.setdefault(key, make())
    return cast(T, store.memo[key])


def open_store(location: str | Path, *, vector_copy: bool = True, ef_search: int | None = None) -> Store:
    """The store KB_DB names: a path or `sqlite:///path` → SQLite; `postgresql://…` → PostgreSQL.

    The PostgreSQL backend and its driver are imported only here, so kb-bot on
    SQLite never needs them. `vector_copy` and `ef_search` are KB_VECTOR_COPY and
    PG_EF_SEARCH (`open_configured_store` passes them from the settings).
    """
    text = str(location)
    if text.startswith(POSTGRES_SCHEMES):
        try:
            postgres = importlib.import_module("bot.store.postgres")
        except ModuleNotFoundError as exc:
            raise KbError(
                f"KB_DB {redact_url(text)} needs the {exc.name} package, which is not installed"
            ) from None
        return postgres.PostgresStore(text, vector_copy=vector_copy, **({"ef_search": ef_search} if ef_search else {}))
    from bot.store.sqlite.store import SqliteStore

    return SqliteStore(text.removeprefix(SQLITE_SCHEME), vector_copy=vector_copy)


def open_configured_store(settings: Settings) -> Store:
    """The store of `settings.db_path`, searching as the settings say (KB_VECTOR_COPY, PG_EF_SEARCH)."""
    return open_store(settings.db_path, vector_copy=settings.vector_copy, ef_search=settings.pg_ef_search)


__all__ = [
    "ChunkRow", "Claim", "DocumentRecord", "Feedback", "Generation", "Message", "MessageStore", "QuestionRecord",
    "QuestionStore", "Store", "WindowRow", "cache_key", "memoized", "open_configured_store", "open_store",
]
