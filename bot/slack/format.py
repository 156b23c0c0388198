"""Slack messages for answers: pure functions, no I/O.

Slack reads its own "mrkdwn", not Markdown, treats &, < and > as control
characters, caps a section's text at 3,000 characters and a message at 50
blocks. Everything here turns search results and status lines into messages
that respect those rules, so the listeners only route.

A `Reply` is a dict of `chat.postMessage` / `respond()` arguments: `text` (the
notification fallback) and `blocks`. (A chat message people posted is a
`bot.store.Message`.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from bot.scopes import scope_note
from bot.search import MAX_QUERY_CHARS, Hit, SearchResult

Reply = dict[str, Any]
Block = dict[str, Any]

SECTION_LIMIT = 3000  # Slack's cap on a section's text
BLOCK_LIMIT = 50  # Slack's cap on blocks per message
BUTTON_VALUE_LIMIT = 2000  # Slack's cap on a button's value
EXCERPT_CHARS = 600  # source characters shown per passage: enough to answer, short enough to scan
QUESTION_CHARS = 300  # how much of the question is echoed back
HEADING_CHARS = 200
PATH_CHARS = 300
URL_CHARS = 2000  # a longer source link (a huge template or path) is left out: the path stays plain
FALLBACK_CHARS = 150  # the notification text

SHARE_ACTION = "share_answer"
HELPFUL_ACTION = "answer_helpful"
NOT_HELPFUL_ACTION = "answer_not_helpful"
VOTE_ACTIONS = {HELPFUL_ACTION: True, NOT_HELPFUL_ACTION: False}  # action id -> helpful

# --- Slack text in ---------------------------------------------------------------

_MENTION_OR_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def strip_mention(text: str, user_id: str | None) -> str:
    """The text without mentions of `user_id` (the bot), as in "<@UBOT> how do I…"."""
    if not user_id:
        return text
    return re.sub(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>", " ", text)


def from_slack(text: str) -> str:
    """Plain text from Slack's encoding: links become their label or URL, entities are decoded.

    Slack escapes &, < and > in what people type and wraps mentions and links
    in <…>; searching needs the words people see.
    """

    def plain(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if label:
            return (target[0] if target[:1] in "@#" and not label.startswith(target[0]) else "") + label
        return "" if target[:1] in "@#!" else target

    text = _MENTION_OR_LINK.sub(plain, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- Markdown to mrkdwn --------------------------------------------------------------


def escape(text: str) -> str:
    """Escape Slack's control characters, so passage text can never form a link or mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_CODE = re.compile(r"(```|~~~)[^\n]*\n?(.*?)(?:\1|\Z)|`[^`\n]+`", re.S)
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?://|mailto:)[^<>\s]+)>")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_SETEXT = re.compile(r"^(?! {0,3}(?:[-*+]|\d+[.)]) )(\S[^\n]*)\n {0,3}(?:=+|-+)[ \t]*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.M)
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_BOLD_MARK = "\x01"  # stands for Slack's bold `*` until Markdown's `*` italics are converted
_SLOT = re.compile("\x00(\\d+)\x00")


def to_mrkdwn(markdown: str) -> str:
    """Markdown as Slack mrkdwn: **bold**→*bold*, [text](url)→<url|text>, headings→bold lines.

    Code spans and blocks are kept verbatim (escaped only). Links to relative
    paths keep just their text, since Slack cannot open them.
    """
    slots: list[str] = []

    def hold(slack_text: str) -> str:
        slots.append(slack_text)
        return f"\x00{len(slots) - 1}\x00"

    def code(match: re.Match[str]) -> str:
        if match.group(1):  # a fenced block: Slack has no language tag
            return hold("```" + escape(match.group(2).rstrip("\n")) + "```")
        return hold(escape(match.group()))

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1).replace("|", "/").strip(), match.group(2)
        if not re.match(r"(?:https?://|mailto:)", url):
            return label  # a relative link: Slack cannot open it
        return hold(f"<{escape(url)}|{escape(label or url)}>")

    text = markdown.replace("\x00", "").replace(_BOLD_MARK, "").replace("\r\n", "\n")
    text = _CODE.sub(code, text)
    text = _IMAGE_OR_LINK.sub(link, text)
    text = _AUTOLINK.sub(lambda m: hold(f"<{escape(m.group(1))}>"), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: _bold(m.group(1)), text)
    text = _SETEXT.sub(lambda m: _bold(m.group(1)), text)
    text = _RULE.sub("", text)
    text = _BULLET.sub(lambda m: m.group(1) + "• ", text)
    text = _BOLD.sub(lambda m: _bold(m.group(1) or m.group(2)), text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _ITALIC.sub(r"_\1_", text)
    text = text.replace(_BOLD_MARK, "*")
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return _SLOT.sub(lambda m: slots[int(m.group(1))], text)


def _bold(text: str) -> str:
    inner = text.replace("*", "").strip()  # Slack cannot nest bold
    return f"{_BOLD_MARK}{inner}{_BOLD_MARK}" if inner else ""


def trim(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary and marked with "…"."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def fit(source: str, budget: int, convert: Callable[[str], str] = to_mrkdwn) -> str:
    """`convert(source)` trimmed (before converting, so no link or entity is cut) to `budget` characters."""
    limit = len(source)
    while True:
        converted = convert(trim(source, limit))
        if len(converted) <= budget:
            return converted
        limit = min(limit - 1, limit * budget // len(converted))
        if limit <= 0:
            return ""


# --- Messages --------------------------------------------------------------------------


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT] or " "}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}]}


