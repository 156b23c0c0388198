"""The lead sentences shown for a source: the ones holding the question's words."""

from __future__ import annotations

from bot.excerpt import LEAD_CHARS, lead, sentences

POLICY = (
    "Expenses are reimbursed monthly. Submit receipts in Expensify within 30 days.\n"
    "Taxis and ride-shares are reimbursed when public transport is not practical, for example late at "
    "night or with heavy luggage. Keep the receipt. Meals while travelling are covered up to 60 EUR per day. "
    "Alcohol is not reimbursed. Questions go to finance@example.com, who answer within two working days "
    "and can approve exceptions for long trips."
)


def test_the_sentence_with_the_questions_words_leads_with_its_neighbour() -> None:
    shown = lead(POLICY, "how do I get reimbursed for a taxi")

    assert shown.startswith("… Taxis and ride-shares are reimbursed")
    assert "Keep the receipt." in shown and shown.endswith(" …")
    assert len(shown) <= LEAD_CHARS + 4


def test_a_later_sentence_wins_when_it_holds_more_of_the_question() -> None:
    assert lead(POLICY, "food allowance per day travelling").startswith("… Meals while travelling")


def test_a_short_passage_is_shown_whole_and_one_long_sentence_is_cut_at_a_word() -> None:
    assert lead("Badges are at reception.\nAsk Sam.", "badge") == "Badges are at reception. Ask Sam."
    long_sentence = "word " * 200
    shown = lead(long_sentence, "word", limit=50)
    assert shown.endswith(" …") and len(shown) <= 52 and not shown.startswith("…")


def test_sentences_split_at_ends_and_line_breaks_but_not_inside_numbers() -> None:
    assert sentences("Version 3.2 is out. Upgrade now!\n\nThanks") == ["Version 3.2 is out.", "Upgrade now!", "Thanks"]
    assert lead("", "anything") == ""


def test_a_numbered_step_keeps_its_number() -> None:
    steps = "How to file a ride:\n\n1. Open Expensify.\n2. Set the category to Taxi. 3. Submit it."
    assert sentences(steps) == ["How to file a ride:", "1. Open Expensify.", "2. Set the category to Taxi.", "3. Submit it."]
