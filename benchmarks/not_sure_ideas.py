#!/usr/bin/env python3
"""Features tried for the "not sure" model (issue 14): does one catch more unanswerable questions?

    .venv/bin/python benchmarks/not_sure_ideas.py [--cache-dir ~/.cache/kb-bot-quality] [--errors] [--test]

Each idea adds columns to the shipped five features (`bot.ranking.answer_features`,
the sentence feature always computed, as `benchmarks/fit_ranker.py` fits them)
and is scored the way fit_ranker.py scores the shipped model: leave-one-set-out
on the dev sets' train splits (fit on the other sets plus the sample golden set,
threshold keeping that fit's train false flags within the budget: 3 % as
shipped, 5 % and 8 % alongside), then the sample folder's false flags with the
fit on all of train at 3 %. Last, the same count for 30 random columns (one and
two at a time): how far a useless feature moves it.

1. answer type: the question asks for an amount (how many / much / long / often,
   when, what date, %, a rate, limit, match, budget, price, bonus) while the top
   source's best passage, or its three sentences closest to the question, hold
   no number, month, number word or currency sign;
2. soft coverage: the idf-weighted share of the question's words that the top
   source's candidate passages lack but another chunk has (the asked fact is
   elsewhere, not nowhere); whether the question's rarest indexed word is in the
   top source; a BERTScore-style recall of the question's words against the best
   passage's word pieces (the model's last hidden states, unpooled), as an
   idf-weighted mean, as the share of words matched under a cut, and as the
   rarest word's match;
3. agreement: the vector ranking's first file is the keyword ranking's; the top
   source's raw BM25 per unit of the question's summed idf;
4. from the errors (`--errors` prints them with every value): the cosine of the
   question to itself with the words the top source lacks (or the index lacks)
   left out, an occlusion test of whether the missing words carry its meaning;
   the idf share of the question's words in the best sentence; the second-best
   sentence.

`--test` also scores every row once on the test splits (fit on all of train; a
test question is also flagged when no shown source reaches KB_MIN_SCORE, as
search() does): run it only after the rows are chosen on train.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import fit_ranker as fit  # noqa: E402
from benchmarks.common import print_table  # noqa: E402
from benchmarks.quality import DEFAULT_CACHE  # noqa: E402
from bot import ranking  # noqa: E402
from bot.embeddings import LocalEmbedder  # noqa: E402
from bot.excerpt import _keys, sentences  # noqa: E402
from bot.keyword_index import keyword_scores  # noqa: E402
from bot.search import MAX_SENTENCES, active_generation_for  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store import Store  # noqa: E402

BUDGETS = (0.03, 0.05, 0.08)  # train false-flag budgets; the first is the shipped one
_ASKS_AMOUNT = re.compile(
    r"\bhow (many|much|long|often|big|old|far|soon|fast)\b|\bwhen\b|\bwhat (date|day|time)\b|%"
    r"|\b(rate|limit|limits|match|matching|budget|percentage|percent|price|cost|salary|bonus|amount|"
    r"allowance|deadline|quota|per diem|stipend)\b",
    re.IGNORECASE,
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_AMOUNT = re.compile(
    r"\d|[$€£¥]|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|"
    r"hundred|thousand|half|twice|once|daily|weekly|monthly|annually|yearly|quarterly|"
    rf"{_MONTHS}|percent)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+")


@dataclass
class Case:
    """A question with its five shipped features and what each idea reads."""

    question: fit.Question
    base: np.ndarray
    ordered: list[ranking.Source]
    sentences: list[tuple[float, str]]  # the best passage's sentences by cosine to the question, best first
    top_bm25: float  # the question's best raw BM25 in the index
    word_states: np.ndarray  # one normalised vector per question word (last hidden states), words order
    passage_states: np.ndarray  # the best passage's word pieces, normalised
    occluded: np.ndarray  # the question without the words the top source lacks; without those the index lacks


def states(embedder: LocalEmbedder, text: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The model's last hidden state of each word piece of `text` (normalised) and its character span.

    Reads the embedder's ONNX session before its mean pooling (`LocalEmbedder._run`).
    """
    encoding = embedder._truncating.encode(text)
    ids = np.array([encoding.ids], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    hidden = embedder._session.run(None, {k: v for k, v in feeds.items() if k in embedder._input_names})[0][0]
    hidden = hidden / np.linalg.norm(hidden, axis=1, keepdims=True).clip(1e-9)
    inner = [i for i, (s, e) in enumerate(encoding.offsets) if e > s]  # [CLS] and [SEP] have empty spans
    return hidden[inner], [encoding.offsets[i] for i in inner]


def word_vectors(embedder: LocalEmbedder, text: str, words: list[str]) -> np.ndarray:
    """One vector per keyword-search word of `text`: the mean of its pieces' states where it first occurs."""
    hidden, spans = states(embedder, text)
    found: dict[str, np.ndarray] = {}
    for match in _WORD.finditer(text):
        word = match.group().lower()
        inside = [i for i, (s, e) in enumerate(spans) if match.start() <= s < e <= match.end()]
        if word in words and word not in found and inside:
            v = hidden[inside].mean(axis=0)
            found[word] = v / max(float(np.linalg.norm(v)), 1e-9)
    dim = hidden.shape[1]
    return np.stack([found.get(w, np.zeros(dim)) for w in words]) if words else np.zeros((0, dim))


def in_top_source(ordered: list[ranking.Source], words: ranking.QuestionWords) -> np.ndarray:
    """Per question word: does a candidate passage of the top source hold it?"""
    ids = [p.chunk_id for p in ordered[0].passages] if ordered else []
    return np.array([any(ranking._contains(w, i) for i in ids) for w in words.chunk_ids], bool)


def without(text: str, words: list[str], keep: np.ndarray) -> str:
    """`text` with the keyword-search words not kept left out (the whole text if nothing is left)."""
    drop = {w for w, k in zip(words, keep) if not k}
    return " ".join(_WORD.sub(lambda m: "" if m.group().lower() in drop else m.group(), text).split()) or text


def cases_of(sets: Iterator[tuple[str, Store, fit.Asked]], embedder: LocalEmbedder) -> list[Case]:
    out = []
    for group, store, asked in sets:
        gen = active_generation_for(store, embedder)
        for q in fit.collect(store, embedder, group, asked):
            ordered = ranking.order_hybrid(ranking.group_sources(q.passages), 5)
            best = ordered[0].best if ordered else None
            texts = [s for s in sentences(best.row.text) if len(s.split()) >= 3][:MAX_SENTENCES] if best else []
            cosines = embedder.embed(texts, truncate=True) @ q.vector if texts else np.zeros(0)
            ranked = sorted(zip(cosines.tolist(), texts), reverse=True)
            sentence = ranked[0][0] if ranked else (best.cosine if best else 0.0)  # as search.sentence_cosine
            top = keyword_scores(store, gen, q.text).top(1)
            indexed = np.array([len(i) > 0 for i in q.words.chunk_ids], bool)
            occluded = embedder.embed([without(q.text, q.words.words, keep) for keep in
                                       (in_top_source(ordered, q.words), indexed)], truncate=True)
            out.append(Case(
                q, ranking.answer_features(ordered, q.words, sentence), ordered, ranked,
                top[0][1] if top else 0.0, word_vectors(embedder, q.text, q.words.words),
                states(embedder, best.row.text)[0] if best else np.zeros((0, embedder.dim)), occluded,
            ))
    return out


# --- the ideas: each maps a case to one value --------------------------------

def asks_amount(c: Case) -> float:
    return float(bool(_ASKS_AMOUNT.search(c.question.text)))


def amount_missing_in_passage(c: Case) -> float:
    return asks_amount(c) * float(not c.ordered or not _AMOUNT.search(c.ordered[0].best.row.text))


def amount_missing_in_sentences(c: Case) -> float:
    return asks_amount(c) * float(not any(_AMOUNT.search(s) for _, s in c.sentences[:3]))


def elsewhere(c: Case) -> float:
    """Idf-weighted share of the question's words the top source lacks but another chunk has."""
    words = c.question.words
    indexed = np.array([len(i) > 0 for i in words.chunk_ids], bool)
    return words.share(indexed & ~in_top_source(c.ordered, words)) if len(indexed) else 0.0


def rarest_in_top(c: Case) -> float:
    """1 when the question's rarest word found in the index is in the top source."""
    words = c.question.words
    found = [i for i, ids in enumerate(words.chunk_ids) if len(ids)]
    if not found:
        return 0.0
    return float(in_top_source(c.ordered, words)[max(found, key=lambda i: words.idf[i])])


def _best_matches(c: Case) -> np.ndarray:
    """Per question word, its best cosine to a word piece of the best passage (in context)."""
    if not len(c.word_states) or not len(c.passage_states):
        return np.zeros(len(c.word_states))
    return (c.word_states @ c.passage_states.T).max(axis=1)


def bertscore_recall(c: Case) -> float:
    idf = c.question.words.idf
    return float(np.average(_best_matches(c), weights=idf)) if idf.sum() > 0 else 0.0


def weak_words(under: float) -> Callable[[Case], float]:
    """Idf-weighted share of the question's words whose best match in the best passage is under `under`."""
    def weak(c: Case) -> float:
        return c.question.words.share(_best_matches(c) < under)
    weak.__name__ = f"weak<{under}"
    return weak


def rarest_word_match(c: Case) -> float:
    matches = _best_matches(c)
    return float(matches[np.argmax(c.question.words.idf)]) if len(matches) else 0.0


def same_first(c: Case) -> float:
    """1 when the vector ranking's first file is the keyword ranking's first file."""
    if not c.ordered:
        return 0.0
    sources = ranking.group_sources(c.question.passages)
    by_meaning = max(sources, key=lambda s: (max(p.cosine for p in s.passages), s.path))
    by_keyword = max(sources, key=lambda s: (max(p.keyword for p in s.passages), s.path))
    return float(by_meaning.path == by_keyword.path)


def bm25_per_idf(c: Case) -> float:
    """The top source's best passage's raw BM25 over the question's summed idf."""
    total = float(c.question.words.idf.sum())
    if not c.ordered or total <= 0:
        return 0.0
    return c.ordered[0].best.keyword * c.top_bm25 / total


def occluded_by_top(c: Case) -> float:
    """Cosine of the question to itself without the words the top source lacks (1: they carry no meaning)."""
    return float(c.occluded[0] @ c.question.vector)


def occluded_by_index(c: Case) -> float:
    """The same without the words found nowhere in the index."""
    return float(c.occluded[1] @ c.question.vector)


def sentence_coverage(c: Case) -> float:
    """Idf-weighted share of the question's words (crudely stemmed) in the best sentence."""
    if not c.sentences:
        return 0.0
    keys = _keys(c.sentences[0][1])
    return c.question.words.share([bool(_keys(w) & keys) for w in c.question.words.words])


def second_sentence(c: Case) -> float:
    return c.sentences[1][0] if len(c.sentences) > 1 else (c.sentences[0][0] if c.sentences else 0.0)


IDEAS: dict[str, list[Callable[[Case], float]]] = {
    "shipped five": [],
    "1. asks an amount, the best passage has none": [amount_missing_in_passage],
    "1. asks an amount, its 3 best sentences have none": [amount_missing_in_sentences],
    "1. asks an amount; and none in the 3 best sentences": [asks_amount, amount_missing_in_sentences],
    "2. share of words elsewhere, not in the top source": [elsewhere],
    "2. rarest indexed word in the top source": [rarest_in_top],
    "2. BERTScore recall vs the best passage": [bertscore_recall],
    "2. share of words matched under 0.4": [weak_words(0.4)],
    "2. share of words matched under 0.6": [weak_words(0.6)],
    "2. rarest word's best match in the best passage": [rarest_word_match],
    "3. vector and keyword agree on the first file": [same_first],
    "3. top BM25 per unit of question idf": [bm25_per_idf],
    "4. question without the words the top source lacks": [occluded_by_top],
    "4. question without the words the index lacks": [occluded_by_index],
    "4. share of words in the best sentence": [sentence_coverage],
    "4. second-best sentence": [second_sentence],
    "4. second-best sentence + 1. (3 best sentences)": [second_sentence, amount_missing_in_sentences],
    "4. second-best sentence + question without top's missing": [second_sentence, occluded_by_top],
}
RANDOM_SEEDS = 30


def columns(cases: list[Case], ideas: list[Callable[[Case], float]]) -> np.ndarray:
    extra = np.array([[idea(c) for idea in ideas] for c in cases]).reshape(len(cases), len(ideas))
    return np.hstack([np.array([c.base for c in cases]), extra])


def probability(x: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(x @ weights + bias)))


