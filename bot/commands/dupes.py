"""`kb-bot dupes`: the duplicate scan once, the channels' backfill, and the flags people disputed."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.chat import ChatPort
from bot.commands.common import db_option, json_option, settings_for, user_errors
from bot.dupes.flag import why
from bot.dupes.match import Pair
from bot.dupes.rules import DupRules
from bot.dupes.scan import backfill, dry_run_pairs, scan_and_flag, watched_channels
from bot.embeddings import make_embedder
from bot.errors import SettingsError
from bot.settings import Settings
from bot.store import open_configured_store


@click.group("dupes")
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
    settings = settings_for(ctx, db_path=db)
    chat = _slack_chat(settings)  # a dry run too: it asks which channels the bot is in
    embedder = make_embedder(settings)
    with open_configured_store(settings) as store:
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
    settings = settings_for(ctx, db_path=db)
    chat = _slack_chat(settings)
    rules = DupRules.from_settings(settings)
    with open_configured_store(settings) as store:
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
    settings = settings_for(ctx, db_path=db)
    with open_configured_store(settings) as store:
        reports = store.messages.all_feedback()
    if export:
        for report in reports:
            click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        click.echo(f"{len(reports)} flag(s) marked not the same question; --export prints them as JSON lines.")
