"""Answers as Slack messages: pure functions, checked against Slack's limits and mrkdwn rules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.search import Excerpt, Hit, SearchResult
from bot.slack.format import (
    BLOCK_LIMIT,
    BUTTON_VALUE_LIMIT,
    SECTION_LIMIT,
    answer_message,
    fit,
    from_slack,
    hit_block,
    reindex_done_message,
    strip_mention,
    to_mrkdwn,
    usage_message,
)
from tests.slack_fake import iter_blocks_text


def hit(text: str = "Submit the receipt in Expensify.", *, score: float = 0.82, confident: bool = True,
        path: str = "hr/expenses.md", heading: str | None = "Expenses > Taxis", title: str | None = "Expenses",
        relevance: int = 82, lead: str = "", more: tuple[Excerpt, ...] = ()) -> Hit:
    return Hit(score=score, path=path, heading=heading, text=text, start_line=1, end_line=5,
               confident=confident, title=title, relevance=relevance, lead=lead, more=more)


def result(hits: list[Hit], query: str = "how do I get reimbursed for a taxi", truncated: bool = False) -> SearchResult:
    return SearchResult(query=query, model="m", hits=hits, query_truncated=truncated)


def texts(message: dict[str, Any]) -> list[str]:
    return list(iter_blocks_text(message["blocks"]))


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def balanced(mrkdwn: str) -> bool:
    """No raw < or > outside a whole <link>, and no cut entity."""
    bare = re.sub(r"<(?:https?://|mailto:)[^<>\s|]+(?:\|[^<>]*)?>", "", mrkdwn)
    return "<" not in bare and ">" not in bare and not re.search(r"&(?!amp;|lt;|gt;)", bare)


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* and _this_", "_italic_ and _this_"),
        ("~~gone~~", "~gone~"),
        ("# Title\ntext", "*Title*\ntext"),
        ("### Taxis **and** rides ###", "*Taxis and rides*"),
        ("Setext\n======", "*Setext*"),
        ("[the policy](https://x.test/p?a=1&b=2)", "<https://x.test/p?a=1&amp;b=2|the policy>"),
        ("![diagram](https://x.test/d.png)", "<https://x.test/d.png|diagram>"),
        ("see [laptops](../it/laptops.txt)", "see laptops"),
        ("<https://x.test/auto>", "<https://x.test/auto>"),
        ("- one\n* two\n  + nested\n1. three", "• one\n• two\n  • nested\n1. three"),
        ("a\n\n---\n\nb", "a\n\nb"),
        ("`**not bold** <b>`", "`**not bold** &lt;b&gt;`"),
        ("```python\nx = a ** b < c\n```", "```x = a ** b &lt; c```"),
        ("5 * 3 * 2", "5 * 3 * 2"),
        ("> quoted", "&gt; quoted"),
    ],
)
def test_markdown_becomes_slack_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_passage_text_cannot_mention_link_or_break_out() -> None:
    text = "Tom & Jerry <@U123> <!channel> <script> a<b>c &amp;"

    converted = to_mrkdwn(text)

    assert converted == "Tom &amp; Jerry &lt;@U123&gt; &lt;!channel&gt; &lt;script&gt; a&lt;b&gt;c &amp;amp;"
    assert balanced(converted)


def test_a_passage_fits_one_section_even_when_escaping_multiplies_it() -> None:
    long = hit("&<>" * 4000 + " [x](https://x.test/?a&b)" * 200, path="a/" * 400 + "f.md", heading="H & <h> > " * 100)

    section = hit_block(1, long)["text"]["text"]

    assert len(section) <= SECTION_LIMIT
    assert balanced(section.split("\n", 1)[1])


def test_trimming_never_cuts_a_link_or_an_entity() -> None:
    source = " ".join(f"[link {i}](https://x.test/{i}?a&b) & <tag>" for i in range(200))
    for budget in (50, 333, 1000, 2999):
        trimmed = fit(source, budget)
        assert len(trimmed) <= budget
        assert balanced(trimmed), trimmed[-80:]


def test_each_source_shows_rank_relevance_path_heading_and_excerpt() -> None:
    section = hit_block(2, hit())["text"]["text"]

    assert section.splitlines() == ["*2.* `82`  *hr/expenses.md › Taxis*", "Submit the receipt in Expensify."]


def test_a_source_leads_with_its_matching_sentences_and_names_its_other_passages() -> None:
    long_text = "Intro that says little. " * 40 + "File the taxi receipt in Expensify within 30 days."
    more = (Excerpt(0.5, "Expenses > Meals", "Meals up to 60 EUR.", 40, 52),)
    section = hit_block(1, hit(long_text, lead="… File the taxi receipt in Expensify within 30 days.", more=more))
    lines = section["text"]["text"].splitlines()

    assert lines[1] == "… File the taxi receipt in Expensify within 30 days."
    assert lines[2] == "_Also in this file: lines 40–52_"
    assert "Intro that says little" not in section["text"]["text"]


def test_the_answer_never_exceeds_50_blocks_and_says_what_is_left_out() -> None:
    message = answer_message(result([hit(score=0.9 - i / 100) for i in range(80)]), shareable=True)

    assert len(message["blocks"]) == BLOCK_LIMIT
    assert any("more passages not shown" in t for t in texts(message))
    assert buttons(message)
    assert all(len(t) <= SECTION_LIMIT for t in texts(message))


def test_no_confident_match_says_so_and_still_shows_the_best_guesses() -> None:
    message = answer_message(result([hit(score=0.21, confident=False), hit(score=0.2, confident=False)]))

    shown = texts(message)
    assert "Not sure" in shown[1] and "best guesses" in shown[1]
    assert sum("(guess)" in t for t in shown[2:]) == 2


def test_nothing_found_is_said_plainly() -> None:
    message = answer_message(result([]), shareable=True)

    assert "found nothing" in "\n".join(texts(message))
    assert not buttons(message)


def test_private_answers_carry_a_share_button_and_public_ones_name_the_asker() -> None:
    private = answer_message(result([hit()]), shareable=True)
    public = answer_message(result([hit()]), asker="U123")

    assert buttons(private)[0]["value"] == "how do I get reimbursed for a taxi"
    assert texts(private)[0] == "*Question:* how do I get reimbursed for a taxi"
    assert not buttons(public)
    assert texts(public)[0] == "<@U123> asked: how do I get reimbursed for a taxi"
    assert public["text"].startswith("<@U123> asked:")


def test_a_long_question_is_echoed_short_and_not_shareable() -> None:
    question = "why " * 2000
    message = answer_message(result([hit()], query=question, truncated=True), shareable=True)

    assert len(texts(message)[0]) < 400
    assert "first 4,000 characters" in texts(message)[1]
    assert len(question) > BUTTON_VALUE_LIMIT and not buttons(message)
    assert len(message["text"]) <= 150


def test_the_question_is_escaped_when_echoed() -> None:
    message = answer_message(result([hit()], query="is <b> & <@U1> ok?"))

    assert texts(message)[0] == "*Question:* is &lt;b&gt; &amp; &lt;@U1&gt; ok?"


HOSTILE = "<!channel> fill in the <https://evil.example|Expense form> & <@U1> *now*"


@pytest.mark.parametrize("asker", [None, "U123"])
def test_every_rendered_field_escapes_the_question(asker: str | None) -> None:
    message = answer_message(result([hit()], query=HOSTILE), asker=asker, shareable=asker is None)

    for shown in [message["text"], *texts(message)]:
        assert balanced(shown.replace(f"<@{asker}>", "")), shown
    assert "&lt;!channel&gt;" in message["text"] and "<!channel>" not in message["text"]


def test_control_characters_in_a_path_or_heading_are_shown_as_escapes() -> None:
    block = hit_block(1, hit(path="hr/Expenses\n*1.* `0.99` *evil*\u202e.md", heading="Expenses > Taxis\tand\x1b[31m rides"))
    header, excerpt = block["text"]["text"].split("\n", 1)

    assert header.endswith("*hr/Expenses\\n1. `0.99` evil\\u202e.md › Taxis\\tand\\x1b[31m rides*")
    assert excerpt == "Submit the receipt in Expensify."


def test_slack_text_in_becomes_plain_words() -> None:
    text = "<@UBOT> where is <https://x.test|the wiki> for <#C1|general>, <@U2|ann> &amp; me &lt;3 <!here>"

    assert from_slack(strip_mention(text, "UBOT")).split() == [
        "where", "is", "the", "wiki", "for", "#general,", "@ann", "&", "me", "<3"
    ]
    assert strip_mention("<@UBOT|kb-bot> hi", "UBOT").strip() == "hi"


def test_usage_names_the_configured_command() -> None:
    usage = "\n".join(texts(usage_message("/kb", "UBOT")))

    assert "`/kb how do I get reimbursed for a taxi`" in usage
    assert "`/kb reindex`" in usage and "<@UBOT>" in usage


def test_a_long_reindex_summary_fits_one_section_as_a_code_block() -> None:
    summary = "Indexed with m:\n" + "\n".join(f"    skipped big/<file{i}>.pdf: too large & empty" for i in range(500))

    section = texts(reindex_done_message(summary))[0]

    assert len(section) <= SECTION_LIMIT
    assert section.endswith("```") and section.count("```") == 2
    assert "&lt;file0&gt;" in section
