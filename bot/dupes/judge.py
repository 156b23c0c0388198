"""The judge: does a later message ask what an earlier, similar one asked?

Stage two of the duplicate scan (stage one, in `bot.dupes.flag`, finds the
earlier messages whose vectors are close). Vectors are close for honest
rewordings, but closer still for look-alikes — the same sentence with another
version, ticket, quarter, city or the opposite verb — because a sentence
embedding barely moves when one word changes. The judge looks at the words:

- numbers that differ on both sides (3.2 vs 3.3, PAY-2231 vs PAY-2298, Q2 vs Q3);
- names that differ on both sides (EU vs US, London vs Lisbon, Jira vs Confluence);
- a near-copy with content words replaced ("…the staging Stripe account" vs "…production…");
- opposite asks (add/remove, enable/disable, can/can't in a near-copy);
- the share of content words the two have in common, and whether both are questions.

Channel and time apart are left out on purpose: in the labelled data they were
placed by the generator, not observed, so a weight fitted on them would learn
how the data was made.

A logistic model over these features, fitted on the training half of
tests/data/dupes.jsonl by scripts/fit_dupe_judge.py, turns them into a
probability; WEIGHTS and CUT below are its output. Pure functions, no I/O.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# --- what scripts/fit_dupe_judge.py fitted (train split only) ------------------------

FEATURES = (
    "similarity", "numbers_differ", "names_differ", "near_copy_edited", "opposite", "shared_words",
    "not_both_questions",
)
WEIGHTS = (11.355, -3.768, -0.820, -2.791, -1.260, -1.169, -0.261)
BIAS = -7.259
CUT = 0.49  # the probability at or above which the judge says "same question" (best F0.5 on train)

# --- words ---------------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+(?:['.\-][^\W_]+)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS = _word_set(
    """a about above after again all also am an and any anyone anything are as at be been before being
    but by can could did do does doing done for from get gets getting got had has have having hey hi how
    i i'm if in into is it it's its just know let like me my need needs of on one or our out over please
    pls q quick re should so some someone something still that the their them then there these they this
    to too up us via want was way we we're were what what's whats when where which who why will with would
    yet you your"""
)
NEGATIONS = _word_set(
    "not no never can't cant cannot don't dont won't wont isn't isnt doesn't doesnt didn't didnt aren't "
    "without stop"
)
# words that ask the opposite of each other (either order)
OPPOSITES = {
    frozenset(pair.split("/")) for pair in _word_set(
    """add/remove grant/revoke enable/disable increase/decrease raise/lower install/uninstall start/stop
    start/end open/close lock/unlock join/leave allow/block allow/deny read/write upload/download
    import/export win/lose won/lost merge/split connect/disconnect subscribe/unsubscribe include/exclude
    upgrade/downgrade create/delete on/off first/last buy/sell accept/reject approve/reject show/hide
    push/pull send/receive"""
)}
_PREFIXES = ("un", "dis", "re", "de")  # delete/undelete, install/uninstall, open/reopen


def stem(word: str) -> str:
    """A crude English stem, enough to match 'refunds'/'refunded'/'refund'."""
    word = word.removesuffix("'s")
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


@dataclass(frozen=True)
class Word:
    """A word of a message: as written, lowercased, and whether it names something."""

    text: str
    lower: str
    stem: str
    named: bool  # an acronym (EU, SSO), a mixed-case name (iOS, PAY-2231), or capitalised mid-sentence (London)

    @property
    def content(self) -> bool:
        """A word that says what is asked: not a stopword (unless a name: US, IT), not a bare number."""
        return (self.named or self.lower not in STOPWORDS) and not self.lower.isdigit()


_SENTENCE_END = ".?!:;()[]—-\n\"'"


@functools.lru_cache(maxsize=8192)  # a scan judges each earlier message against several later ones
def words(text: str) -> tuple[Word, ...]:
    """The message's words, each knowing its stem and whether it names something."""
    text = text.replace("’", "'")
    found = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        before = text[max(0, match.start() - 20) : match.start()].rstrip()
        opens_sentence = not before or before[-1] in _SENTENCE_END
        capitalised = token[0].isupper() and token.isalpha() and not opens_sentence and token != "I"
        named = sum(c.isupper() for c in token) > 1 or capitalised
        found.append(Word(token, token.lower(), stem(token.lower()), named))
    return tuple(found)


def content(tokens: Sequence[Word]) -> set[str]:
    return {t.stem for t in tokens if t.content}


def numbers(text: str) -> set[str]:
    """The numbers a message names, as written digits: 'v3.2' -> 3.2, 'PAY-2231' -> 2231, 'Q3' -> 3."""
    return {n.lstrip("0") or "0" for n in _NUMBER.findall(text)}


def _alike(a: str, b: str) -> bool:
    """Same word give or take an ending or, in a long word, one typo ('config'/'configs', 'enviroment')."""
    if a == b:
        return True
    if min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)):
        return True
    return min(len(a), len(b)) >= 5 and _one_edit(a, b)


def _one_edit(a: str, b: str) -> bool:
    """True when one letter inserted, deleted or replaced turns `a` into `b`."""
    if abs(len(a) - len(b)) > 1:
        return False
    short, long = sorted((a, b), key=len)
    i = next((i for i, (x, y) in enumerate(zip(short, long)) if x != y), len(short))
    return short[i + (len(short) == len(long)):] == long[i + 1:]


def _unmatched(left: set[str], right: set[str]) -> set[str]:
    """The stems of `left` with no look-alike in `right`."""
    return {a for a in left - right if not any(_alike(a, b) for b in right)}


_OPPOSITE_STEMS = frozenset((stem(x), stem(y)) for pair in OPPOSITES for x, y in (sorted(pair), sorted(pair)[::-1]))


