"""Schema migrations, applied in order, each in one transaction with its record.

A migration's name is the record of what ran (`m001_...`). A failed migration
rolls back with its record, so it stays pending and runs again next time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from bot.store.sqlite import fts
from bot.store.sqlite.db import Connection, transaction


def _execute_all(conn: Connection, script: str) -> None:
    """Run `;`-separated statements one by one: `executescript` would COMMIT first."""
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def m001_create_tables(conn: Connection) -> None:
    _execute_all(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        -- Embedding cache: sha256(model + '::' + text) -> float32 vector.
        CREATE TABLE embedding_cache (
            key BLOB PRIMARY KEY,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created_at REAL NOT NULL
        ) WITHOUT ROWID;

        -- One generation per embedding model; exactly one is 'active' once built.
        CREATE TABLE generations (
            id INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('building', 'active', 'retired')),
            knowledge_dir TEXT NOT NULL,
            created_at REAL NOT NULL,
            activated_at REAL
        );

        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            generation INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            title TEXT,
            indexed_at REAL NOT NULL,
            UNIQUE (generation, path)
        );

        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            generation INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            heading TEXT,
            text TEXT NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL
        );
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE INDEX chunks_generation ON chunks(generation)
        """
    )


def m002_slack_state(conn: Connection) -> None:
    _execute_all(
        conn,
        """
        -- Channel messages kept for duplicate detection (filled by events and backfill).
        CREATE TABLE messages (
            channel TEXT NOT NULL,
            ts TEXT NOT NULL,
            thread_ts TEXT,
            user TEXT,
            text TEXT NOT NULL,
            posted_at REAL NOT NULL,
            edited_at REAL,
            deleted INTEGER NOT NULL DEFAULT 0,
            scanned_at REAL,
            PRIMARY KEY (channel, ts)
        ) WITHOUT ROWID;
        CREATE INDEX messages_posted ON messages(posted_at);
        CREATE INDEX messages_unscanned ON messages(scanned_at) WHERE scanned_at IS NULL;

        -- Newest ts fetched by conversations.history per channel (backfill resumes here).
        CREATE TABLE channel_cursors (
            channel TEXT PRIMARY KEY,
            last_ts TEXT NOT NULL,
            updated_at REAL NOT NULL
        );

        -- Each duplicate pair is flagged at most once, across restarts.
        CREATE TABLE flagged_pairs (
            later_channel TEXT NOT NULL,
            later_ts TEXT NOT NULL,
            earlier_channel TEXT NOT NULL,
            earlier_ts TEXT NOT NULL,
            score REAL NOT NULL,
            action TEXT NOT NULL,
            flagged_at REAL NOT NULL,
            PRIMARY KEY (later_channel, later_ts, earlier_channel, earlier_ts)
        );

        -- Slack event ids already handled, so a retried delivery is not answered twice.
        CREATE TABLE slack_events (
            event_id TEXT PRIMARY KEY,
            received_at REAL NOT NULL
        )
        """,
    )


def m003_keyword_index(conn: Connection) -> None:
    """Give every existing generation its keyword table, filled from its chunks."""
    for (generation_id,) in conn.execute("SELECT id FROM generations").fetchall():
        fts.create_table(conn, generation_id)
        conn.execute(
            f"INSERT INTO {fts.table_name(generation_id)} (rowid, title, heading, body) "
            "SELECT c.id, d.title, c.heading, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document_id WHERE c.generation = ?",
            (generation_id,),
        )


def m004_vector_sync(conn: Connection) -> None:
    """Let in-memory vector copies (`bot.vector_index`) follow the store cheaply.

    `generations.vectors_version` counts the writes to a generation's vectors,
    so a reader notices a change with one lookup. Chunk ids become
    AUTOINCREMENT so an id is never reused: a chunk id seen before always names
    the same vector, and a reader catches up by comparing id sets.
    """
    _execute_all(
        conn,
        """
        ALTER TABLE generations ADD COLUMN vectors_version INTEGER NOT NULL DEFAULT 0;

        CREATE TABLE chunks_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            generation INTEGER NOT NULL,
            ordinal INTEGER NOT NULL,
            heading TEXT,
            text TEXT NOT NULL,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL
        );
        INSERT INTO chunks_new SELECT id, document_id, generation, ordinal, heading, text,
            start_line, end_line FROM chunks;
        DROP TABLE chunks;
        ALTER TABLE chunks_new RENAME TO chunks;
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE INDEX chunks_generation ON chunks(generation)
        """,
    )


def m005_cache_as_rowid_table(conn: Connection) -> None:
    """The embedding cache becomes an ordinary rowid table with an index on its key.

    WITHOUT ROWID suits small rows; a 1.5 KB vector row spills to overflow
    pages inside the primary-key B-tree, and keyed lookups were 2.6x slower
    (100,000 lookups: 6.2 s → 2.4 s, benchmarks/dupes.py).
    """
    _execute_all(
        conn,
        """
        CREATE TABLE embedding_cache_new (
            key BLOB NOT NULL UNIQUE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        INSERT INTO embedding_cache_new (key, model, dim, vector, created_at)
            SELECT key, model, dim, vector, created_at FROM embedding_cache;
        DROP TABLE embedding_cache;
        ALTER TABLE embedding_cache_new RENAME TO embedding_cache
        """,
    )


