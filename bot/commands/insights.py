"""`kb-bot gaps` and `kb-bot map`: what people asked, and what the folder holds, for the docs' owners."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from bot.commands.common import db_option, json_option, settings_for, user_errors
from bot.store import open_configured_store


@click.command("gaps")
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Questions of the last N days.")
@click.option("--all", "include_all", is_flag=True, help="Every question (what people ask most), not only the unanswered.")
@db_option
@json_option
@click.pass_context
@user_errors
def gaps_cmd(ctx: click.Context, days: int, include_all: bool, db: Path | None, json_: bool) -> None:
    """Group the questions asked in Slack that got no confident answer or a "Not helpful" vote, largest first."""
    from bot.gaps import find_gaps, format_gaps

    settings = settings_for(ctx, db_path=db)
    with open_configured_store(settings) as store:
        gaps = find_gaps(store, days=days, include_all=include_all)
    if json_:
        data = {"days": days, "all": include_all, "gaps": [g.as_dict() for g in gaps]}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        click.echo(format_gaps(gaps, days=days, include_all=include_all))


@click.command("map")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("map.html"), show_default=True,
              help="The HTML file to write.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Also a PNG of it (needs Chromium).")
@click.option("--max-points", type=click.IntRange(100, 500_000), default=20_000, show_default=True,
              help="Plot a random sample of this many passages when the index holds more.")
@click.option("--days", type=click.IntRange(1, 3650), default=30, show_default=True, help="Questions of the last N days.")
@db_option
@click.pass_context
@user_errors
def map_cmd(ctx: click.Context, out: Path, png: Path | None, max_points: int, days: int, db: Path | None) -> None:
    """Write a self-contained HTML map of every passage (coloured by top folder) with recent questions on it."""
    from bot.knowledge_map import build_map, render_html, screenshot

    settings = settings_for(ctx, db_path=db)
    started = time.perf_counter()
    with open_configured_store(settings) as store:
        knowledge_map = build_map(store, max_points=max_points, days=days)
    out.write_text(render_html(knowledge_map), encoding="utf-8")
    shown = len(knowledge_map.xy)
    sample = f" (a random sample of {shown:,})" if shown < knowledge_map.total else ""
    click.echo(f"Wrote {out}: {knowledge_map.total:,} passages{sample}, {len(knowledge_map.questions)} questions, "
               f"{time.perf_counter() - started:.1f} s.")
    if png is not None:
        screenshot(out, png)
        click.echo(f"Wrote {png}.")
