"""The judge: does a later message ask what an earlier, similar one asked?

Stage two of the duplicate scan (stage one, in `bot.dupes.match`, finds the
earlier messages whose vectors are close). Vectors are close for honest
rewordings, but closer still for look-alikes — the same sentence with another
version, ticket, quarter, city or the opposite verb — because a sentence
embedding barely moves when one word changes. The judge looks at the words:

- numbers that differ on both sides (3.2 vs 3.3, PAY-2231 vs PAY-2298, Q2 vs Q3);
- names that differ on both sides (EU vs US, London vs Lisbon, Jira vs Confluence);
- a near-copy with content words replaced ("…the staging Stripe account" vs "…production…");
- opposite asks (add/remove, enable/disable, can/can't in a near-copy);
- rare words (a name, a product, a place) that each side has and the other lacks;
- the share of content words the two have in common, plain and weighted by rarity
  (a shared "Bitwarden" says more than a shared "help");
- whether both are questions, and their length ratio;
- the candidate's rank among the later message's candidates and how far its
  similarity is below the best one's.

Word rarity comes from the bundled tokenizer's vocabulary (`bot/model/tokenizer.json`):
BERT's WordPiece list is ordered roughly by frequency in English text, and a
word missing from it is rarer than any in it.

Channel and time apart are left out on purpose: in the labelled data they were
placed by the generator, not observed, so a weight fitted on them would learn
how the data was made.

A logistic model over these features, fitted on the training half of
tests/data/dupes.jsonl by scripts/fit_dupe_judge.py, turns them into a
probability; WEIGHTS and CUT below are its output. Pure functions (the
vocabulary is read once).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.embeddings import MODEL_DIR

# --- what scripts/fit_dupe_judge.py fitted (train split only) ------------------------

FEATURES = (
    "similarity", "below_best", "rank", "numbers_differ", "names_differ", "rare_words_differ", "near_copy_edited",
    "opposite", "shared_words", "shared_rare_words", "not_both_questions", "length_ratio",
)
WEIGHTS = (9.480, -4.008, -1.272, -3.439, -1.221, 0.643, -2.945, -2.395, 1.419, -2.648, -0.452, 0.165)
BIAS = -5.132
# the probability at or above which the judge says "same question": cross-validated on train, the best F0.5
# (precision 0.97 was not reached at any useful recall; see scripts/fit_dupe_judge.py)
CUT = 0.755

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
# dates said in words name a day the way a number does, in any case ("friday" vs "Thursday")
DATE_WORDS = _word_set(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december jan feb mar apr jun jul aug sep sept oct nov dec today
    tomorrow yesterday"""
)


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
        product = any(c.isdigit() for c in token) and sum(c.isalpha() for c in token) >= 3  # 1Password, SOC2
        named = sum(c.isupper() for c in token) > 1 or capitalised or product or token.lower() in DATE_WORDS
        found.append(Word(token, token.lower(), stem(token.lower()), named))
    return tuple(found)


def content(tokens: Sequence[Word]) -> set[str]:
    return {t.stem for t in tokens if t.content}


_VOCABULARY = MODEL_DIR / "tokenizer.json"
_FIRST_WORD = 1996  # BERT's ids below this are padding, unused slots, single characters and punctuation


@functools.cache
def _word_ranks() -> dict[str, int]:
    """Each whole word of the bundled vocabulary and its rank (1 = 'the')."""
    vocabulary = json.loads(_VOCABULARY.read_text(encoding="utf-8"))["model"]["vocab"]
    return {w: i - _FIRST_WORD + 1 for w, i in vocabulary.items() if i >= _FIRST_WORD and not w.startswith("##")}


@functools.lru_cache(maxsize=65536)
def rarity(word: str) -> float:
    """0 for 'the', 1 for a word the vocabulary lacks (bitwarden, gdpr): the log of its frequency rank."""
    ranks = _word_ranks()
    return math.log(ranks.get(word, len(ranks) + 1)) / math.log(len(ranks) + 1)


