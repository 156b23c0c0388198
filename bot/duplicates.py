"""Repeated questions: notice a Slack message that asks what an earlier one asked.

One scan (run by `bot.scheduler` and by `kb-bot dupes scan`):

1. backfill — fetch each watched channel's history since its cursor with
   conversations.history, so messages posted while the bot was down are seen;
2. find — prepare the window's messages not prepared yet (normalise, embed
   through the embedding cache, keep the vector's cache key on the message;
   the Slack app does this as messages arrive), then compare each new message
   with the earlier messages of the window, keep its DUP_CANDIDATES most
   similar at DUP_THRESHOLD or more, and let the judge (`bot.dupe_judge`) pick
   the one that asks the same question, if any;
3. flag — a threaded reply and/or a digest, each later message at most once
   (`flagged_pairs`), then mark scanned exactly what was handled.

Cost as the window grows: a scan compares only the k new messages with the n
messages of the window (n ≈ messages a day × DUP_WINDOW_DAYS), never all pairs.
Each message is normalised and embedded once; a scan reads the window's
vectors in one join into one float16 matrix (n × 768 bytes for the
384-dimension model) and compares it 4,096 columns at a time with the new rows
that can reach them: O(n) to load plus O(k·n·d) to compare, O(n·d) memory; the judge
reads the words of at most DUP_CANDIDATES pairs per new message.
Measured on 2 cores (benchmarks/dupes.py): see the README's Performance.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.cache import embed_many
from bot.dupe_feedback import not_same_button
from bot.dupe_judge import Verdict, judge
from bot.embeddings import Embedder
from bot.errors import SettingsError
from bot.messages import Message, WindowRow, is_tombstone, is_user_post
from bot.settings import Settings
from bot.slack.format import from_slack
from bot.store import Store, cache_key

log = logging.getLogger(__name__)

DAY = 86400.0
HISTORY_PAGE = 200  # messages per conversations.history call (Slack allows up to 999; 200 is its advice)

# --- normalisation ------------------------------------------------------------

_CODE_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_BARE_URL = re.compile(r"\b(?:https?|mailto):\S+")
_EMOJI = re.compile(r"(?<!\w):[a-z0-9_+'-]+:(?!\w)")  # not the ":15:" of 10:15:30
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit: what makes a word a word
_EMPHASIS = re.compile(r"(?<!\w)([*_~])(\S(?:.*?\S)?)\1(?!\w)")


def normalize_text(text: str) -> str:
    """Slack markup to the plain words a person reads, minus what says nothing about the question.

    Code keeps its words, links keep their label, mentions and bare URLs go
    (two people asking the same thing mention different people and links),
    and so do :emoji: and *bold*/_italic_/~strike~ markers.
    """
    text = _CODE_BLOCK.sub(r" \1 ", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = from_slack(text)
    text = _BARE_URL.sub("", text)
    text = _EMOJI.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    return " ".join(text.split())


def candidate_text(text: str, settings: Settings) -> str | None:
    """The normalised text if the message is worth judging, else None.

    Emoji-only and URL-only messages normalise to nothing; short ones
    ("thanks!", "standup in 5") repeat all the time without being questions.
    """
    plain = normalize_text(text)
    words = sum(1 for word in plain.split() if _ALNUM.search(word))
    if words == 0 or words < settings.dup_min_words or len(plain) < settings.dup_min_chars:
        return None
    return plain


# --- finding --------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """A later message that repeats an earlier one: their cosine similarity and the judge's verdict."""

    earlier: Message
    later: Message
    score: float
    verdict: Verdict

    def as_dict(self) -> dict[str, object]:
        def side(m: Message) -> dict[str, str]:
            return {"channel": m.channel, "ts": m.ts, "text": m.text}

        return {"earlier": side(self.earlier), "later": side(self.later), "score": round(self.score, 4),
                "judge": self.verdict.as_dict()}


@dataclass
class Findings:
    """What one scan judged: its pairs, and every new message it looked at."""

    pairs: list[Pair] = field(default_factory=list)
    examined: list[Message] = field(default_factory=list)


