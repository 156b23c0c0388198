"""`kb-bot`: the command line, a thin mirror of the library.

Each command turns its flags into the arguments of one library function,
calls it, and prints readable text (or JSON with `--json`). Errors meant for
users (`KbError`) become a one-line message and exit code 1.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bot.chat import ChatPort
from bot.dupes.flag import why
from bot.dupes.match import Pair
from bot.dupes.rules import DupRules
from bot.dupes.scan import backfill, dry_run_pairs, scan_and_flag, watched_channels
from bot.embeddings import Embedder, make_embedder
from bot.errors import IndexNotBuiltError, KbError, SettingsError
from bot.evaluation import evaluate_golden, load_beir, load_golden, run_beir
from bot.indexer import IndexProgress, IndexReport, Progress, index_folder
from bot.lock import index_lock
from bot.reports import format_report
from bot.search import SearchResult, search
from bot.settings import SEARCH_MODES, Settings, load_settings
from bot.store import open_store


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    return load_settings(env_file=ctx.obj["env_file"], **overrides)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Show `KbError`s as one line (exit 1) instead of a stack trace."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KbError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


@click.group()
@click.option("--env-file", default=".env", show_default=True, help="Settings file read under the environment.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.version_option(package_name="kb-bot")
@click.pass_context
def cli(ctx: click.Context, env_file: str, verbose: bool) -> None:
    """kb-bot: answers from your team's knowledge folder, in Slack and here."""
    ctx.ensure_object(dict)
    ctx.obj["env_file"] = env_file
    configure_logging("INFO" if verbose else "WARNING")


db_option = click.option("--db", help="SQLite file or postgresql:// URL (default: KB_DB).")
knowledge_option = click.option(
    "--knowledge", type=click.Path(path_type=Path), help="Knowledge folder (default: KB_KNOWLEDGE_DIR)."
)
json_option = click.option("--json", "json_", is_flag=True, help="Print JSON.")


def _progress(live: bool) -> Progress:
    """Files done / total, chunks embedded, rate and ETA on stderr: a live line on a terminal, else one line at the end."""
    started = time.monotonic()

    def show(p: IndexProgress) -> None:
        elapsed = time.monotonic() - started
        counts = (
            f"{p.files_done}/{p.files_total} files, {p.chunks_embedded} chunks embedded, "
            f"{p.chunks_embedded / max(elapsed, 1e-3):.1f} chunks/s"
        )
        if p.finished:
            summary = f"{counts}, took {_duration(elapsed)}"
            click.echo(f"\r{summary}\x1b[K" if live else summary, err=True, color=live)
        elif live:
            # chunks still to write, guessed from the chunks per file read so far, at the rate written so far
            expected = p.chunks_read * p.files_total / max(p.files_done, 1)
            left = elapsed * (expected - p.chunks_written) / p.chunks_written if p.chunks_written else None
            label = p.path if len(p.path) <= 40 else "…" + p.path[-39:]
            # \x1b[K clears what a longer previous line left on the right
            eta = "…" if left is None else _duration(left)
            click.echo(f"\r{counts}, ETA {eta}  {label}\x1b[K", nl=False, err=True, color=True)

    return show


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def run_index(
    settings: Settings, embedder: Embedder, *, full: bool = False, dry_run: bool = False, progress: Progress | None = None
) -> IndexReport:
    with index_lock(settings.db_path), open_store(settings.db_path) as store:
        return index_folder(store, embedder, settings, full=full, dry_run=dry_run, progress=progress)


@cli.command("index")
@knowledge_option
@db_option
@click.option("--full", is_flag=True, help="Re-read and re-chunk every file into a fresh index.")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@json_option
@click.pass_context
@user_errors
def index_cmd(ctx: click.Context, knowledge: Path | None, db: Path | None, full: bool, dry_run: bool, json_: bool) -> None:
    """Index the knowledge folder (incremental; unchanged files cost nothing)."""
    settings = _settings(ctx, knowledge_dir=knowledge, db_path=db)
    embedder = make_embedder(settings)
    progress = None if json_ else _progress(sys.stderr.isatty())
    report = run_index(settings, embedder, full=full, dry_run=dry_run, progress=progress)
    click.echo(json.dumps(report.as_dict(), indent=2) if json_ else format_report(report))


def format_result(result: SearchResult) -> str:
    """Sources best first, each with the 0-100 relevance that ordered them and its best passage."""
    if not result.hits:
        return "No passages found."
    lines = []
    if not result.confident:
        lines.append("Not sure: the folder may not answer this. Best guesses:\n")
    for rank, hit in enumerate(result.hits, start=1):
        where = f"{hit.path}:{hit.start_line}-{hit.end_line}"
        flag = "" if hit.confident else "  (guess)"
        lines.append(f"{rank}. [{hit.relevance:>3}] {where}{flag}")
        if hit.heading:
            lines.append(f"   {hit.heading}")
        lines.append(f"   {hit.lead}")
        if hit.more:
            spans = ", ".join(f"{m.start_line}-{m.end_line}" for m in hit.more)
            lines.append(f"   (also in this file: lines {spans})")
        lines.append("")
    return "\n".join(lines).rstrip()


