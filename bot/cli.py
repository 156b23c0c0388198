"""`kb-bot`: the command line, a thin mirror of the library.

Each command turns its flags into the arguments of one library function,
calls it, and prints readable text (or JSON with `--json`). Errors meant for
users (`KbError`) become a one-line message and exit code 1.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from bot.commands.common import configure_logging, db_option, json_option, knowledge_option, settings_for, user_errors
from bot.commands.dupes import dupes_group
from bot.commands.evaluation import eval_group
from bot.commands.insights import gaps_cmd, map_cmd
from bot.commands.store import store_group
from bot.embeddings import Embedder, make_embedder
from bot.errors import IndexNotBuiltError
from bot.indexer import IndexProgress, IndexReport, Progress, index_folder
from bot.lock import index_lock
from bot.reports import format_report
from bot.scopes import parse_scope, scope_note
from bot.search import SearchOptions, SearchResult
from bot.settings import SEARCH_MODES, Settings
from bot.store import open_configured_store


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


cli.add_command(eval_group)
cli.add_command(dupes_group)
cli.add_command(gaps_cmd)
cli.add_command(map_cmd)
cli.add_command(store_group)


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
    with index_lock(settings.db_path), open_configured_store(settings) as store:
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
    settings = settings_for(ctx, knowledge_dir=knowledge, db_path=db)
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
        where = f"{hit.path}:{hit.start_line}-{hit.end_line}" + (f"  {hit.url}" if hit.url else "")
        flag = "" if hit.confident else "  (guess)"
        lines.append(f"{rank}. [{hit.relevance:>3}] {where}{flag}")
        if hit.heading:
            lines.append(f"   {hit.heading}")
        lines.append(f"   {hit.lead}")
        if hit.more:
            spans = ", ".join(f"{m.start_line}-{m.end_line}" for m in hit.more)
            lines.append(f"   (also in this file: lines {spans})")
        lines.append("")
    if result.scope:
        lines.append(scope_note(result.scope))
    return "\n".join(lines).rstrip()


@cli.command("ask")
@click.argument("question")
@click.option("-k", "k", type=click.IntRange(1, 50), help="How many passages (default: KB_TOP_K).")
@click.option("--mode", type=click.Choice(SEARCH_MODES), help="How to rank (default: KB_SEARCH_MODE).")
@click.option("--scope", multiple=True, help="Search only these top folders (repeat, or comma-separate).")
@db_option
@knowledge_option
@json_option
@click.pass_context
@user_errors
def ask_cmd(
    ctx: click.Context, question: str, k: int | None, mode: str | None, scope: tuple[str, ...], db: Path | None,
    knowledge: Path | None, json_: bool,
) -> None:
    """Print the sources that best answer QUESTION, best first, with their relevance (0-100)."""
    settings = settings_for(ctx, db_path=db, knowledge_dir=knowledge, search_mode=mode)
    embedder = make_embedder(settings)
    options = replace(SearchOptions.from_settings(settings, k=k), scope=parse_scope(scope))
    ask = functools.partial(options.search, embedder=embedder, query=question)
    with open_configured_store(settings) as store:
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
    settings = settings_for(ctx, db_path=db)
    with open_configured_store(settings) as store:
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

    settings = settings_for(ctx)
    embedder = make_embedder(settings)
    texts = text.split() if per_word else [text]
    if not texts:
        raise click.UsageError("TEXT is empty")
    with open_configured_store(settings) as store:
        vectors = embed_many(embedder, store, texts)
    rows = [
        {"text": t, "model": embedder.model_id, "dim": int(v.shape[0]), "vector": [round(float(x), 6) for x in v]}
        for t, v in zip(texts, vectors)
    ]
    if json_:
        click.echo(json.dumps(rows if per_word else rows[0], ensure_ascii=False))
        return
    for row in rows:
        head = ", ".join(f"{x:.4f}" for x in row["vector"][:values])
        click.echo(f"{row['text']!r}: {row['model']} dim={row['dim']} [{head}, …]")


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

    serve(settings_for(ctx, port=port, db_path=db, knowledge_dir=knowledge))


def main() -> None:
    cli(obj={})


if __name__ == "__main__":
    main()