def prepared_as(embedder: Embedder, settings: Settings) -> str:
    """What a message's preparation depends on: the model and the candidate rules."""
    return f"{embedder.model} words>={settings.dup_min_words} chars>={settings.dup_min_chars}"


# Messages normalised, embedded and recorded at a time: memory stays flat on a
# first scan of a long backfill.
PREPARE_BATCH = 5000


def prepare_messages(store: Store, embedder: Embedder, settings: Settings, messages: Iterable[Message]) -> None:
    """Normalise and embed messages for the scan, once: each keeps its vector's cache key.

    Run by the scan for whatever it finds unprepared, and by the Slack app as
    messages arrive, so a scan rarely waits for the model. Batches of
    PREPARE_BATCH keep memory flat on a first scan of a long backfill.
    """
    messages = list(messages)
    label = prepared_as(embedder, settings)
    for start in range(0, len(messages), PREPARE_BATCH):
        batch = messages[start : start + PREPARE_BATCH]
        texts = [candidate_text(m.text, settings) for m in batch]
        # a long message is judged by its opening (the model's window): where a question usually is
        embed_many(embedder, store, [t for t in texts if t is not None], truncate=True)
        keys = [cache_key(embedder.model, t) if t is not None else None for t in texts]
        store.messages.set_prepared(zip(batch, keys), label)


@dataclass(frozen=True)
class Window:
    """The messages a scan compares, oldest first, with their vectors as one float16 matrix.

    Half precision halves the scan's memory (100,000 messages: 74 MB, not 147)
    and moves a similarity by at most 0.001 (2 × 2^-11; 0.0001 measured).
    """

    rows: list[WindowRow]
    vectors: np.ndarray


# Rows converted to float16 at a time while a window is read, and columns
# compared at a time (widened back to float32 for the product).
WINDOW_CHUNK = 4096


@dataclass(frozen=True)
class Candidates:
    """A new message and the earlier ones most like it (DUP_THRESHOLD or above), best first."""

    later: Message
    earlier: list[tuple[Message, float]]


def find_candidates(
    store: Store, embedder: Embedder, settings: Settings, channels: Collection[str] | None = None
) -> tuple[list[Message], list[Candidates]]:
    """The unscanned messages, and for each that has any, its DUP_CANDIDATES best earlier matches.

    Stage one of the scan: vector similarity alone, at a threshold loose
    enough to reach honest rewordings; the judge (`bot.dupe_judge`) decides.
    """
    new = store.messages.unscanned_messages(channels)
    if not new:
        return [], []
    start, end = new[0].posted_at - settings.dup_window_days * DAY, new[-1].posted_at
    label = prepared_as(embedder, settings)
    prepare_messages(store, embedder, settings, store.messages.unprepared_messages(start, end, label, channels))
    window = _window(store, embedder, settings, store.messages.prepared_window(start, end, label, channels))
    flagged = store.messages.flagged_laters()
    by_key = {(m.channel, m.ts): m for m in new}
    judge = [i for i, r in enumerate(window.rows) if (r.channel, r.ts) in by_key and (r.channel, r.ts) not in flagged]
    found = []
    for i, matches in _top_earlier(window, judge, settings):
        earlier = [(message, score) for j, score in matches
                   if (message := store.messages.get_message(window.rows[j].channel, window.rows[j].ts)) is not None]
        if earlier:
            found.append(Candidates(by_key[(window.rows[i].channel, window.rows[i].ts)], earlier))
    return new, found


def find_duplicates(
    store: Store, embedder: Embedder, settings: Settings, channels: Collection[str] | None = None
) -> Findings:
    """Pair each unscanned message with the earlier one the judge is surest asks the same thing.

    Writes nothing but the messages' preparation and the embedding cache, so it
    is also the dry run.
    """
    new, found = find_candidates(store, embedder, settings, channels)
    return Findings([pair for candidates in found if (pair := judged_pair(candidates)) is not None], new)