def m006_prepared_messages(conn: Connection) -> None:
    """Each message remembers how the duplicate scan prepared it, so a scan prepares it once.

    `prepared_as` names the model and candidate rules it was prepared under
    (NULL: not yet, or edited since); `vector_key` is the embedding-cache key
    of its normalised text, NULL when it is not worth judging. A scan then reads
    its window's vectors in one join instead of re-normalising and re-hashing
    every message of the window (1,000 new vs 100,000 earlier: 5.5 s → 2.0 s).
    """
    _execute_all(
        conn,
        """
        ALTER TABLE messages ADD COLUMN prepared_as TEXT;
        ALTER TABLE messages ADD COLUMN vector_key BLOB
        """,
    )


def m008_dupe_feedback(conn: Connection) -> None:
    """A person's "Not the same question" on a duplicate flag: the pair and both texts, for the judge's next fit.

    The texts are copied because messages leave the window (and may be
    deleted) long before anyone refits; one row per flagged later message.
    """
    conn.execute(
        """
        CREATE TABLE dupe_feedback (
            later_channel TEXT NOT NULL, later_ts TEXT NOT NULL,
            earlier_channel TEXT NOT NULL, earlier_ts TEXT NOT NULL,
            later_text TEXT NOT NULL, earlier_text TEXT NOT NULL, score REAL NOT NULL,
            reported_by TEXT NOT NULL, reported_at REAL NOT NULL,
            PRIMARY KEY (later_channel, later_ts)
        )
        """
    )


def m009_questions(conn: Connection) -> None:
    """The questions people asked and their votes (issue 16: feedback, knowledge gaps).

    `vector_key` points into the embedding cache (the question's vector, kept there
    once), `asker` and `voter` are salted hashes (`question_salt`, random, made here) so
    distinct people can be counted and nobody named. Votes go with their question.
    """
    _execute_all(
        conn,
        """
        CREATE TABLE questions (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            model TEXT NOT NULL,
            vector_key BLOB NOT NULL,
            asked_at REAL NOT NULL,
            channel TEXT,
            asker TEXT,
            confident INTEGER NOT NULL,
            sources TEXT NOT NULL,
            thread TEXT
        );
        CREATE INDEX questions_by_time ON questions(asked_at);
        CREATE INDEX questions_by_thread ON questions(channel, thread);
        CREATE TABLE votes (
            question_id INTEGER NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
            voter TEXT NOT NULL,
            helpful INTEGER NOT NULL,
            voted_at REAL NOT NULL,
            PRIMARY KEY (question_id, voter)
        ) WITHOUT ROWID;
        CREATE INDEX votes_by_time ON votes(voted_at)
        """,
    )
    conn.execute("CREATE TABLE question_salt (salt TEXT NOT NULL)")
    conn.execute("INSERT INTO question_salt (salt) VALUES (?)", (secrets.token_hex(16),))


def m010_flag_posted(conn: Connection) -> None:
    """A flag claim records when the chat accepted its post (`posted_at`) and the post's ts.

    A claim still unposted long after it was made belongs to a scan that died
    between claim and post; the next scan finishes it (`bot.dupes.flag.retry_unposted`).
    Claims made before this migration were posted by the scan that made them.
    """
    _execute_all(
        conn,
        """
        ALTER TABLE flagged_pairs ADD COLUMN posted_at REAL;
        ALTER TABLE flagged_pairs ADD COLUMN posted_ts TEXT;
        UPDATE flagged_pairs SET posted_at = flagged_at;
        CREATE INDEX flagged_unposted ON flagged_pairs(flagged_at) WHERE posted_at IS NULL
        """,
    )


MIGRATIONS: list[Callable[[Connection], None]] = [
    m001_create_tables, m002_slack_state, m003_keyword_index, m004_vector_sync, m005_cache_as_rowid_table,
    m006_prepared_messages,
    m008_dupe_feedback,
    m009_questions,
    m010_flag_posted,
]


def applied(conn: Connection) -> list[str]:
    """Names of the migrations already run on this database."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]


def migrate(conn: Connection, *, stop_before: str | None = None) -> list[str]:
    """Apply every pending migration; return the names applied now.

    `stop_before` names a migration to stop at, unapplied: a database as an
    older kb-bot left it, for tests of the migrations themselves.
    """
    names = [m.__name__ for m in MIGRATIONS]
    if stop_before is not None and stop_before not in names:
        raise ValueError(f"no migration named {stop_before}")
    done = set(applied(conn))
    ran = []
    for migration in MIGRATIONS:
        if migration.__name__ == stop_before:
            break
        if migration.__name__ in done:
            continue
        with transaction(conn):
            # Re-check under the write lock: another process may have just run it.
            if conn.execute(
                "SELECT 1 FROM _migrations WHERE name = ?", (migration.__name__,)
            ).fetchone():
                continue
            migration(conn)
            # The time comes from Python: unixepoch('subsec') is NULL before SQLite 3.42
            # (Debian 12 ships 3.40), and every SQLite that sqlite-vec supports must work.
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (migration.__name__, time.time()),
            )
        ran.append(migration.__name__)
    return ran


SCHEMA_VERSION = len(MIGRATIONS)
