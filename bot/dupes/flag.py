"""Flagging the pairs a scan found: a threaded reply and/or a digest, each later message at most once.

Each flag is claimed in the store (`flagged_pairs`) before it is posted and the
claim released if the platform fails, so a later message is flagged at most
once, ever; what failed for a passing reason is retried by the next scan.
Everything the platform does goes through a `bot.chat.ChatPort`.
"""

from __future__ import annotations

import logging
from enum import Enum

from bot.chat import ChatError, ChatPort, MessageGone
from bot.dupes.feedback import not_same_button
from bot.dupes.match import Pair
from bot.dupes.rules import DupRules
from bot.store import Store

log = logging.getLogger(__name__)


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


def _flag_one(store: Store, chat: ChatPort, rules: DupRules, pair: Pair) -> Outcome:
    """Claim, then post the threaded reply (if asked for); undo the claim if the platform fails."""
    later, earlier = pair.later, pair.earlier
    if store.messages.get_message(earlier.channel, earlier.ts) is None:
        return Outcome.RETRY  # the earlier twin was deleted meanwhile: judge again without it
    if not store.messages.claim_flag(later, earlier, pair.score, rules.action):
        return Outcome.DROP
    try:
        link = chat.permalink(earlier.channel, earlier.ts)
    except MessageGone:  # deleted while we were down
        store.messages.release_flags([(later, earlier)])
        store.messages.delete_message(channel=earlier.channel, ts=earlier.ts)
        return Outcome.RETRY
    except ChatError as exc:
        return _failed(store, chat, pair, exc, "permalink", earlier.channel)
    if rules.action == "digest":
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


def flag_pairs(store: Store, chat: ChatPort, rules: DupRules, pairs: list[Pair]) -> dict[Pair, Outcome]:
    """Post what DUP_ACTION asks for, each later message at most once, ever."""
    outcomes = {pair: _flag_one(store, chat, rules, pair) for pair in pairs}
    flagged = [p for p, outcome in outcomes.items() if outcome is Outcome.FLAGGED]
    if rules.action == "thread" or not flagged:
        return outcomes
    try:
        chat.post(rules.report_channel, digest_text(chat, flagged))
    except ChatError as exc:
        log.warning("dupes digest failed channel=%s error=%s", rules.report_channel, exc.code)
        if rules.action == "digest":  # nothing reached anyone: try these again next scan
            store.messages.release_flags((p.later, p.earlier) for p in flagged)
            outcomes.update(dict.fromkeys(flagged, Outcome.RETRY))
    return outcomes