def judged_pair(candidates: Candidates) -> Pair | None:
    """The candidate the judge most believes is the same question, or None if it believes none."""
    later = candidates.later
    best: Pair | None = None
    for earlier, score in candidates.earlier:
        verdict = judge(normalize_text(later.text), normalize_text(earlier.text), score)
        if verdict.same and (best is None or verdict.probability > best.verdict.probability):
            best = Pair(earlier, later, score, verdict)
    return best


def _window(
    store: Store, embedder: Embedder, settings: Settings, prepared: Iterable[tuple[WindowRow, bytes | None]]
) -> Window:
    """The prepared rows and their vectors as one matrix; vectors deleted from the cache are embedded again."""
    rows: list[WindowRow] = []
    matrix = bytearray()
    pending: list[bytes] = []
    lost: list[Message] = []
    for row, vector in prepared:
        if vector is not None:
            rows.append(row)
            pending.append(vector)
            if len(pending) == WINDOW_CHUNK:
                matrix += _half(pending)
                pending = []
        elif (message := store.messages.get_message(row.channel, row.ts)) is not None:
            lost.append(message)
    matrix += _half(pending)
    vectors = np.frombuffer(matrix, dtype=np.float16).reshape(len(rows), embedder.dim)
    if not lost:
        return Window(rows, vectors)
    log.warning("dupes: %d message vectors missing from the embedding cache: embedding them again", len(lost))
    texts = {m: t for m in lost if (t := candidate_text(m.text, settings)) is not None}
    rows += [WindowRow(m.channel, m.ts, m.thread_ts, m.user, m.posted_at) for m in texts]
    again = embed_many(embedder, store, list(texts.values()), truncate=True)
    vectors = np.vstack([vectors, again.astype(np.float16)])
    order = sorted(range(len(rows)), key=lambda i: (rows[i].posted_at, rows[i].ts))
    return Window([rows[i] for i in order], vectors[order])


def _half(blobs: list[bytes]) -> bytes:
    """float32 vector blobs as one run of float16 bytes."""
    return np.frombuffer(b"".join(blobs), dtype=np.float32).astype(np.float16).tobytes()


def _top_earlier(window: Window, judge: list[int], settings: Settings) -> Iterable[tuple[int, list[tuple[int, float]]]]:
    """(row, [(earlier row, similarity), ...] best first) for each row in `judge` (ascending) with a match.

    A match is an earlier row at or above DUP_THRESHOLD; each row keeps its
    DUP_CANDIDATES best, for the judge to choose from (a look-alike may score
    above the true repeat). Earlier means before in posting order, within the
    window, outside the row's own thread, and — when DUP_SAME_AUTHOR_MINUTES > 0
    — not the same author re-posting within that many minutes. The window is
    compared WINDOW_CHUNK columns at a time, each chunk only with the judged
    rows that can reach it; only scores above a row's current k-th best are kept.
    """
    if not judge:
        return
    posted = np.array([r.posted_at for r in window.rows])
    family = _codes([(r.channel, r.thread_ts or r.ts) for r in window.rows])
    author = _codes([r.user for r in window.rows])
    span = settings.dup_window_days * DAY
    same_author = settings.dup_same_author_minutes * 60.0
    rows = np.array(judge)
    questions = window.vectors[rows].astype(np.float32)
    kept = _Kept.empty(len(rows), settings.dup_threshold, settings.dup_candidates)
    for lo in range(0, int(rows[-1]), WINDOW_CHUNK):
        hi = min(lo + WINDOW_CHUNK, int(rows[-1]))
        # the judged rows after the chunk's start whose window reaches back into it
        a = int(np.searchsorted(rows, lo, side="right"))
        b = int(np.searchsorted(posted[rows], posted[hi - 1] + span, side="right"))
        if a >= b:
            continue
        r = rows[a:b]
        allowed = np.arange(lo, hi)[None, :] < r[:, None]
        allowed &= posted[None, lo:hi] >= posted[r, None] - span
        allowed &= family[None, lo:hi] != family[r, None]
        if same_author > 0:
            allowed &= ~((author[None, lo:hi] == author[r, None])
                         & (posted[None, lo:hi] >= posted[r, None] - same_author))
        scores = questions[a:b] @ window.vectors[lo:hi].astype(np.float32).T
        np.copyto(scores, -np.inf, where=~allowed)
        floor = kept.floor[a:b]
        reached = np.flatnonzero(scores.max(axis=1) >= floor)  # most rows reach nothing in most chunks
        hit_row, hit_column = np.nonzero(scores[reached] >= floor[reached, None])
        kept.add(a + reached[hit_row], lo + hit_column, scores[reached[hit_row], hit_column])
    for i, matches in kept.by_row():
        yield int(rows[i]), matches