def _rarities(tokens: Sequence[Word]) -> dict[str, float]:
    """The rarity of each content stem (as written or as its stem, whichever the vocabulary knows better)."""
    return {t.stem: min(rarity(t.lower), rarity(t.stem)) for t in tokens if t.content}


def numbers(text: str) -> set[str]:
    """The numbers a message names, as written digits: 'v3.2' -> 3.2, 'PAY-2231' -> 2231, 'Q3' -> 3."""
    return {n.lstrip("0") or "0" for n in _NUMBER.findall(text)}


@functools.lru_cache(maxsize=65536)  # a scan compares the same few thousand words again and again
def _alike(a: str, b: str) -> bool:
    """Same word give or take an ending or, in a long word of letters, one typo ('config'/'configs', 'enviroment')."""
    if a == b:
        return True
    if min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)):
        return True
    return min(len(a), len(b)) >= 5 and a.isalpha() and b.isalpha() and _one_edit(a, b)  # 1password: not a typo


def _one_edit(a: str, b: str) -> bool:
    """True when one letter inserted, deleted or replaced turns `a` into `b`."""
    if abs(len(a) - len(b)) > 1:
        return False
    short, long = sorted((a, b), key=len)
    i = next((i for i, (x, y) in enumerate(zip(short, long)) if x != y), len(short))
    return short[i + (len(short) == len(long)):] == long[i + 1:]


def _unmatched(left: set[str], right: set[str]) -> set[str]:
    """The stems of `left` with no look-alike in `right` (a look-alike starts with the same letter)."""
    by_initial: dict[str, list[str]] = {}
    for b in right:
        by_initial.setdefault(b[0], []).append(b)
    return {a for a in left - right if not any(_alike(a, b) for b in by_initial.get(a[0], ()))}


@functools.lru_cache(maxsize=65536)
def _root(word_stem: str) -> str:
    """A stem without its final e or doubled consonant, so 'enable' and 'enabled' ('enabl'), 'stop' and
    'stopped' ('stopp') meet."""
    if len(word_stem) >= 4 and word_stem[-1] == word_stem[-2] and word_stem[-1] not in "ls":
        return word_stem[:-1]
    return word_stem.removesuffix("e") if len(word_stem) >= 4 else word_stem


_OPPOSITE_ROOTS = frozenset(
    (_root(stem(x)), _root(stem(y))) for pair in OPPOSITES for x, y in (sorted(pair), sorted(pair)[::-1])
)


@functools.lru_cache(maxsize=65536)
def _opposite(a: str, b: str) -> bool:
    """Stems that ask opposite things: a listed pair, or one is the other undone (install/uninstall)."""
    a, b = _root(a), _root(b)
    return (a, b) in _OPPOSITE_ROOTS or any(b == prefix + a or a == prefix + b for prefix in _PREFIXES)


def is_question(tokens: Sequence[Word], text: str) -> bool:
    return "?" in text or bool(tokens) and tokens[0].lower in _ASKING


_ASKING = _word_set(
    "how what what's whats who where when why which is are can could do does did should will would has have "
    "any anyone anybody"
)
NEAR_COPY = 0.5  # share of words two messages have in order: above it one is the other edited
RANKS = 4  # a candidate's rank counts up to this (DUP_CANDIDATES 5: ranks 0-4)


@dataclass(frozen=True)
class Evidence:
    """What the judge saw in a pair of messages: its features and why, in words."""

    values: tuple[float, ...]
    reasons: tuple[str, ...]
    about: str  # the words both share, as the later message writes them


