"""One duplicate scan over a chat platform: backfill, find (`bot.dupes.flag`), flag, mark scanned.

Run by `bot.scheduler` and by `kb-bot dupes scan`. Everything the platform
does goes through a `bot.chat.ChatPort`, so these rules — which channels,
each later message flagged at most once (`flagged_pairs`, claimed before
posting), what is retried — are the same on any platform.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from enum import Enum

from bot.chat import ChatError, ChatPort, MessageGone
from bot.dupes.feedback import not_same_button
from bot.dupes.flag import DAY, Pair, find_duplicates
from bot.embeddings import Embedder
from bot.errors import SettingsError
from bot.settings import Settings
from bot.store import Store

log = logging.getLogger(__name__)

# --- flagging ---------------------------------------------------------------------


class Outcome(Enum):
    FLAGGED = "flagged"
    RETRY = "retry"  # leave the later message unscanned: the next scan tries again
    DROP = "drop"  # judged, nothing to post


def why(pair: Pair) -> str:
    """What matched, for a person: the words both messages share and their similarity."""
    about = f"the same question about “{pair.verdict.about}”" if pair.verdict.about else "the same question"
    return f"{about}, similarity {pair.score:.2f}"


def reply_text(earlier_link: str, pair: Pair) -> str:
    return f"This looks like <{earlier_link}>: {why(pair)}"


def reply_blocks(earlier_link: str, pair: Pair) -> list[dict[str, object]]:
    """The threaded flag: its text, and a button for saying it is wrong (`bot.dupes.feedback`)."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": reply_text(earlier_link, pair)}},
            not_same_button(pair.later.channel, pair.later.ts)]


def _failed(store: Store, chat: ChatPort, pair: Pair, error: ChatError, what: str, channel: str) -> Outcome:
    """Undo the claim of a flag that failed to post, log why, and say whether to try again."""
    store.messages.release_flags([(pair.later, pair.earlier)])
    log.warning("dupes %s failed channel=%s error=%s", what, channel, error.code)
    return Outcome.RETRY if chat.is_transient(error) else Outcome.DROP


def _flag_one(store: Store, chat: ChatPort, settings: Settings, pair: Pair) -> Outcome:
    """Claim, then post the threaded reply (if asked for); undo the claim if the platform fails."""
    later, earlier = pair.later, pair.earlier
    if store.messages.get_message(earlier.channel, earlier.ts) is None:
        return Outcome.RETRY  # the earlier twin was deleted meanwhile: judge again without it
    if not store.messages.claim_flag(later, earlier, pair.score, settings.dup_action):
        return Outcome.DROP
    try:
        link = chat.permalink(earlier.channel, earlier.ts)
    except MessageGone:  # deleted while we were down
        store.messages.release_flags([(later, earlier)])
        store.messages.delete_message(channel=earlier.channel, ts=earlier.ts)
        return Outcome.RETRY
    except ChatError as exc:
        return _failed(store, chat, pair, exc, "permalink", earlier.channel)
    if settings.dup_action == "digest":
        return Outcome.FLAGGED
    try:
        chat.reply_in_thread(later.channel, later.thread_ts or later.ts, reply_text(link, pair),
                             reply_blocks(link, pair))
    except ChatError as exc:
        return _failed(store, chat, pair, exc, "reply", later.channel)
    return Outcome.FLAGGED


def digest_text(chat: ChatPort, pairs: list[Pair]) -> str:
    lines = [f"Possible repeated questions ({len(pairs)}):"]
    for pair in pairs:
        later = chat.permalink(pair.later.channel, pair.later.ts)
        earlier = chat.permalink(pair.earlier.channel, pair.earlier.ts)
        lines.append(f"• <{later}|This message> looks like <{earlier}|an earlier one>: {why(pair)}")
    return "\n".join(lines)