@dataclass
class _Kept:
    """Each judged row's best matches so far: parallel arrays, at most k per row.

    `floor` is the score a new match must reach: DUP_THRESHOLD, or the row's
    k-th best once it has k, so a chunk's few high scores are all that is kept.
    """

    row: np.ndarray
    column: np.ndarray
    score: np.ndarray
    floor: np.ndarray
    k: int

    @classmethod
    def empty(cls, rows: int, threshold: float, k: int) -> _Kept:
        none = np.empty(0, dtype=np.int64)
        return cls(none, none, np.empty(0, dtype=np.float32), np.full(rows, threshold, dtype=np.float32), k)

    def add(self, row: np.ndarray, column: np.ndarray, score: np.ndarray) -> None:
        if not len(row):
            return
        row, column = np.concatenate([self.row, row]), np.concatenate([self.column, column])
        score = np.concatenate([self.score, score])
        order = np.lexsort((-score, row))
        row, column, score = row[order], column[order], score[order]
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rank = np.arange(len(row)) - np.repeat(starts, np.diff(np.r_[starts, len(row)]))
        last = rank == self.k - 1
        self.floor[row[last]] = np.maximum(self.floor[row[last]], score[last])
        keep = rank < self.k
        self.row, self.column, self.score = row[keep], column[keep], score[keep]

    def by_row(self) -> Iterable[tuple[int, list[tuple[int, float]]]]:
        """(row, [(column, score), ...] best first), rows ascending."""
        starts = np.flatnonzero(np.r_[True, self.row[1:] != self.row[:-1]]) if len(self.row) else []
        for lo, hi in zip(starts, [*starts[1:], len(self.row)]):
            yield int(self.row[lo]), list(zip(self.column[lo:hi].tolist(), self.score[lo:hi].tolist()))


def _codes(keys: list[object]) -> np.ndarray:
    """Small integers standing for `keys`, equal where the keys are equal."""
    seen: dict[object, int] = {}
    return np.array([seen.setdefault(key, len(seen)) for key in keys])


# --- flagging ---------------------------------------------------------------------

# Slack errors worth retrying on the next scan; any other error is permanent.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Outcome(Enum):
    FLAGGED = "flagged"
    RETRY = "retry"  # leave the later message unscanned: the next scan tries again
    DROP = "drop"  # judged, nothing to post


def _slack_error(exc: Exception) -> str:
    return str(exc.response.get("error")) if isinstance(exc, SlackApiError) else type(exc).__name__


def _is_transient(exc: Exception) -> bool:
    return not isinstance(exc, SlackApiError) or _slack_error(exc) in _TRANSIENT


def _release(store: Store, pairs: Iterable[Pair]) -> None:
    store.messages.release_flags((p.later, p.earlier) for p in pairs)


def _permalink(client: WebClient, message: Message) -> str:
    return client.chat_getPermalink(channel=message.channel, message_ts=message.ts)["permalink"]


def why(pair: Pair) -> str:
    """What matched, for a person: the words both messages share and their similarity."""
    about = f"the same question about “{pair.verdict.about}”" if pair.verdict.about else "the same question"
    return f"{about}, similarity {pair.score:.2f}"


def reply_text(earlier_link: str, pair: Pair) -> str:
    return f"This looks like <{earlier_link}>: {why(pair)}"


