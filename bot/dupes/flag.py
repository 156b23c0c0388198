"""Flagging the pairs a scan found: a threaded reply and/or a digest, each later message at most once.

Each flag is claimed in the store (`flagged_pairs`) before it is posted and the
claim released if the platform fails, so a later message is flagged at most
once, ever; what failed for a passing reason is retried by the next scan.
Once the platform accepted the post, the claim is marked posted. A claim left
unposted (its scan died between claim and post: a replica killed, a crash) is
finished by a later scan (`retry_unposted`), which first reads the thread so a
post that did arrive is only marked, never made twice.
Everything the platform does goes through a `bot.chat.ChatPort`.
"""

from __future__ import annotations

import logging
import time
from enum import Enum

from bot.chat import ChatError, ChatPort, MessageGone, OwnPost
from bot.dupes.feedback import not_same_button
from bot.dupes.judge import judge
from bot.dupes.match import Pair
from bot.dupes.normalise import normalize_text
from bot.dupes.rules import DupRules
from bot.store import Claim, Message, Store

log = logging.getLogger(__name__)

# An unposted claim is finished after this many scan intervals: past the lease (1.5 intervals) its scan
# held, so that scan is over or its replica dead, and far longer than posting takes (slack_sdk gives up
# a call after 30 s; a scan runs every 15 minutes by default).
RETRY_PERIODS = 3


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


def _failed(store: Store, chat: ChatPort, pair: Pair, error: ChatError, what: str, channel: str, *,
            retrying: bool) -> Outcome:
    """Undo the claim of a flag that failed to post, log why, and say whether to try again.

    A retry (`retry_unposted`) keeps the claim on a passing failure: its later
    message was judged already, so the claim is what brings it back next scan.
    """
    transient = chat.is_transient(error)
    if not (retrying and transient):
        store.messages.release_flags([(pair.later, pair.earlier)])
    log.warning("dupes %s failed channel=%s error=%s", what, channel, error.code)
    return Outcome.RETRY if transient else Outcome.DROP


def _flag_one(store: Store, chat: ChatPort, rules: DupRules, pair: Pair) -> Outcome:
    """Claim, then post the threaded reply (if asked for); undo the claim if the platform fails."""
    later, earlier = pair.later, pair.earlier
    if store.messages.get_message(earlier.channel, earlier.ts) is None:
        return Outcome.RETRY  # the earlier twin was deleted meanwhile: judge again without it
    if not store.messages.claim_flag(later, earlier, pair.score, rules.action):
        return Outcome.DROP
    return _post(store, chat, pair, thread=rules.action != "digest", retrying=False)


def _post(store: Store, chat: ChatPort, pair: Pair, *, thread: bool, retrying: bool) -> Outcome:
    """Post a claimed pair's threaded reply (`thread`) and mark the claim posted; undo the claim if the platform
    fails (see `_failed`). Without `thread`, only check the earlier message is still there: the digest posts
    and marks it."""
    later, earlier = pair.later, pair.earlier
    try:
        link = chat.permalink(earlier.channel, earlier.ts)
    except MessageGone:  # deleted while we were down
        store.messages.release_flags([(later, earlier)])
        store.messages.delete_message(channel=earlier.channel, ts=earlier.ts)
        return Outcome.RETRY
    except ChatError as exc:
        return _failed(store, chat, pair, exc, "permalink", earlier.channel, retrying=retrying)
    if not thread:
        return Outcome.FLAGGED
    try:
        posted = chat.reply_in_thread(later.channel, _thread_of(later), reply_text(link, pair),
                                      reply_blocks(link, pair))
    except ChatError as exc:
        return _failed(store, chat, pair, exc, "reply", later.channel, retrying=retrying)
    store.messages.mark_posted([(later, posted)])
    return Outcome.FLAGGED


def _thread_of(message: Message) -> str:
    return message.thread_ts or message.ts


def retry_seconds(rules: DupRules) -> float:
    """How old an unposted claim must be before a scan finishes it: RETRY_PERIODS scan intervals."""
    return RETRY_PERIODS * rules.scan_minutes * 60


def retry_unposted(store: Store, chat: ChatPort, rules: DupRules) -> int:
    """Finish the threaded flags claimed more than `retry_seconds` ago and never marked posted; return how many.

    The thread is read first: a flag the platform got (its scan died before
    marking it) is only marked posted. A digest-only claim is left as it is:
    a digest has no thread to check, and posting it again could repeat it.
    """
    finished = 0
    for claim in store.messages.unposted_claims(time.time() - retry_seconds(rules)):
        if claim.action == "digest":
            continue
        later, pair = claim.later, _claimed_pair(claim, chat)
        try:
            there = next((post.ts for post in chat.own_replies(later.channel, _thread_of(later))
                          if _flags(post, later)), None)
        except ChatError as exc:  # kept for the next scan if passing; released if not (the thread is gone)
            _failed(store, chat, pair, exc, "thread check", later.channel, retrying=True)
            continue
        if there is not None:
            store.messages.mark_posted([(later, there)])
        elif _post(store, chat, pair, thread=True, retrying=True) is not Outcome.FLAGGED:
            continue
        log.info("dupes unposted flag finished channel=%s ts=%s already_there=%s", later.channel, later.ts,
                 there is not None)
        finished += 1
    return finished


def _flags(post: OwnPost, later: Message) -> bool:
    """Whether `post` is the flag of `later`: it carries the "Not the same question" button naming it."""
    button = not_same_button(later.channel, later.ts)["elements"][0]
    return any(element.get("action_id") == button["action_id"] and element.get("value") == button["value"]
               for block in post.blocks for element in block.get("elements") or [])


def _claimed_pair(claim: Claim, chat: ChatPort) -> Pair:
    """The pair of a claim as the scan that made it saw it (the judge's words for what both share)."""
    verdict = judge(normalize_text(claim.later.text, chat.to_plain), normalize_text(claim.earlier.text, chat.to_plain),
                    claim.score)
    return Pair(claim.earlier, claim.later, claim.score, verdict)


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
        digest = chat.post(rules.report_channel, digest_text(chat, flagged))
    except ChatError as exc:
        log.warning("dupes digest failed channel=%s error=%s", rules.report_channel, exc.code)
        if rules.action == "digest":  # nothing reached anyone: try these again next scan
            store.messages.release_flags((p.later, p.earlier) for p in flagged)
            outcomes.update(dict.fromkeys(flagged, Outcome.RETRY))
        return outcomes
    if rules.action == "digest":  # with "both", the threaded replies were marked as they were posted
        store.messages.mark_posted((p.later, digest) for p in flagged)
    return outcomes
