"""`kb-bot store`: move an install between stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import click

from bot.commands.common import user_errors
from bot.store import open_store


@click.group("store")
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