def reply_blocks(earlier_link: str, pair: Pair) -> list[dict[str, object]]:
    """The threaded flag: its text, and a button for saying it is wrong (`bot.dupe_feedback`)."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": reply_text(earlier_link, pair)}},
            not_same_button(pair.later.channel, pair.later.ts)]


def _flag_one(store: Store, client: WebClient, settings: Settings, pair: Pair) -> Outcome:
    """Claim, then post the threaded reply (if asked for); undo the claim if Slack fails."""
    if store.messages.get_message(pair.earlier.channel, pair.earlier.ts) is None:
        return Outcome.RETRY  # the earlier twin was deleted meanwhile: judge again without it
    if not store.messages.claim_flag(pair.later, pair.earlier, pair.score, settings.dup_action):
        return Outcome.DROP
    try:
        link = _permalink(client, pair.earlier)
    except (SlackClientError, OSError) as exc:
        _release(store, [pair])
        if _slack_error(exc) == "message_not_found":  # deleted while we were down
            store.messages.delete_message(channel=pair.earlier.channel, ts=pair.earlier.ts)
            return Outcome.RETRY
        log.warning("dupes permalink failed channel=%s error=%s", pair.earlier.channel, _slack_error(exc))
        return Outcome.RETRY if _is_transient(exc) else Outcome.DROP
    if settings.dup_action == "digest":
        return Outcome.FLAGGED
    try:
        client.chat_postMessage(
            channel=pair.later.channel,
            thread_ts=pair.later.thread_ts or pair.later.ts,
            text=reply_text(link, pair),
            blocks=reply_blocks(link, pair),
        )
    except (SlackClientError, OSError) as exc:
        _release(store, [pair])
        log.warning("dupes reply failed channel=%s error=%s", pair.later.channel, _slack_error(exc))
        return Outcome.RETRY if _is_transient(exc) else Outcome.DROP
    return Outcome.FLAGGED


def digest_text(client: WebClient, pairs: list[Pair]) -> str:
    lines = [f"Possible repeated questions ({len(pairs)}):"]
    for pair in pairs:
        later, earlier = _permalink(client, pair.later), _permalink(client, pair.earlier)
        lines.append(f"• <{later}|This message> looks like <{earlier}|an earlier one>: {why(pair)}")
    return "\n".join(lines)


def flag_pairs(store: Store, client: WebClient, settings: Settings, pairs: list[Pair]) -> dict[Pair, Outcome]:
    """Post what DUP_ACTION asks for, each later message at most once, ever."""
    outcomes = {pair: _flag_one(store, client, settings, pair) for pair in pairs}
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    if settings.dup_action == "thread" or not flagged:
        return outcomes
    try:
        client.chat_postMessage(channel=settings.dup_report_channel, text=digest_text(client, flagged))
    except (SlackClientError, OSError) as exc:
        log.warning("dupes digest failed channel=%s error=%s", settings.dup_report_channel, _slack_error(exc))
        if settings.dup_action == "digest":  # nothing reached anyone: try these again next scan
            _release(store, flagged)
            outcomes.update(dict.fromkeys(flagged, Outcome.RETRY))
    return outcomes


# --- backfill ---------------------------------------------------------------------


def watched_channels(client: WebClient, settings: Settings) -> list[str]:
    """The channels a scan reads: the public channels the bot is in, all of them or those in DUP_CHANNELS.

    A private channel is watched only when DUP_CHANNELS names it and
    DUP_ALLOW_PRIVATE=true: the scan links earlier messages from any watched
    channel, so a private message would otherwise be linked in a public thread.
    Any other id in DUP_CHANNELS is skipped with a warning.
    """
    private = settings.dup_allow_private and bool(settings.dup_channels)
    pages = client.users_conversations(
        types="public_channel,private_channel" if private else "public_channel", exclude_archived=True, limit=200
    )
    member = {channel["id"]: bool(channel.get("is_private")) for page in pages for channel in page["channels"]}
    if not settings.dup_channels:
        return [channel for channel, is_private in member.items() if not is_private]
    for channel in (c for c in settings.dup_channels if c not in member):
        log.warning("dupes: not watching %s from DUP_CHANNELS: not a public channel the bot is in%s", channel,
                    "" if private else " (private channels need DUP_ALLOW_PRIVATE=true)")
    return [channel for channel in settings.dup_channels if channel in member]


def watches_event(settings: Settings, channel: str, channel_type: str | None) -> bool:
    """Whether a message event is from a channel the scan may watch (the same rule as `watched_channels`).

    An event without `channel_type` is not trusted to be from a public channel.
    """
    if channel_type == "group":
        return settings.dup_allow_private and channel in settings.dup_channels
    return channel_type == "channel" and (not settings.dup_channels or channel in settings.dup_channels)


def backfill(store: Store, client: WebClient, settings: Settings, channels: Iterable[str]) -> int:
    """Fetch each channel's history since its cursor; return how many messages were new.

    A channel seen for the first time is read back DUP_WINDOW_DAYS and kept as
    context only (already scanned), so installing the bot does not flag a
    month of old repeats; after that, what arrives through history while the
    bot was down is scanned like any event. A channel that fails is skipped
    until the next scan, its cursor unmoved. Thread replies are not in
    conversations.history: they come from events only.
    """
    added = 0
    for channel in channels:
        cursor = store.messages.channel_cursor(channel)
        oldest = cursor or f"{time.time() - settings.dup_window_days * DAY:.6f}"
        try:
            posts, deleted, newest = _history(client, channel, oldest)
        except (SlackClientError, OSError) as exc:
            log.warning("dupes backfill failed channel=%s error=%s", channel, _slack_error(exc))
            continue
        added += store.messages.record_messages(posts, scanned_at=None if cursor else time.time())
        for ts in deleted:
            store.messages.delete_message(channel=channel, ts=ts)
        store.messages.set_channel_cursor(channel, newest or oldest)  # an empty channel is known from now on
    return added


def _history(client: WebClient, channel: str, oldest: str) -> tuple[list[Message], list[str], str | None]:
    """The people's posts after `oldest` (all pages), the deleted thread parents', and the newest ts seen."""
    posts: list[Message] = []
    deleted: list[str] = []
    stamps: list[str] = []
    for page in client.conversations_history(channel=channel, oldest=oldest, limit=HISTORY_PAGE):
        for event in page["messages"]:
            stamps.append(event["ts"])
            if is_user_post(event):
                posts.append(Message(channel, event["ts"], event.get("thread_ts"), event["user"],
                                     event.get("text") or "", float(event["ts"])))
            elif is_tombstone(event):
                deleted.append(event["ts"])
    return posts, deleted, max(stamps, key=float, default=None)


# --- the job -------------------------------------------------------------------------


def check_action(settings: Settings) -> None:
    if settings.dup_action != "thread" and not settings.dup_report_channel:
        raise SettingsError(f"DUP_ACTION={settings.dup_action} needs DUP_REPORT_CHANNEL (a channel id)")


def dry_run_pairs(store: Store, embedder: Embedder, settings: Settings, client: WebClient) -> list[Pair]:
    """The pairs a scan would flag now, from the messages already stored: the same channels, nothing
    fetched, posted or marked (Slack is only asked which channels the bot is in)."""
    return find_duplicates(store, embedder, settings, watched_channels(client, settings)).pairs


def scan_and_flag(store: Store, embedder: Embedder, settings: Settings, client: WebClient) -> list[Pair]:
    """One full scan: backfill, find, flag, mark scanned. Returns the pairs flagged now.

    A message is marked scanned only once handled; one whose flag failed for
    a passing reason stays new, so the next scan retries it.
    """
    check_action(settings)
    channels = watched_channels(client, settings)
    added = backfill(store, client, settings, channels)
    findings = find_duplicates(store, embedder, settings, channels)
    outcomes = flag_pairs(store, client, settings, findings.pairs)
    retry = {(p.later.channel, p.later.ts) for p, outcome in outcomes.items() if outcome is Outcome.RETRY}
    store.messages.mark_scanned([m for m in findings.examined if (m.channel, m.ts) not in retry])
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    log.info(
        "dupes scan channels=%d backfilled=%d examined=%d pairs=%d flagged=%d retry=%d",
        len(channels), added, len(findings.examined), len(findings.pairs), len(flagged), len(retry),
    )
    return flagged
