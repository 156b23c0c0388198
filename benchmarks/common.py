"""Shared pieces of the benchmarks: test texts, timing, and table printing."""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"
SHARED_EVAL = ROOT.parent / "shared" / "eval"


def knowledge_sentences(limit: int = 1000) -> list[str]:
    """Realistic sentences: the sample handbook, split at sentence ends, deduplicated."""
    seen: dict[str, None] = {}
    for path in sorted(KNOWLEDGE.rglob("*")):
        if path.suffix not in {".md", ".txt", ".rst"}:
            continue
        text = re.sub(r"[#*`>|_-]+", " ", path.read_text())
        for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", text):
            sentence = " ".join(sentence.split())
            if len(sentence.split()) >= 4:
                seen.setdefault(sentence)
    sentences = list(seen)
    if len(sentences) < limit:  # top up with STS sentences when the shared data is there
        sts = SHARED_EVAL / "stsbenchmark" / "sts-test.csv"
        if sts.exists():
            for line in sts.read_text(encoding="utf-8").splitlines():
                parts = line.split("\t")
                if len(parts) >= 7:
                    seen.setdefault(parts[5])
                    seen.setdefault(parts[6])
        sentences = list(seen)
    return sentences[:limit]


def scifact_passages(limit: int | None = 300) -> list[str] | None:
    """SciFact documents (title + text): the mixed-length passages the issue measures."""
    corpus = SHARED_EVAL / "scifact" / "corpus.jsonl"
    if not corpus.exists():
        return None
    out = []
    with corpus.open() as f:
        for line in f:
            doc = json.loads(line)
            out.append(f"{doc['title']} {doc['text']}")
            if limit is not None and len(out) >= limit:
                break
    return out


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds per call, after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def timed_each(fn: Callable[[Any], object], inputs: Iterable[Any]) -> list[float]:
    """Milliseconds of `fn(x)` for each input, after one warm-up call on the first."""
    inputs = list(inputs)
    fn(inputs[0])
    out = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(ms: list[float]) -> str:
    return f"p50 {statistics.median(ms):.2f} ms, p95 {percentile(ms, 95):.2f} ms"


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