@cli.command("ask")
@click.argument("question")
@click.option("-k", "k", type=click.IntRange(1, 50), help="How many passages (default: KB_TOP_K).")
@click.option("--mode", type=click.Choice(SEARCH_MODES), help="How to rank (default: KB_SEARCH_MODE).")
@db_option
@knowledge_option
@json_option
@click.pass_context
@user_errors
def ask_cmd(
    ctx: click.Context, question: str, k: int | None, mode: str | None, db: Path | None, knowledge: Path | None, json_: bool
) -> None:
    """Print the sources that best answer QUESTION, best first, with their relevance (0-100)."""
    settings = _settings(ctx, db_path=db, knowledge_dir=knowledge, search_mode=mode)
    embedder = make_embedder(settings)
    ask = functools.partial(
        search, embedder=embedder, query=question, k=k or settings.top_k,
        min_score=settings.min_score, mode=settings.search_mode,
    )
    with open_store(settings.db_path) as store:
        try:
            result = ask(store)
        except IndexNotBuiltError:
            # Built as `kb-bot index` builds it: under the index lock (a second
            # process says who is indexing instead of embedding the same texts), with progress.
            click.echo(f"No index for this model yet: indexing {settings.knowledge_dir} first…", err=True)
            report = run_index(settings, embedder, progress=_progress(sys.stderr.isatty()))
            click.echo(format_report(report), err=True)
            result = ask(store)
    click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) if json_ else format_result(result))


@cli.command("stats")
@db_option
@json_option
@click.pass_context
@user_errors
def stats_cmd(ctx: click.Context, db: Path | None, json_: bool) -> None:
    """Show what the index holds: documents, chunks, model, size, cache."""
    settings = _settings(ctx, db_path=db)
    with open_store(settings.db_path) as store:
        stats = store.stats()
    if json_:
        click.echo(json.dumps(stats, indent=2))
        return
    for key, value in stats.items():
        click.echo(f"{key:>15}: {value}")


@cli.command("embed")
@click.argument("text")
@click.option("--per-word", is_flag=True, help="Embed each word separately.")
@click.option("--values", default=8, show_default=True, help="How many leading values to print.")
@json_option
@click.pass_context
@user_errors
def embed_cmd(ctx: click.Context, text: str, per_word: bool, values: int, json_: bool) -> None:
    """Embed TEXT (through the cache) and print its vector's model, dimension and first values."""
    from bot.cache import embed_many

    settings = _settings(ctx)
    embedder = make_embedder(settings)
    texts = text.split() if per_word else [text]
    if not texts:
        raise click.UsageError("TEXT is empty")
    with open_store(settings.db_path) as store:
        vectors = embed_many(embedder, store, texts)
    rows = [
        {"text": t, "model": embedder.model, "dim": int(v.shape[0]), "vector": [round(float(x), 6) for x in v]}
        for t, v in zip(texts, vectors)
    ]
    if json_:
        click.echo(json.dumps(rows if per_word else rows[0], ensure_ascii=False))
        return
    for row in rows:
        head = ", ".join(f"{x:.4f}" for x in row["vector"][:values])
        click.echo(f"{row['text']!r}: {row['model']} dim={row['dim']} [{head}, …]")


@cli.group("eval")
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
    settings = _settings(ctx)
    data = load_beir(folder, split).subset(queries=limit, other_docs=docs)
    embedder = make_embedder(settings)
    click.echo(f"Indexing {len(data.corpus)} documents with {embedder.model} (cache: {cache_db})…", err=True)
    results = run_beir(data, embedder, settings, cache_db, modes or SEARCH_MODES)
    title = f"{folder.name} {split}: {len(data.queries)} queries, {len(data.corpus)} documents, {embedder.model}"
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
    settings = _settings(ctx, db_path=db)
    items = load_golden(file, split)
    if not items:
        raise click.ClickException(f"no questions in {file}" + (f" with split {split!r}" if split else ""))
    embedder = make_embedder(settings)
    with open_store(settings.db_path) as store:
        results = {mode: evaluate_golden(store, embedder, items, mode) for mode in modes or SEARCH_MODES}
    unanswerable = sum(item.file is None for item in items)
    name = f"{file.name} ({split})" if split else file.name
    title = f"{name}: {len(items)} questions ({unanswerable} unanswerable), {embedder.model}"
    click.echo(json.dumps(results, indent=2) if json_ else format_scores(title, results))