def _reply(blocks: Sequence[Block], fallback: str) -> Reply:
    return {"text": trim(fallback, FALLBACK_CHARS), "blocks": list(blocks)}


def text_message(mrkdwn: str) -> Reply:
    """A one-section message; `mrkdwn` is already Slack-formatted."""
    return _reply([_section(mrkdwn)], mrkdwn)


def _in_bold(text: str) -> str:
    return escape(shown(text)).replace("*", "")  # a `*` would end the bold early


def shown(text: str) -> str:
    """`text` with each unprintable character (newline, tab, escape, bidi override…) written as its escape.

    A file name is the document author's choice: a newline in it would break
    the header line, an RTL override would disguise it.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def hit_block(rank: int, hit: Hit) -> Block:
    """One source: rank, relevance, path (a link with KB_SOURCE_URL) and heading, then its lead sentences.

    The relevance (0-100) is what ordered the list, so the numbers read top-down;
    the full passage and its cosine are in `kb-bot ask --json`.
    """
    where = fit(hit.path, PATH_CHARS, _in_bold)
    if hit.url and len(hit.url) <= URL_CHARS:
        where = f"<{escape(hit.url)}|{where}>"
    trail = [part.strip() for part in (hit.heading or hit.title or "").split(" > ") if part.strip()]
    if len(trail) > 1 and hit.title and trail[0].lower() == hit.title.strip().lower():
        trail = trail[1:]  # the document's own title says little next to its path
    if trail:
        where += " › " + fit(" › ".join(trail), HEADING_CHARS, _in_bold)
    flag = "  _(guess)_" if not hit.confident else ""
    header = f"*{rank}.* `{hit.relevance}`  *{where}*{flag}"
    also = ""
    if hit.more:
        spans = ", ".join(f"{m.start_line}–{m.end_line}" for m in hit.more)
        also = f"\n_Also in this file: lines {spans}_"
    excerpt = fit(trim(hit.lead or hit.text.strip(), EXCERPT_CHARS), SECTION_LIMIT - len(header) - len(also) - 1)
    return _section(f"{header}\n{excerpt}{also}" if excerpt else header + also)


def answer_message(
    result: SearchResult, *, asker: str | None = None, shareable: bool = False, question_id: int | None = None
) -> Reply:
    """The answer to a question: the question, then each passage with its score and source.

    `asker` (a user id) makes it a public answer ("<@U123> asked: …");
    `shareable` adds the "Share in channel" button to a private one;
    `question_id` (the question log's id) adds Helpful / Not helpful.
    """
    question = escape(trim(result.query, QUESTION_CHARS))
    lead = f"<@{asker}> asked: {question}" if asker else f"*Question:* {question}"
    top: list[Block] = [_section(lead)]
    notes = []
    if result.query_truncated:
        notes.append(f":scissors: The question is long; I searched with its first {MAX_QUERY_CHARS:,} characters.")
    if not result.hits:
        notes.append("I found nothing in the knowledge folder for this.")
    elif not result.confident:
        notes.append(
            ":grey_question: *Not sure*: the knowledge folder may not answer this. "
            "Below are my best guesses; check them before relying on them."
        )
    if notes:
        top.append(_context("\n".join(notes)))

    bottom: list[Block] = []
    if result.scope:
        bottom.append(_context(escape(scope_note(result.scope))))
    buttons = _answer_buttons(result, shareable, question_id)
    if buttons:
        bottom.append({"type": "actions", "elements": buttons})

    room = BLOCK_LIMIT - len(top) - len(bottom)
    hits = result.hits
    if len(hits) > room:
        room -= 1  # for the note saying how many are left out
        bottom.insert(0, _context(f"{len(hits) - room} more passages not shown."))
        hits = hits[:room]
    passages = [hit_block(rank, hit) for rank, hit in enumerate(hits, start=1)]
    # the notification text is rendered and notifies like the blocks: the question is escaped here too
    opening = f"<@{asker}> asked: " if asker else "Answer to: "
    fallback = opening + fit(result.query, FALLBACK_CHARS - len(opening), escape)
    return _reply([*top, *passages, *bottom], fallback)


def _button(action_id: str, label: str, value: str) -> Block:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": label}, "value": value}


def _answer_buttons(result: SearchResult, shareable: bool, question_id: int | None) -> list[Block]:
    """Share in channel (its value: the question, with the log's id when there is one), Helpful, Not helpful."""
    if not result.hits:
        return []
    buttons = []
    share = result.query if question_id is None else json.dumps({"q": result.query, "id": question_id})
    if shareable and len(share) <= BUTTON_VALUE_LIMIT:
        buttons.append(_button(SHARE_ACTION, "Share in channel", share))
    if question_id is not None:
        buttons += [_button(HELPFUL_ACTION, "Helpful", str(question_id)),
                    _button(NOT_HELPFUL_ACTION, "Not helpful", str(question_id))]
    return buttons


def share_request(value: str) -> tuple[str, int | None]:
    """The question and its log id from a Share button's value (a bare question from older answers)."""
    try:
        data = json.loads(value)
    except ValueError:
        return value, None
    if isinstance(data, dict) and isinstance(data.get("q"), str) and isinstance(data.get("id"), int):
        return data["q"], data["id"]
    return value, None


def vote_message(helpful: bool, kept: bool) -> Reply:
    """The quiet, private confirmation of a Helpful / Not helpful click."""
    if not kept:
        return text_message("This answer is too old to take votes any more. Thanks anyway!")
    said = "helpful" if helpful else "not helpful"
    return text_message(f"Thanks: noted as *{said}*. Click the other button to change your vote.")


def usage_message(command: str, bot_user_id: str | None = None) -> Reply:
    """How to use the bot; shown for an empty question or `help`."""
    me = f"<@{bot_user_id}>" if bot_user_id else "the bot"
    return text_message(
        "*Ask me anything the team's knowledge folder answers.*\n"
        f"• `{command} how do I get reimbursed for a taxi`: only you see the answer; "
        "*Share in channel* posts it for everyone.\n"
        f"• Mention {me} with a question in a channel and I answer in a thread.\n"
        f"• `{command} help`: this message.\n"
        f"Admins: `{command} reindex` re-reads the knowledge folder."
    )


def problem_message(reason: str) -> Reply:
    """A `KbError` explained: its message is written for people."""
    return text_message(f":warning: {escape(reason[:1].upper() + reason[1:])}")


def apology_message(error_id: str) -> Reply:
    """An unexpected failure: a short apology, with an id that finds the details in the log."""
    return text_message(
        f":warning: Sorry, something went wrong on my side. Error id `{escape(error_id)}`: "
        "whoever runs kb-bot can find the details in its log."
    )


def busy_message() -> Reply:
    """Too many questions at once: said at once, rather than answering a minute late."""
    return text_message(":hourglass: I'm busy with other questions right now: please try again in a moment.")


def not_in_channel_message(command: str) -> Reply:
    return text_message(
        "I can't post in this channel because I'm not a member. "
        f"Invite me with `/invite` and share again, or keep using `{command}` privately."
    )


def reindex_refused_message() -> Reply:
    return text_message(
        "Sorry, only kb-bot admins can re-index the knowledge folder. "
        "Ask one of them, or ask me a question instead."
    )


def reindex_started_message() -> Reply:
    return text_message(
        ":arrows_counterclockwise: Re-indexing the knowledge folder (only changed files). "
        "I'll post the summary here when it's done."
    )


def reindex_done_message(summary: str) -> Reply:
    """The indexer's report in a code block, trimmed to one section."""
    head = ":white_check_mark: *Re-index finished.*\n"
    body = fit(summary, SECTION_LIMIT - len(head), lambda s: "```" + escape(s) + "```")
    return _reply([_section(head + body)], "Re-index finished.")
