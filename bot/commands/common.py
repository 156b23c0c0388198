"""What every `kb-bot` command shares: settings from --env-file, one-line user errors, common options."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bot.errors import KbError
from bot.settings import Settings, load_settings


def settings_for(ctx: click.Context, **overrides: Any) -> Settings:
    """The settings under the group's --env-file; `overrides` (flags) win when not None."""
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


db_option = click.option("--db", help="SQLite file or postgresql:// URL (default: KB_DB).")
knowledge_option = click.option(
    "--knowledge", type=click.Path(path_type=Path), help="Knowledge folder (default: KB_KNOWLEDGE_DIR)."
)
json_option = click.option("--json", "json_", is_flag=True, help="Print JSON.")
