"""One duplicate scan over a chat platform: backfill, find (`bot.dupes.match`), flag (`bot.dupes.flag`), mark scanned.

Run by `bot.scheduler` and by `kb-bot dupes scan`. Everything the platform
does goes through a `bot.chat.ChatPort`, so these rules — which channels,
each later message flagged at most once (`flagged_pairs`, claimed before
posting), what is retried — are the same on any platform.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from bot.chat import ChatError, ChatPort
from bot.dupes.flag import Outcome, flag_pairs, retry_unposted
from bot.dupes.match import Pair, find_duplicates
from bot.dupes.rules import DupRules
from bot.embeddings import Embedder
from bot.errors import SettingsError
from bot.store import Store

log = logging.getLogger(__name__)

# How long a message stays after it left every duplicate window: time to click
# "Not the same question" on a flag about it. Older messages are dropped.
KEPT_PAST_WINDOW_SECONDS = 7 * 86400


# --- backfill ---------------------------------------------------------------------


def watched_channels(chat: ChatPort, rules: DupRules) -> list[str]:
    """The channels a scan reads: the public channels the bot is in, all of them or those in DUP_CHANNELS.

    A private channel is watched only when DUP_CHANNELS names it and
    DUP_ALLOW_PRIVATE=true: the scan links earlier messages from any watched
    channel, so a private message would otherwise be linked in a public thread.
    Any other id in DUP_CHANNELS is skipped with a warning.
    """
    private = rules.allow_private and bool(rules.channels)
    member = chat.channels(private=private)
    if not rules.channels:
        return [channel for channel, is_private in member.items() if not is_private]
    for channel in (c for c in rules.channels if c not in member):
        log.warning("dupes: not watching %s from DUP_CHANNELS: not a public channel the bot is in%s", channel,
                    "" if private else " (private channels need DUP_ALLOW_PRIVATE=true)")
    return [channel for channel in rules.channels if channel in member]


def watches_event(rules: DupRules, channel: str, channel_type: str | None) -> bool:
    """Whether a message event is from a channel the scan may watch (the same rule as `watched_channels`).

    An event without `channel_type` is not trusted to be from a public channel.
    """
    if channel_type == "group":
        return rules.allow_private and channel in rules.channels
    return channel_type == "channel" and (not rules.channels or channel in rules.channels)


def backfill(store: Store, chat: ChatPort, rules: DupRules, channels: Iterable[str]) -> int:
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
        oldest = cursor or f"{time.time() - rules.window_seconds:.6f}"
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


def check_action(rules: DupRules) -> None:
    if rules.action != "thread" and not rules.report_channel:
        raise SettingsError(f"DUP_ACTION={rules.action} needs DUP_REPORT_CHANNEL (a channel id)")


def dry_run_pairs(store: Store, embedder: Embedder, rules: DupRules, chat: ChatPort) -> list[Pair]:
    """The pairs a scan would flag now, from the messages already stored: the same channels, nothing
    fetched, posted or marked (the platform is only asked which channels the bot is in)."""
    return find_duplicates(store, embedder, rules, watched_channels(chat, rules), to_plain=chat.to_plain).pairs


def scan_and_flag(store: Store, embedder: Embedder, rules: DupRules, chat: ChatPort) -> list[Pair]:
    """One full scan: finish flags an earlier scan left unposted, backfill, find, flag, mark scanned,
    drop messages past every window. Returns the pairs flagged now.

    A message is marked scanned only once handled; one whose flag failed for
    a passing reason stays new, so the next scan retries it.
    """
    check_action(rules)
    finished = retry_unposted(store, chat, rules)
    channels = watched_channels(chat, rules)
    added = backfill(store, chat, rules, channels)
    findings = find_duplicates(store, embedder, rules, channels, to_plain=chat.to_plain)
    outcomes = flag_pairs(store, chat, rules, findings.pairs)
    retry = {(p.later.channel, p.later.ts) for p, outcome in outcomes.items() if outcome is Outcome.RETRY}
    store.messages.mark_scanned([m for m in findings.examined if (m.channel, m.ts) not in retry])
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    forgotten = store.messages.forget_messages_before(time.time() - rules.window_seconds - KEPT_PAST_WINDOW_SECONDS)
    log.info(
        "dupes scan channels=%d backfilled=%d examined=%d pairs=%d flagged=%d retry=%d unposted_finished=%d "
        "forgotten=%d",
        len(channels), added, len(findings.examined), len(findings.pairs), len(flagged), len(retry), finished,
        forgotten,
    )
    return flagged