@cli.group("dupes")
def dupes_group() -> None:
    """Find repeated questions in the watched Slack channels."""


def format_pairs(pairs: list[Pair], dry_run: bool) -> str:
    if not pairs:
        return "No repeated questions found." if dry_run else "Nothing new to flag."
    lines = [f"{'Would flag' if dry_run else 'Flagged'} {len(pairs)} repeated question(s):"]
    for pair in pairs:
        lines.append(f"[{pair.score:.2f}] {pair.later.channel} {pair.later.ts}: {pair.later.text[:120]}")
        lines.append(f"       looks like {pair.earlier.channel} {pair.earlier.ts}: {pair.earlier.text[:120]}")
        lines.append(f"       {why(pair)}, judge {pair.verdict.probability:.2f}")
    return "\n".join(lines)


def _slack_chat(settings: Settings) -> ChatPort:
    """Slack through the Web API client `kb-bot serve` uses (rate limits waited out)."""
    from bot.slack.chat import SlackChat
    from bot.slack.server import BOT_TOKEN_HELP, make_web_client  # Slack libraries load only when needed

    if not settings.slack_bot_token:
        raise SettingsError(BOT_TOKEN_HELP)
    return SlackChat(make_web_client(settings))


@dupes_group.command("scan")
@db_option
@click.option("--dry-run", is_flag=True, help="Only list the pairs: nothing posted, flagged or marked scanned.")
@json_option
@click.pass_context
@user_errors
def dupes_scan_cmd(ctx: click.Context, db: Path | None, dry_run: bool, json_: bool) -> None:
    """Run the duplicate scan once, as the scheduler of `kb-bot serve` does."""
    settings = _settings(ctx, db_path=db)
    chat = _slack_chat(settings)  # a dry run too: it asks which channels the bot is in
    embedder = make_embedder(settings)
    with open_store(settings.db_path) as store:
        if dry_run:
            pairs = dry_run_pairs(store, embedder, DupRules.from_settings(settings), chat)
        else:
            pairs = scan_and_flag(store, embedder, DupRules.from_settings(settings), chat)
    if json_:
        click.echo(json.dumps({"pairs": [p.as_dict() for p in pairs]}, ensure_ascii=False))
    else:
        click.echo(format_pairs(pairs, dry_run))


@dupes_group.command("backfill")
@db_option
@click.pass_context
@user_errors
def dupes_backfill_cmd(ctx: click.Context, db: Path | None) -> None:
    """Fetch the watched channels' history since the last fetch (nothing is flagged)."""
    settings = _settings(ctx, db_path=db)
    chat = _slack_chat(settings)
    rules = DupRules.from_settings(settings)
    with open_store(settings.db_path) as store:
        channels = watched_channels(chat, rules)
        added = backfill(store, chat, rules, channels)
    click.echo(f"Fetched {added} new message(s) from {len(channels)} channel(s).")


@dupes_group.command("feedback")
@db_option
@click.option("--export", is_flag=True, help="Print every pair as a JSON line (for scripts/fit_dupe_judge.py).")
@click.pass_context
@user_errors
def dupes_feedback_cmd(ctx: click.Context, db: Path | None, export: bool) -> None:
    """The flags people marked "Not the same question"."""
    settings = _settings(ctx, db_path=db)
    with open_store(settings.db_path) as store:
        reports = store.messages.all_feedback()
    if export:
        for report in reports:
            click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        click.echo(f"{len(reports)} flag(s) marked not the same question; --export prints them as JSON lines.")


@cli.command("serve")
@click.option(
    "--port", type=click.IntRange(1, 65535),
    help="HTTP port (default: PORT, 3000); in Socket Mode only GET /healthz is served there.",
)
@db_option
@knowledge_option
@click.pass_context
@user_errors
def serve_cmd(ctx: click.Context, port: int | None, db: Path | None, knowledge: Path | None) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on --port."""
    from bot.slack.server import serve  # Slack libraries load only for this command

    serve(_settings(ctx, port=port, db_path=db, knowledge_dir=knowledge))


@cli.group("store")
def store_group() -> None:
    """Move an install between stores: SQLite and PostgreSQL."""


@store_group.command("copy")
@click.argument("src")
@click.argument("dst")
@user_errors
def store_copy_cmd(src: str, dst: str) -> None:
    """Copy the index, embedding cache and Slack state from SRC to DST (paths or postgresql:// URLs); resumable."""
    from bot.store.postgres.copy import copy_store  # needs the `postgres` extra

    with open_store(src) as source, open_store(dst) as target:
        report = copy_store(source, target, progress=lambda line: click.echo(line, err=True))
    click.echo(f"Copied {report.documents_copied} document(s), {report.documents_already_there} already there; "
               f"counts and {report.vectors_checked} sampled vectors match.")


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
