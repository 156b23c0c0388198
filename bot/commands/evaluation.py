"""`kb-bot eval`: retrieval quality on a BEIR folder or a golden set."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.commands.common import db_option, json_option, settings_for, user_errors
from bot.embeddings import make_embedder
from bot.evaluation import evaluate_golden, load_beir, load_golden, run_beir
from bot.settings import SEARCH_MODES
from bot.store import open_configured_store


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval quality on a BEIR benchmark or a golden set."""


modes_option = click.option(
    "--mode", "modes", type=click.Choice(SEARCH_MODES), multiple=True, help="Mode to score; repeatable (default: all)."
)


COUNTS = ("queries", "unanswerable")  # sizes, shown in the title rather than as columns


def format_scores(title: str, results: dict[str, dict[str, float | None]]) -> str:
    """One row per mode; a rate with nothing to count (None) shows as "-"."""
    metrics = [m for m in next(iter(results.values())) if m not in COUNTS]
    lines = [title, f"{'mode':<8}" + "".join(f"{m:>15}" for m in metrics)]
    for mode, scores in results.items():
        cells = ("-" if scores[m] is None else f"{scores[m]:.4f}" for m in metrics)
        lines.append(f"{mode:<8}" + "".join(f"{cell:>15}" for cell in cells))
    return "\n".join(lines)


@eval_group.command("beir")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--split", default="test", show_default=True, help="Which qrels/{split}.tsv to score.")
@modes_option
@click.option("--limit", type=click.IntRange(1), help="Score a fixed sample of N queries.")
@click.option("--docs", type=click.IntRange(0), help="Index only the judged documents and N others (easier; quick checks).")
@click.option(
    "--cache-db", type=click.Path(path_type=Path), default=Path("data/eval-cache.sqlite3"), show_default=True,
    help="Embedding cache kept between runs, so reruns embed only the queries.",
)
@json_option
@click.pass_context
@user_errors
def eval_beir_cmd(
    ctx: click.Context, folder: Path, split: str, modes: tuple[str, ...], limit: int | None, docs: int | None,
    cache_db: Path, json_: bool,
) -> None:
    """Index the BEIR folder FOLDER into a temporary database; print nDCG@10 and recall@100."""
    settings = settings_for(ctx)
    data = load_beir(folder, split).subset(queries=limit, other_docs=docs)
    embedder = make_embedder(settings)
    click.echo(f"Indexing {len(data.corpus)} documents with {embedder.model_id} (cache: {cache_db})…", err=True)
    results = run_beir(data, embedder, settings, cache_db, modes or SEARCH_MODES)
    title = f"{folder.name} {split}: {len(data.queries)} queries, {len(data.corpus)} documents, {embedder.model_id}"
    click.echo(json.dumps(results, indent=2) if json_ else format_scores(title, results))


@eval_group.command("golden")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@modes_option
@click.option("--split", help='Score only the lines whose "split" is this (e.g. test).')
@db_option
@json_option
@click.pass_context
@user_errors
def eval_golden_cmd(
    ctx: click.Context, file: Path, modes: tuple[str, ...], split: str | None, db: Path | None, json_: bool
) -> None:
    """Score the index on FILE: hit@1, hit@3, MRR by distinct file, and the "not sure" flag.

    FILE has one JSON object a line: {"q": question, "file": path, "also": [paths]}
    ("also": other files that answer it too), or "file": null for a question the
    folder does not answer, which scores the flag's precision and recall.
    """
    settings = settings_for(ctx, db_path=db)
    items = load_golden(file, split)
    if not items:
        raise click.ClickException(f"no questions in {file}" + (f" with split {split!r}" if split else ""))
    embedder = make_embedder(settings)
    with open_configured_store(settings) as store:
        results = {mode: evaluate_golden(store, embedder, items, mode) for mode in modes or SEARCH_MODES}
    unanswerable = sum(item.file is None for item in items)
    name = f"{file.name} ({split})" if split else file.name
    title = f"{name}: {len(items)} questions ({unanswerable} unanswerable), {embedder.model_id}"
    click.echo(json.dumps(results, indent=2) if json_ else format_scores(title, results))