def _opposite(a: str, b: str) -> bool:
    """Stems that ask opposite things: a listed pair, or one is the other undone (install/uninstall)."""
    return (a, b) in _OPPOSITE_STEMS or any(b == prefix + a or a == prefix + b for prefix in _PREFIXES)


def is_question(tokens: Sequence[Word], text: str) -> bool:
    return "?" in text or bool(tokens) and tokens[0].lower in _ASKING


_ASKING = _word_set(
    "how what what's whats who where when why which is are can could do does did should will would has have "
    "any anyone anybody"
)
NEAR_COPY = 0.5  # share of words two messages have in order: above it one is the other edited


@dataclass(frozen=True)
class Evidence:
    """What the judge saw in a pair of messages: its features and why, in words."""

    values: tuple[float, ...]
    reasons: tuple[str, ...]
    about: str  # the words both share, as the later message writes them


def evidence(later: str, earlier: str, similarity: float) -> Evidence:
    """The features of FEATURES for one pair (normalised message texts), with reasons a person can read."""
    a, b = words(later), words(earlier)
    ca, cb = content(a), content(b)
    reasons = []
    na, nb = numbers(later), numbers(earlier)
    numbers_differ = bool(na - nb) and bool(nb - na)
    if numbers_differ:
        reasons.append(f"different numbers: {', '.join(sorted(na - nb))} vs {', '.join(sorted(nb - na))}")
    ua, ub = _unmatched(ca, cb), _unmatched(cb, ca)
    copy = difflib.SequenceMatcher(None, [t.stem for t in a], [t.stem for t in b], autojunk=False)
    near = copy.quick_ratio() >= NEAR_COPY and copy.ratio() >= NEAR_COPY  # the quick bound spares most pairs
    names = _only_in(a, ua, named=True), _only_in(b, ub, named=True)
    if all(names):
        reasons.append(f"different names: {names[0]} vs {names[1]}")
    edits = _edits(a, b, ua, ub, copy) if near else []
    if edits:
        reasons.append("the same message but for: " + ", ".join(f"{x or '–'} vs {y or '–'}" for x, y in edits))
    opposites = [(x, y) for x in sorted(ua) for y in sorted(ub) if _opposite(x, y)]
    negated = (NEGATIONS & {t.lower for t in a}) ^ (NEGATIONS & {t.lower for t in b}) if near else set()
    if opposites:
        reasons.append("opposite asks: " + ", ".join(f"{x} vs {y}" for x, y in opposites))
    elif negated:
        reasons.append(f"one negates the other: {', '.join(sorted(negated))}")
    shared = ca - ua
    overlap = len(shared) / max(1, min(len(ca), len(cb)))
    about = " ".join(dict.fromkeys(t.text for t in a if t.content and t.stem in shared))
    if shared:
        reasons.append(f"shared words: {about}")
    both = is_question(a, later) and is_question(b, earlier)
    if not both:
        reasons.append("not both questions")
    values = (similarity, float(numbers_differ), float(all(names)), float(bool(edits)),
              float(bool(opposites or negated)), overlap, float(not both))
    return Evidence(values, tuple(reasons), about)


def _only_in(tokens: Sequence[Word], unmatched: set[str], named: bool = False) -> str:
    """The content words (or only the names) of `tokens` whose stems are in `unmatched`, as written."""
    return " ".join(dict.fromkeys(t.text for t in tokens if t.content and t.stem in unmatched and t.named >= named))


def _edits(a: Sequence[Word], b: Sequence[Word], ua: set[str], ub: set[str], copy: difflib.SequenceMatcher
           ) -> list[tuple[str, str]]:
    """In a near-copy, content words one message has where the other has other content words.

    Only replacements: a message that repeats another and adds a detail (or
    leaves one out) is usually the same question asked longer or shorter.
    """
    edits = []
    for op, i1, i2, j1, j2 in copy.get_opcodes():
        if op == "replace" and all(pair := (_only_in(a[i1:i2], ua), _only_in(b[j1:j2], ub))):
            edits.append(pair)
    return edits


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one pair: same question or not, how sure, and why."""

    same: bool
    probability: float
    reasons: tuple[str, ...] = field(default=())
    about: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"same": self.same, "probability": round(self.probability, 4), "reasons": list(self.reasons),
                "about": self.about}


def probability(values: Sequence[float], weights: Sequence[float] = WEIGHTS, bias: float = BIAS) -> float:
    """The logistic model: how likely a pair with these feature values asks the same question."""
    z = bias + sum(w * x for w, x in zip(weights, values))
    return 1.0 / (1.0 + math.exp(-z))


def floor(weights: Sequence[float] = WEIGHTS, bias: float = BIAS, cut: float = CUT) -> float:
    """The lowest similarity the model can ever accept: every other feature (0..1) at its most helpful value."""
    best_rest = sum(max(0.0, w) for w in weights[1:])
    return (math.log(cut / (1 - cut)) - bias - best_rest) / weights[0]


FLOOR = floor()


def judge(later: str, earlier: str, similarity: float) -> Verdict:
    """Does `later` ask what `earlier` asked? Both are normalised message texts (`normalize_text`).

    Below FLOOR no evidence could make the pair the same question, so the words are not read.
    """
    if similarity < FLOOR:
        return Verdict(False, probability((similarity, *[0.0] * (len(FEATURES) - 1))),
                       (f"similarity {similarity:.2f} is under {FLOOR:.2f}, the least the judge accepts",))
    seen = evidence(later, earlier, similarity)
    p = probability(seen.values)
    return Verdict(p >= CUT, p, seen.reasons, seen.about)
