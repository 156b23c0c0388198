"""The question log and answer feedback: what people asked, what they were shown, whether it helped.

Kept so owners learn what their colleagues asked and did not find (`bot.gaps`).
Only the question's own text is stored, never other message text; askers and
voters only as a salted hash, enough to count distinct people. Questions go
after KB_QUESTIONS_DAYS and votes after KB_FEEDBACK_DAYS (a question takes its
votes with it), pruned whenever a question is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from bot.cache import embed_many
from bot.embeddings import Embedder
from bot.search import MAX_QUERY_CHARS, SearchResult
from bot.settings import Settings
from bot.store import Store, cache_key

DAY = 86400.0


def person_hash(salt: str, user: str) -> str:
    """A user id as a keyed hash: the same person counts once, and the id cannot be read back."""
    return hmac.new(salt.encode(), user.encode(), hashlib.sha256).hexdigest()[:32]


def shown_sources(result: SearchResult) -> list[dict[str, object]]:
    """The passages an answer showed: path, lines (the passage's identity across re-indexes) and score."""
    return [
        {"path": h.path, "start_line": h.start_line, "end_line": h.end_line, "score": h.score}
        for h in result.hits
    ]


def record_question(
    store: Store, embedder: Embedder, settings: Settings, result: SearchResult, *,
    channel: str | None, user: str | None, thread: str | None = None, now: float | None = None,
) -> int:
    """Keep a question people asked with what it was shown; return its id (the answer's id in vote buttons).

    Its vector goes to the embedding cache under `vector_key` (a cache hit when
    the same question was asked before), so grouping questions later embeds nothing.
    `thread` is the chat thread the answer went to: later turns there are follow-ups.
    """
    now = time.time() if now is None else now
    text = result.query[:MAX_QUERY_CHARS]
    embed_many(embedder, store, [text], truncate=True)
    prune(store, settings, now)
    return store.questions.add(
        text=result.query, model=embedder.model_id, vector_key=cache_key(embedder.model_id, text), asked_at=now,
        channel=channel, asker=person_hash(store.questions.salt(), user) if user else None,
        confident=result.confident, sources=shown_sources(result), thread=thread,
    )


def record_vote(store: Store, question_id: int, user: str, helpful: bool, now: float | None = None) -> bool:
    """`user`'s vote on an answer, replacing an earlier one; False when the question is no longer kept."""
    voter = person_hash(store.questions.salt(), user)
    return store.questions.vote(question_id, voter, helpful, time.time() if now is None else now)


def prune(store: Store, settings: Settings, now: float | None = None) -> tuple[int, int]:
    """Drop what is past retention: (questions removed, votes removed)."""
    now = time.time() if now is None else now
    return store.questions.prune(now - settings.questions_days * DAY, now - settings.feedback_days * DAY)


FOLLOW_UP_TURNS = 2  # earlier questions of a thread searched with a follow-up


def follow_up_query(earlier: list[str], text: str) -> str:
    """What a follow-up searches: the thread's last few questions, then the new text.

    "what about contractors?" alone finds nothing useful; with the question
    before it, it finds that question's topic as it applies to contractors.
    """
    return " ".join([*earlier[-FOLLOW_UP_TURNS:], text])
