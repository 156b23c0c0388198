"""The errors kb-bot shows to people.

Every error here carries a one-line message meant for a user, never a stack
trace. The CLI prints it and exits 1; the Slack app replies with it.

    KbError
    ├── SettingsError        a setting is missing or invalid (names the variable)
    ├── DatabaseError        the SQLite file or its vector extension is unusable
    ├── EmbeddingError       the embedder failed (bad model file, endpoint error,
    │                        wrong vector count or size)
    │   └── TextTooLongError a text exceeds the model's limit and was not split
    ├── QueryError           an empty or unusable question
    ├── IndexNotBuiltError   no index exists yet for this database
    └── LockHeldError        another re-index holds the lock
"""

from __future__ import annotations


class KbError(Exception):
    """Base of every error whose message is meant for the user."""


class SettingsError(KbError):
    """A setting from the environment or `.env` is missing or invalid."""


class DatabaseError(KbError):
    """The database cannot be opened or lacks what kb-bot needs."""


class EmbeddingError(KbError):
    """An embedder could not turn texts into vectors."""


class TextTooLongError(EmbeddingError):
    """A text is longer than the model accepts; the caller must split it."""


class QueryError(KbError):
    """A question that cannot be searched (empty, whitespace only)."""


class IndexNotBuiltError(KbError):
    """The database has no index yet."""


class LockHeldError(KbError):
    """Another re-index is running."""