def flag_pairs(store: Store, chat: ChatPort, settings: Settings, pairs: list[Pair]) -> dict[Pair, Outcome]:
    """Post what DUP_ACTION asks for, each later message at most once, ever."""
    outcomes = {pair: _flag_one(store, chat, settings, pair) for pair in pairs}
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    if settings.dup_action == "thread" or not flagged:
        return outcomes
    try:
        chat.post(settings.dup_report_channel, digest_text(chat, flagged))
    except ChatError as exc:
        log.warning("dupes digest failed channel=%s error=%s", settings.dup_report_channel, exc.code)
        if settings.dup_action == "digest":  # nothing reached anyone: try these again next scan
            store.messages.release_flags((p.later, p.earlier) for p in flagged)
            outcomes.update(dict.fromkeys(flagged, Outcome.RETRY))
    return outcomes


# --- backfill ---------------------------------------------------------------------


def watched_channels(chat: ChatPort, settings: Settings) -> list[str]:
    """The channels a scan reads: the public channels the bot is in, all of them or those in DUP_CHANNELS.

    A private channel is watched only when DUP_CHANNELS names it and
    DUP_ALLOW_PRIVATE=true: the scan links earlier messages from any watched
    channel, so a private message would otherwise be linked in a public thread.
    Any other id in DUP_CHANNELS is skipped with a warning.
    """
    private = settings.dup_allow_private and bool(settings.dup_channels)
    member = chat.channels(private=private)
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


def backfill(store: Store, chat: ChatPort, settings: Settings, channels: Iterable[str]) -> int:
    """Fetch each channel's history since its cursor; return how many messages were new.

    A channel seen for the first time is read back DUP_WINDOW_DAYS and kept as
    context only (already scanned), so installing the bot does not flag a
    month of old repeats; after that, what arrives through history while the
    bot was down is scanned like any event. A channel that fails is skipped
    until the next scan, its cursor unmoved. Thread replies are not in a
    channel's history: they come from events only.
    """
    added = 0
    for channel in channels:
        cursor = store.messages.channel_cursor(channel)
        oldest = cursor or f"{time.time() - settings.dup_window_days * DAY:.6f}"
        try:
            history = chat.history(channel, oldest)
        except ChatError as exc:
            log.warning("dupes backfill failed channel=%s error=%s", channel, exc.code)
            continue
        added += store.messages.record_messages(history.posts, scanned_at=None if cursor else time.time())
        for ts in history.deleted:
            store.messages.delete_message(channel=channel, ts=ts)
        store.messages.set_channel_cursor(channel, history.newest or oldest)  # an empty channel is known from now on
    return added


# --- the job -------------------------------------------------------------------------


def check_action(settings: Settings) -> None:
    if settings.dup_action != "thread" and not settings.dup_report_channel:
        raise SettingsError(f"DUP_ACTION={settings.dup_action} needs DUP_REPORT_CHANNEL (a channel id)")


def dry_run_pairs(store: Store, embedder: Embedder, settings: Settings, chat: ChatPort) -> list[Pair]:
    """The pairs a scan would flag now, from the messages already stored: the same channels, nothing
    fetched, posted or marked (the platform is only asked which channels the bot is in)."""
    return find_duplicates(store, embedder, settings, watched_channels(chat, settings), to_plain=chat.to_plain).pairs


def scan_and_flag(store: Store, embedder: Embedder, settings: Settings, chat: ChatPort) -> list[Pair]:
    """One full scan: backfill, find, flag, mark scanned. Returns the pairs flagged now.

    A message is marked scanned only once handled; one whose flag failed for
    a passing reason stays new, so the next scan retries it.
    """
    check_action(settings)
    channels = watched_channels(chat, settings)
    added = backfill(store, chat, settings, channels)
    findings = find_duplicates(store, embedder, settings, channels, to_plain=chat.to_plain)
    outcomes = flag_pairs(store, chat, settings, findings.pairs)
    retry = {(p.later.channel, p.later.ts) for p, outcome in outcomes.items() if outcome is Outcome.RETRY}
    store.messages.mark_scanned([m for m in findings.examined if (m.channel, m.ts) not in retry])
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    log.info(
        "dupes scan channels=%d backfilled=%d examined=%d pairs=%d flagged=%d retry=%d",
        len(channels), added, len(findings.examined), len(findings.pairs), len(flagged), len(retry),
    )
    return flagged
