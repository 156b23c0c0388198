"""PostgreSQL schema migrations, numbered like the SQLite ones, run under an advisory lock.

Two replicas starting at once would both see a migration pending; the
transaction-scoped advisory lock makes the second wait for the first and then
find it applied. Each migration commits with its record, or not at all.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import psycopg

# pg_advisory_xact_lock key of the migrations ("kb-bot" + 1); the re-index and scan leases use others.
MIGRATION_LOCK = 0x6B62626F74_01


def m001_create_tables(conn: psycopg.Connection) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(
        """
        CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);

        -- sha256(model + '::' + text) -> float32 vector bytes, as in the SQLite store.
        CREATE TABLE embedding_cache (
            key bytea PRIMARY KEY,
            model text NOT NULL,
            dim integer NOT NULL,
            vector bytea NOT NULL,
            created_at double precision NOT NULL
        );

        -- One per embedding model; vectors live in vec_chunks_<id>. The counters feed BM25.
        CREATE TABLE generations (
            id bigserial PRIMARY KEY,
            model text NOT NULL,
            dim integer NOT NULL,
            status text NOT NULL CHECK (status IN ('building', 'active', 'retired')),
            knowledge_dir text NOT NULL,
            created_at double precision NOT NULL,
            activated_at double precision,
            vectors_version bigint NOT NULL DEFAULT 0,
            chunk_count bigint NOT NULL DEFAULT 0,
            token_count bigint NOT NULL DEFAULT 0
        );

        CREATE TABLE documents (
            id bigserial PRIMARY KEY,
            generation bigint NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
            path text NOT NULL,
            sha256 text NOT NULL,
            size bigint NOT NULL,
            mtime double precision NOT NULL,
            title text,
            indexed_at double precision NOT NULL,
            UNIQUE (generation, path)
        );

        -- Ids come from a sequence and are never reused (bot.vector_index relies on it).
        CREATE TABLE chunks (
            id bigserial PRIMARY KEY,
            document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            generation bigint NOT NULL,
            ordinal integer NOT NULL,
            heading text,
            text text NOT NULL,
            start_line integer NOT NULL,
            end_line integer NOT NULL,
            tokens integer NOT NULL
        );
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE INDEX chunks_generation ON chunks(generation, id);

        -- Keyword postings tokenized by FTS5 (bot.store.postgres.keywords).
        CREATE TABLE postings (
            generation bigint NOT NULL,
            term text NOT NULL,
            chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            positions integer[] NOT NULL,
            PRIMARY KEY (generation, term, chunk_id)
        );
        CREATE INDEX postings_chunk ON postings(chunk_id);
        """
    )


def m002_slack_state(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE messages (
            channel text NOT NULL,
            ts text NOT NULL,
            thread_ts text,
            "user" text,
            text text NOT NULL,
            posted_at double precision NOT NULL,
            edited_at double precision,
            deleted boolean NOT NULL DEFAULT false,
            scanned_at double precision,
            prepared_as text,
            vector_key bytea,
            PRIMARY KEY (channel, ts)
        );
        CREATE INDEX messages_posted ON messages(posted_at);
        CREATE INDEX messages_unscanned ON messages(scanned_at) WHERE scanned_at IS NULL;

        CREATE TABLE channel_cursors (
            channel text PRIMARY KEY,
            last_ts text NOT NULL,
            updated_at double precision NOT NULL
        );

        -- The claim: one flag per later message, ever, whichever replica gets there first.
        CREATE TABLE flagged_pairs (
            later_channel text NOT NULL,
            later_ts text NOT NULL,
            earlier_channel text NOT NULL,
            earlier_ts text NOT NULL,
            score double precision NOT NULL,
            action text NOT NULL,
            flagged_at double precision NOT NULL,
            PRIMARY KEY (later_channel, later_ts)
        );

        CREATE TABLE slack_events (
            event_id text PRIMARY KEY,
            received_at double precision NOT NULL
        );

        CREATE TABLE dupe_feedback (
            later_channel text NOT NULL, later_ts text NOT NULL,
            earlier_channel text NOT NULL, earlier_ts text NOT NULL,
            later_text text NOT NULL, earlier_text text NOT NULL, score double precision NOT NULL,
            reported_by text NOT NULL, reported_at double precision NOT NULL,
            PRIMARY KEY (later_channel, later_ts)
        );
        """
    )


def m003_leases(conn: psycopg.Connection) -> None:
    """Jobs one replica runs at a time (the duplicate scan): held by `holder` until `expires_at` (epoch seconds)."""
    conn.execute("CREATE TABLE leases (name text PRIMARY KEY, holder text NOT NULL, expires_at double precision NOT NULL)")


def m004_questions(conn: psycopg.Connection) -> None:
    """The question log and its votes, as SQLite's m009_questions; the salt of person hashes made here."""
    conn.execute(
        """
        CREATE TABLE questions (
            id bigserial PRIMARY KEY,
            text text NOT NULL,
            model text NOT NULL,
            vector_key bytea NOT NULL,
            asked_at double precision NOT NULL,
            channel text,
            asker text,
            confident boolean NOT NULL,
            sources text NOT NULL,
            thread text
        );
        CREATE INDEX questions_by_time ON questions (asked_at);
        CREATE INDEX questions_by_thread ON questions (channel, thread);
        CREATE TABLE votes (
            question_id bigint NOT NULL REFERENCES questions (id) ON DELETE CASCADE,
            voter text NOT NULL,
            helpful boolean NOT NULL,
            voted_at double precision NOT NULL,
            PRIMARY KEY (question_id, voter)
        );
        CREATE INDEX votes_by_time ON votes (voted_at);
        CREATE TABLE question_salt (salt text NOT NULL)
        """
    )
    conn.execute("INSERT INTO question_salt (salt) VALUES (%s)", (secrets.token_hex(16),))


def m005_flag_posted(conn: psycopg.Connection) -> None:
    """A flag claim records when the chat accepted its post, as SQLite's m010_flag_posted (older claims: posted)."""
    conn.execute(
        """
        ALTER TABLE flagged_pairs ADD COLUMN posted_at double precision, ADD COLUMN posted_ts text;
        UPDATE flagged_pairs SET posted_at = flagged_at;
        CREATE INDEX flagged_unposted ON flagged_pairs (flagged_at) WHERE posted_at IS NULL
        """
    )


MIGRATIONS: list[Callable[[psycopg.Connection], None]] = [m001_create_tables, m002_slack_state, m003_leases, m004_questions,
                                                       m005_flag_posted]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply every pending migration (each with its record, in one transaction); return the names applied now."""
    ran = []
    for migration in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name text PRIMARY KEY, applied_at double precision)")
            if conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (migration.__name__,)).fetchone():
                continue
            migration(conn)
            conn.execute("INSERT INTO _migrations VALUES (%s, %s)", (migration.__name__, time.time()))
        ran.append(migration.__name__)
    return ran
