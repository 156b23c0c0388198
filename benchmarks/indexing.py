#!/usr/bin/env python3
"""Benchmark 2: indexing a large knowledge folder, cold and incremental.

    .venv/bin/python benchmarks/indexing.py [--files 1000] [--words 2000] [--keep DIR]

Generates (seeded, so every run indexes the same text) N Markdown files of about
W words each — headings and paragraphs assembled from the sample handbook's
sentences, shuffled, each paragraph carrying a unique reference number so no two
chunks are alike — then indexes them with the library (`index_folder`, the
bundled model) into a fresh database and measures:

1. cold index: every file added, every chunk embedded;
2. re-index, nothing changed: should embed nothing and take ≤ 2 s;
3. one paragraph rewritten in each of 10 files, re-index: only their new chunks embedded;
4. every file touched (new mtime, same bytes), re-index: each file read and hashed, nothing embedded.

`--keep DIR` builds in DIR (which must not exist) and leaves the folder and the
database there, e.g. for `benchmarks/serving.py --db DIR/kb.sqlite3`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import knowledge_sentences, print_table  # noqa: E402
from bot.embeddings import Embedder, make_embedder  # noqa: E402
from bot.indexer import IndexReport, index_folder  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from bot.store import open_store  # noqa: E402

SEED = 20240611
FILES_PER_FOLDER = 100
EDITED_FILES = 10
HANDBOOK_SENTENCES = 1400  # the handbook has ~1,415; asking for more would top up with STS news headlines


def paragraph(rng: random.Random, sentences: list[str], ref: str) -> str:
    """Three to seven shuffled handbook sentences, tagged with a unique reference."""
    picked = rng.sample(sentences, rng.randint(3, 7))
    return f"{' '.join(picked)} (Ref. {ref}.)"


@dataclass(frozen=True)
class Vocabulary:
    """The handbook's lines: short title-like ones for headings, sentences for paragraphs."""

    headings: list[str]
    sentences: list[str]

    @classmethod
    def from_handbook(cls) -> Vocabulary:
        lines = [s for s in knowledge_sentences(HANDBOOK_SENTENCES) if "=" not in s]
        return cls(
            headings=[s for s in lines if s[0].isupper() and len(s.split()) <= 8 and not s.endswith((".", ":", "?"))],
            sentences=[s for s in lines if len(s.split()) >= 6],
        )


def document(rng: random.Random, vocab: Vocabulary, number: int, words: int) -> str:
    """A Markdown document of about `words` words: a title, then sections of paragraphs."""
    parts = [f"# Document {number:05d}: {rng.choice(vocab.headings)}"]
    count = 0
    section = 0
    while count < words:
        section += 1
        parts.append(f"## {section}. {rng.choice(vocab.headings)}")
        for n in range(rng.randint(2, 5)):
            text = paragraph(rng, vocab.sentences, f"KB-{number:05d}-{section:02d}-{n}")
            parts.append(text)
            count += len(text.split())
    return "\n\n".join(parts) + "\n"


def generate(folder: Path, files: int, words: int, vocab: Vocabulary) -> list[Path]:
    """Write the corpus, FILES_PER_FOLDER files per sub-folder; return the paths."""
    rng = random.Random(SEED)
    paths = []
    for number in range(files):
        path = folder / f"team-{number // FILES_PER_FOLDER:02d}" / f"doc-{number:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(rng, vocab, number, words))
        paths.append(path)
    return paths


def edit_one_paragraph(path: Path, rng: random.Random, sentences: list[str]) -> None:
    """Replace one body paragraph (not a heading) with a new one."""
    parts = path.read_text().split("\n\n")
    body = [i for i, part in enumerate(parts) if not part.startswith("#")]
    parts[rng.choice(body)] = paragraph(rng, sentences, f"EDIT-{path.stem}")
    path.write_text("\n\n".join(parts))


def run(settings: Settings, embedder: Embedder) -> tuple[IndexReport, float]:
    started = time.perf_counter()
    with open_store(settings.db_path) as store:
        report = index_folder(store, embedder, settings)
    return report, time.perf_counter() - started


def row(step: str, report: IndexReport, seconds: float) -> list[object]:
    files = (f"{len(report.added)} added, {len(report.changed)} changed, "
             f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.skipped)} skipped")
    rate = f"{report.chunks_written / seconds:.1f}" if report.chunks_written else "–"
    return [step, f"{seconds:.2f}", files, report.chunks, report.chunks_written,
            report.texts_embedded, report.cache_hits, rate]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--files", type=int, default=1000, help="how many files to generate")
    parser.add_argument("--words", type=int, default=2000, help="about how many words per file")
    parser.add_argument("--keep", type=Path, help="build in this new folder and leave it there")
    args = parser.parse_args()

    if args.keep:
        args.keep.mkdir(parents=True)
        bench(args.keep, args.files, args.words)
    else:
        with tempfile.TemporaryDirectory(prefix="kb-bench-indexing-") as workdir:
            bench(Path(workdir), args.files, args.words)


def bench(workdir: Path, files: int, words: int) -> None:
    folder = workdir / "knowledge"
    settings = load_settings(environ={}, env_file=None, knowledge_dir=folder, db_path=workdir / "kb.sqlite3")

    started = time.perf_counter()
    vocab = Vocabulary.from_handbook()
    paths = generate(folder, files, words, vocab)
    total_words = sum(len(p.read_text().split()) for p in paths)
    print(f"generated {len(paths)} files, {total_words:,} words ({total_words / len(paths):.0f} per file) "
          f"from {len(vocab.sentences)} sentences in {time.perf_counter() - started:.1f} s: {folder}")

    started = time.perf_counter()
    embedder = make_embedder(settings)
    print(f"model {embedder.model_id} loaded in {time.perf_counter() - started:.2f} s", flush=True)

    rows = [row("1. cold index", *run(settings, embedder))]
    print("cold index done", flush=True)
    rows.append(row("2. re-index, unchanged", *run(settings, embedder)))

    rng = random.Random(SEED + 1)
    for path in rng.sample(paths, min(EDITED_FILES, len(paths))):
        edit_one_paragraph(path, rng, vocab.sentences)
    rows.append(row(f"3. re-index, {EDITED_FILES} files edited", *run(settings, embedder)))

    later = time.time() + 60  # a new mtime even if the run above took less than the clock's tick
    for path in paths:
        os.utime(path, (later, later))
    rows.append(row("4. re-index, all touched", *run(settings, embedder)))
    rows.append(row("5. re-index, unchanged again", *run(settings, embedder)))

    print_table(
        f"Indexing {len(paths)} files × ~{words} words (bundled model, 2 cores)",
        ["step", "wall s", "files", "chunks in index", "chunks written", "texts embedded", "cache hits", "chunks/s"],
        rows,
    )
    size = settings.db_path.stat().st_size + sum(p.stat().st_size for p in workdir.glob("kb.sqlite3-*"))
    print(f"\ndatabase: {size / 1e6:.0f} MB at {settings.db_path}")


if __name__ == "__main__":
    main()
