"""The judge's features on their own: pure functions, no model, no database."""

from __future__ import annotations

import pytest

from bot.dupes.judge import CUT, FEATURES, FLOOR, _one_edit, evidence, judge, numbers, probability, words


def features(later: str, earlier: str, similarity: float = 0.9) -> dict[str, float]:
    return dict(zip(FEATURES, evidence(later, earlier, similarity).values))


def test_numbers_are_read_from_versions_ids_and_quarters() -> None:
    assert numbers("is v3.2 cut? PAY-2231 and Q3, ticket #007") == {"3.2", "2231", "3", "7"}


@pytest.mark.parametrize(
    ("later", "earlier", "differ"),
    [
        ("Is the v3.3 branch cut yet?", "Is the v3.2 branch cut yet?", True),
        ("code freeze for the Q4 release?", "code freeze for the Q3 release?", True),
        # one side names a number the other leaves out: a detail, not another question
        ("P1 enterprise tickets: first response SLA is 1h or 4h?", "SLA for Priority 1 enterprise tickets?", False),
        ("my 256 gig macbook is full", "My laptop disk is full (256GB), can IT swap it for a 512GB one?", False),
    ],
)
def test_numbers_differ_only_when_each_side_has_its_own(later: str, earlier: str, differ: bool) -> None:
    assert features(later, earlier)["numbers_differ"] == float(differ)


def test_names_are_acronyms_mixed_case_or_capitalised_mid_sentence() -> None:
    named = {w.text for w in words("Does our SOC 2 report cover the US region? I use iOS in London. Thanks") if w.named}
    assert named == {"SOC", "US", "iOS", "London"}  # not "Does", "I", "Thanks" (they open a sentence)


def test_different_names_and_replaced_words_are_seen() -> None:
    seen = evidence("Does our SOC 2 report cover the US data center?",
                    "Does our SOC 2 report cover the EU data center?", 0.9)
    assert dict(zip(FEATURES, seen.values))["names_differ"] == 1.0
    assert dict(zip(FEATURES, seen.values))["near_copy_edited"] == 1.0
    assert "different names: US vs EU" in seen.reasons


def test_a_longer_repost_is_not_an_edit() -> None:
    """Adding a detail to the same words keeps the question; only replaced words count."""
    longer = "How do I reset my VPN password? It expired over the weekend and the portal says invalid token."
    assert features("How do I reset my VPN password? It expired over the weekend.", longer)["near_copy_edited"] == 0.0


@pytest.mark.parametrize(
    ("later", "earlier"),
    [
        ("How do I disable SSO for the staging workspace?", "How do I enable SSO for the staging workspace?"),
        ("How do I uninstall Acrobat Pro?", "How do I install Acrobat Pro?"),
        ("Can we decrease the API rate limit for Globex?", "Can we increase the API rate limit for Globex?"),
        ("Why can't I push to main?", "Why can I push to main?"),
    ],
)
def test_opposite_asks(later: str, earlier: str) -> None:
    assert features(later, earlier)["opposite"] == 1.0


def test_typos_and_endings_still_match() -> None:
    assert _one_edit("enviroment", "environment") and _one_edit("abcde", "abxde") and not _one_edit("abcde", "edcba")
    seen = features("which enviroment variables does billing need?", "What environment variable does billing need?")
    assert seen["shared_words"] == 1.0


def test_the_verdict_says_why() -> None:
    rejected = judge("Is the v3.3 release branch cut yet?", "Is the v3.2 release branch cut yet?", 0.95)
    assert not rejected.same and rejected.reasons[0] == "different numbers: 3.3 vs 3.2"
    accepted = judge("vpn client keeps disconnecting on windows, any fix?",
                     "Why does the VPN client on Windows drop every few minutes?", 0.81)
    assert accepted.same and accepted.about == "vpn client windows"
    assert accepted.as_dict() == {"same": True, "probability": round(accepted.probability, 4),
                                  "reasons": ["shared words: vpn client windows"], "about": "vpn client windows"}


def test_the_cut_sits_between_a_clear_repeat_and_a_clear_look_alike() -> None:
    clear_repeat = (0.9, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0)
    clear_look_alike = (0.95, 1.0, 1.0, 1.0, 0.0, 0.9, 0.0)
    assert probability(clear_repeat) >= CUT > probability(clear_look_alike)


def test_under_the_floor_nothing_is_read_and_nothing_accepted() -> None:
    assert probability((FLOOR, *[0.0] * (len(FEATURES) - 1))) == pytest.approx(CUT)
    text = "How do I reset my VPN password?"
    below = judge(text, text, FLOOR - 0.01)  # the same words would otherwise count for it
    assert not below.same and below.reasons[0].startswith(f"similarity {FLOOR - 0.01:.2f} is under")
    assert judge(text, text, 0.95).same
