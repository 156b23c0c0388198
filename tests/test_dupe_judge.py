"""The judge's features on their own, and its error listing: pure functions, no model, no database."""

from __future__ import annotations

import pytest

from bot.dupes.evaluate import Candidate, Case, Stream, mistakes, threshold_only, with_values
from bot.dupes.judge import (
    CUT,
    FEATURES,
    FLOOR,
    WEIGHTS,
    Evidence,
    _one_edit,
    evidence,
    judge,
    numbers,
    probability,
    rarity,
    words,
)


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


def test_products_with_digits_and_days_in_any_case_are_names() -> None:
    named = {w.text for w in words("Forgot my 1password master pw, booked a desk for friday. Q3 or v2?") if w.named}
    assert named == {"1password", "friday"}  # Q3 and v2 are numbers (numbers_differ), not names


def test_rarity_follows_the_vocabulary_frequency_order() -> None:
    assert rarity("the") == 0.0 and rarity("bitwarden") == 1.0  # first word; not in the vocabulary
    assert 0.0 < rarity("password") < rarity("bitwarden")
    assert rarity("london") < rarity("lisbon")


def test_rare_words_count_more_than_common_ones() -> None:
    """Two pairs share half their words; the one sharing the rare word shares more of what matters."""
    rare = features("Bitwarden vault sync broken", "Bitwarden vault login slow")
    common = features("office laptop sync broken", "office laptop login slow")
    assert rare["shared_words"] == common["shared_words"] == 0.5
    assert rare["shared_rare_words"] > common["shared_rare_words"]


def test_rare_words_on_both_sides_are_seen() -> None:
    seen = features("I forgot my 1Password master password, who can recover my account?",
                    "I forgot my Bitwarden master password, who can recover my account?")
    assert seen["rare_words_differ"] == 1.0
    assert features("who can recover my password?", "who can recover my account password?")["rare_words_differ"] == 0


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
        ("Can we disable localized pricing for Japan?", "Is localized pricing enabled for Japan?"),  # other endings
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


def test_rank_and_distance_below_the_best_candidate() -> None:
    later, earlier = "vpn keeps dropping on windows, any fix?", "Why does the VPN client on Windows drop?"
    assert (features(later, earlier)["rank"], features(later, earlier)["below_best"]) == (0.0, 0.0)  # the defaults
    third = dict(zip(FEATURES, evidence(later, earlier, 0.80, rank=2, best=0.90).values))
    assert third["rank"] == 0.5 and third["below_best"] == pytest.approx(0.10)
    assert judge(later, earlier, 0.80, rank=2, best=0.90).probability < judge(later, earlier, 0.80).probability


def values(**given: float) -> tuple[float, ...]:
    return tuple(given.get(name, 0.0) for name in FEATURES)


def test_the_cut_sits_between_a_clear_repeat_and_a_clear_look_alike() -> None:
    clear_repeat = values(similarity=0.9, shared_words=0.8, shared_rare_words=0.5, length_ratio=0.8)
    clear_look_alike = values(similarity=0.95, numbers_differ=1.0, names_differ=1.0, near_copy_edited=1.0,
                              shared_words=0.9, shared_rare_words=0.9, length_ratio=1.0)
    assert probability(clear_repeat) >= CUT > probability(clear_look_alike)


def test_under_the_floor_nothing_is_read_and_nothing_accepted() -> None:
    most_helpful = [1.0 if weight > 0 else 0.0 for weight in WEIGHTS[1:]]  # every other feature lies in 0..1
    assert probability((FLOOR, *most_helpful)) == pytest.approx(CUT)
    text = "How do I reset my VPN password?"
    below = judge(text, text, FLOOR - 0.01)  # the same words would otherwise count for it
    assert not below.same and below.reasons[0].startswith(f"similarity {FLOOR - 0.01:.2f} is under")
    assert judge(text, text, 0.95).same


def test_mistakes_are_false_flags_and_repeats_missed_among_the_candidates() -> None:
    """What `fit_dupe_judge.py --errors` prints: the judge's wrong calls, not stage one's misses."""
    def row(id_: str, group: str) -> dict:
        return {"id": id_, "group": group, "split": "train", "text": id_}

    def candidate(id_: str, group: str, similarity: float) -> Candidate:
        return Candidate(row(id_, group), similarity, Evidence((similarity,), (), ""))

    right = Case(row("right", "a"), [candidate("a0", "a", 0.9)])
    wrong = Case(row("wrong", "b"), [candidate("c0", "c", 0.9), candidate("b0", "b", 0.7)])
    missed = Case(row("missed", "d"), [candidate("e0", "e", 0.6), candidate("d0", "d", 0.5)])
    unreached = Case(row("unreached", "f"), [candidate("g0", "g", 0.5)])  # stage one never found its repeat
    stream = Stream([right, wrong, missed, unreached], [right.row, wrong.row, missed.row, unreached.row])
    found = mistakes(stream, threshold_only(0.8), lambda r: True)
    assert [(m.kind, m.case.row["id"], m.candidate.row["id"]) for m in found] == [
        ("false flag", "wrong", "c0"), ("missed", "missed", "d0")]
    assert mistakes(stream, threshold_only(0.8), lambda r: r["id"] == "right") == []


def test_with_values_appends_a_feature_to_every_candidate_and_keeps_the_stream() -> None:
    """What fit_dupe_judge.py --pair-scores uses to add the pair model's probability as one more feature."""
    def case(id_: str, *similarities: float) -> Case:
        row = {"id": id_, "group": id_, "split": "train", "text": id_}
        return Case(row, [Candidate({**row, "id": f"{id_}{i}"}, s, Evidence((s,), (), "")) for i, s in
                          enumerate(similarities)])

    stream = Stream([case("a", 0.9, 0.7), case("b", 0.6)], [])
    more = with_values(stream, lambda c, candidate: (float(len(c.row["id"] + candidate.row["id"])),
                                                      candidate.similarity * 2))
    assert [[cand.evidence.values for cand in c.candidates] for c in more.cases] == [
        [(0.9, 3.0, 1.8), (0.7, 3.0, 1.4)], [(0.6, 3.0, 1.2)]]
    assert stream.cases[0].candidates[0].evidence.values == (0.9,)  # the original is left as it was
