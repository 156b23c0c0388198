#!/usr/bin/env python3
"""Benchmark 1: local embedding throughput and query latency.

    .venv/bin/python benchmarks/embedding.py [--fp32 DIR] [--st-python PY]

Measures the bundled int8 model on 1,000 realistic sentences at batch sizes
1/32/128, on mixed-length passages (SciFact documents when ../shared/eval is
there, else the sample handbook's chunks), and single-query latency. Beside it,
in the same run:
- `--fp32 DIR`: the fp32 export (scripts/export_onnx.py) through the same code;
- `--st-python PY`: a Python with sentence-transformers + torch, running
  benchmarks/st_reference.py on the same texts (default /tmp/stvenv/bin/python
  when it exists) — the reference the ratio is taken against.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import knowledge_sentences, print_table, scifact_passages, summary, timed  # noqa: E402
from bot.embeddings import Embedder, LocalEmbedder  # noqa: E402


def throughput(embedder: Embedder, texts: list[str], batch_size: int) -> float:
    embedder.batch_size = batch_size
    embedder.embed(texts[:batch_size], truncate=True)
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        embedder.embed(texts, truncate=True)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def sentence_transformers(python: str, texts: list[str], batch_size: int) -> dict | None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(t.replace("\n", " ") for t in texts))
    script = Path(__file__).with_name("st_reference.py")
    result = subprocess.run(
        [python, str(script), f.name, str(batch_size), "--repeats", "2"], capture_output=True, text=True
    )
    if result.returncode != 0:
        print(f"sentence-transformers run failed: {result.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--fp32", type=Path, default=Path("/tmp/minilm-fp32"))
    parser.add_argument("--st-python", default="/tmp/stvenv/bin/python")
    args = parser.parse_args()

    sentences = knowledge_sentences(1000)
    passages = scifact_passages(300)
    passage_source = "SciFact docs"
    if passages is None:
        from bot.chunking import chunk_document
        from bot.parsing.markdown import parse_markdown

        int8 = LocalEmbedder.bundled()
        passages = []
        for path in sorted(Path("knowledge").rglob("*.md")):
            passages += [c.text for c in chunk_document(
                parse_markdown(path.read_text()).blocks, title=None, count_tokens=int8.count_tokens_many,
                max_tokens=256, target_tokens=256, overlap_tokens=32)]
        passage_source = "handbook chunks"
    words = sum(len(p.split()) for p in passages) / len(passages)
    print(f"{len(sentences)} sentences; {len(passages)} {passage_source} (mean {words:.0f} words)")

    started = time.perf_counter()
    models: list[tuple[str, Embedder]] = [("onnx int8 (default)", LocalEmbedder.bundled())]
    load_int8 = time.perf_counter() - started
    if (args.fp32 / "model.onnx").exists():
        models.append(("onnx fp32 (precise)", LocalEmbedder.from_folder(args.fp32)))

    rows = []
    for name, embedder in models:
        row = [name]
        for batch in (1, 32, 128):
            row.append(f"{throughput(embedder, sentences, batch):.0f}")
        row.append(f"{throughput(embedder, passages, 32):.1f}")
        row.append(summary(timed(lambda e=embedder: e.embed(["how do I reset my vpn password"]), 50)))
        rows.append(row)

    reference = None
    if Path(args.st_python).exists():
        st_sent = sentence_transformers(args.st_python, sentences, 32)
        st_pass = sentence_transformers(args.st_python, passages, 32)
        if st_sent and st_pass:
            reference = st_pass["sentences_per_s"]
            rows.append(["sentence-transformers+torch", "–", f"{st_sent['sentences_per_s']:.0f}", "–",
                         f"{st_pass['sentences_per_s']:.1f}", f"p50 {st_sent['query_ms']:.2f} ms"])
    print_table(
        "Embedding throughput (texts/s; 2 cores)",
        ["model", "sent. b=1", "sent. b=32", "sent. b=128", "passages b=32", "one query"],
        rows,
    )
    print(f"\nint8 model load: {load_int8:.2f} s")
    if reference:
        for row in rows[: len(models)]:
            print(f"{row[0]}: {float(row[4]) / reference:.2f}x sentence-transformers on passages")


if __name__ == "__main__":
    main()