def held_out_counts(x: np.ndarray, y: np.ndarray, groups: np.ndarray, budget: float) -> tuple[int, int]:
    """Leave-one-set-out: unanswerable flagged, answerable flagged."""
    flagged = fit.leave_one_set_out(x, y, groups, budget)[np.isin(groups, fit.FIT_SETS)]
    held = y[np.isin(groups, fit.FIT_SETS)]
    return int(flagged[held == 0].sum()), int(flagged[held == 1].sum())


def train_cells(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list[str]:
    """Leave-one-set-out counts at each budget, and the sample folder's false flags with the fit on all of train."""
    counts = [held_out_counts(x, y, groups, budget) for budget in BUDGETS]
    sample = []
    for budget in BUDGETS:
        weights, bias, threshold = fit.fit_flag(x, y, budget)
        sample.append(int((probability(x[groups == "sample"], weights, bias) < threshold).sum()))
    unanswerable = int((y[np.isin(groups, fit.FIT_SETS)] == 0).sum())
    answerable = int((y[np.isin(groups, fit.FIT_SETS)] == 1).sum())
    return [f"{counts[0][0]}/{unanswerable}, {counts[0][1]}/{answerable}",
            ", ".join(f"{c}/{f}" for c, f in counts[1:]), f"{sample[0]}/{int((groups == 'sample').sum())}",
            ", ".join(str(n) for n in sample[1:])]


def test_cell(x: np.ndarray, y: np.ndarray, test_x: np.ndarray, test: list[Case], min_score: float) -> str:
    weights, bias, threshold = fit.fit_flag(x, y)
    weak = np.array([all(s.best.cosine < min_score for s in c.ordered) for c in test])
    flagged = (probability(test_x, weights, bias) < threshold) | weak
    answerable = np.array([bool(c.question.answers) for c in test])
    return f"{int(flagged[~answerable].sum())}/{int((~answerable).sum())}, " \
           f"{int(flagged[answerable].sum())}/{int(answerable.sum())}"


def random_rows(cases: list[Case], y: np.ndarray, groups: np.ndarray) -> list[list[object]]:
    """What random columns do to the leave-one-set-out counts: each budget's range over the seeds, and how
    many seeds catch 3 or more than the shipped five at no more false flags at the shipped budget."""
    base = columns(cases, [])
    shipped = held_out_counts(base, y, groups, BUDGETS[0])
    rows = []
    for width in (1, 2):
        counts = np.array([[
            held_out_counts(np.hstack([base, np.random.default_rng(seed).random((len(y), width))]), y, groups, b)
            for b in BUDGETS] for seed in range(RANDOM_SEEDS)
        ])  # seed x budget x (caught, false)
        ranges = [f"{counts[:, b, 0].min()}-{counts[:, b, 0].max()}/{counts[:, b, 1].min()}-{counts[:, b, 1].max()}"
                  for b in range(len(BUDGETS))]
        lucky = int(((counts[:, 0, 0] >= shipped[0] + 3) & (counts[:, 0, 1] <= shipped[1])).sum())
        rows.append([f"{width} random column(s), {RANDOM_SEEDS} seeds", f"{ranges[0]} ({lucky} seeds +3)",
                     ", ".join(ranges[1:]), "", ""])
    return rows


def print_errors(cases: list[Case], x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
    """Questions leave-one-set-out gets wrong (and right), with the shipped features and every idea's value."""
    flagged = fit.leave_one_set_out(x, y, groups)
    ideas = list(dict.fromkeys(chain([asks_amount], *IDEAS.values())))
    names = [*ranking.ANSWER_FEATURES, *(i.__name__ for i in ideas)]
    print("\n" + " ".join(f"{n[:8]:>8}" for n in names) + "  question (top source)")
    for label, wrong in (("missed unanswerable", (y == 0) & ~flagged), ("caught unanswerable", (y == 0) & flagged),
                         ("false flags", (y == 1) & flagged)):
        print(f"\n{label}:")
        for i in np.flatnonzero(wrong & np.isin(groups, fit.FIT_SETS)):
            c = cases[i]
            values = [*c.base, *(idea(c) for idea in ideas)]
            top = c.ordered[0].path if c.ordered else "-"
            print(" ".join(f"{v:8.3f}" for v in values) + f"  [{c.question.group}] {c.question.text} ({top})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--errors", action="store_true", help="print the questions the shipped model gets wrong")
    parser.add_argument("--test", action="store_true", help="also score each row once on the test splits")
    args = parser.parse_args()

    embedder = LocalEmbedder.bundled()
    sets = chain(fit.dev_sets(embedder, args.cache_dir, "train", {}), fit.sample_set(embedder, args.cache_dir, {}))
    cases = cases_of(sets, embedder)
    y = np.array([bool(c.question.answers) for c in cases], float)
    groups = np.array([c.question.group for c in cases])
    test = cases_of(fit.dev_sets(embedder, args.cache_dir, "test"), embedder) if args.test else []
    min_score = load_settings(environ={}, env_file=None).min_score

    header = ["features (shipped five +)", "leave-one-set-out 3 %", "at 5 %, 8 %", "sample folder false 3 %",
              "at 5 %, 8 %"]
    rows = []
    for name, ideas in IDEAS.items():
        x = columns(cases, ideas)
        rows.append([name, *train_cells(x, y, groups)])
        if test:
            rows[-1].append(test_cell(x, y, columns(test, ideas), test, min_score))
    rows += [row + ([""] if test else []) for row in random_rows(cases, y, groups)]
    print_table("'Not sure' candidates: flagged unanswerable, false among answerable", header
                + (["test (fit on all train)"] if test else []), rows)
    if args.errors:
        print_errors(cases, columns(cases, []), y, groups)


if __name__ == "__main__":
    main()