def evidence(later: str, earlier: str, similarity: float, rank: int = 0, best: float | None = None) -> Evidence:
    """The features of FEATURES for one pair (normalised message texts), with reasons a person can read.

    `rank` is the earlier message's place among the later one's candidates (0:
    the most similar) and `best` that candidate's similarity; the defaults say
    "the only candidate".
    """
    a, b = words(later), words(earlier)
    ca, cb = content(a), content(b)
    ua, ub = _unmatched(ca, cb), _unmatched(cb, ca)
    reasons: list[str] = []
    numbers_differ = _numbers_differ(numbers(later), numbers(earlier), reasons)
    copy = difflib.SequenceMatcher(None, [t.stem for t in a], [t.stem for t in b], autojunk=False)
    near = copy.quick_ratio() >= NEAR_COPY and copy.ratio() >= NEAR_COPY  # the quick bound spares most pairs
    names = _only_in(a, ua, named=True), _only_in(b, ub, named=True)
    if all(names):
        reasons.append(f"different names: {names[0]} vs {names[1]}")
    rare_a, rare_b = _rarities(a), _rarities(b)
    rare_differ = min(max((rare_a[x] for x in ua), default=0.0), max((rare_b[x] for x in ub), default=0.0))
    edits = _edits(a, b, ua, ub, copy) if near else []
    if edits:
        reasons.append("the same message but for: " + ", ".join(f"{x or '–'} vs {y or '–'}" for x, y in edits))
    opposite = _opposite_asks(a, b, ua, ub, near, reasons)
    shared = ca - ua
    overlap = len(shared) / max(1, min(len(ca), len(cb)))
    weight_a, weight_b = sum(rare_a.values()), sum(rare_b.values())
    rare_overlap = sum(rare_a[x] for x in shared) / max(1e-9, min(weight_a, weight_b)) if shared else 0.0
    about = " ".join(dict.fromkeys(t.text for t in a if t.content and t.stem in shared))
    if shared:
        reasons.append(f"shared words: {about}")
    both = is_question(a, later) and is_question(b, earlier)
    if not both:
        reasons.append("not both questions")
    length_ratio = min(len(ca), len(cb)) / max(1, len(ca), len(cb))
    gap = max(0.0, (similarity if best is None else best) - similarity)
    values = (similarity, gap, min(rank, RANKS) / RANKS, float(numbers_differ), float(all(names)), rare_differ,
              float(bool(edits)), float(opposite), overlap, min(1.0, rare_overlap), float(not both),
              length_ratio)
    return Evidence(values, tuple(reasons), about)


def _numbers_differ(na: set[str], nb: set[str], reasons: list[str]) -> bool:
    """Each side names a number the other does not (a detail added on one side is not another question)."""
    differ = bool(na - nb) and bool(nb - na)
    if differ:
        reasons.append(f"different numbers: {', '.join(sorted(na - nb))} vs {', '.join(sorted(nb - na))}")
    return differ


def _opposite_asks(a: Sequence[Word], b: Sequence[Word], ua: set[str], ub: set[str], near: bool,
                   reasons: list[str]) -> bool:
    """One asks the opposite of the other (add/remove), or a near-copy negates what the other asks."""
    opposites = [(x, y) for x in sorted(ua) for y in sorted(ub) if _opposite(x, y)]
    negated = (NEGATIONS & {t.lower for t in a}) ^ (NEGATIONS & {t.lower for t in b}) if near else set()
    if opposites:
        reasons.append("opposite asks: " + ", ".join(f"{x} vs {y}" for x, y in opposites))
    elif negated:
        reasons.append(f"one negates the other: {', '.join(sorted(negated))}")
    return bool(opposites or negated)


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


def judge(later: str, earlier: str, similarity: float, rank: int = 0, best: float | None = None) -> Verdict:
    """Does `later` ask what `earlier` asked? Both are normalised message texts (`normalize_text`).

    `rank` and `best`: the earlier message's place among the later one's
    candidates and the best candidate's similarity (see `evidence`). Below
    FLOOR no evidence could make the pair the same question, so the words are
    not read.
    """
    if similarity < FLOOR:
        return Verdict(False, probability((similarity, *[0.0] * (len(FEATURES) - 1))),
                       (f"similarity {similarity:.2f} is under {FLOOR:.2f}, the least the judge accepts",))
    seen = evidence(later, earlier, similarity, rank, best)
    p = probability(seen.values)
    return Verdict(p >= CUT, p, seen.reasons, seen.about)
