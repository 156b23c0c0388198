"""The CLI and its front door agree: every command has help text and the README shows it in use."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from bot.cli import cli
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group = cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    """Every command and sub-command, as typed after `kb-bot`."""
    for name, command in sorted(group.commands.items()):
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} ")
        else:
            yield path, command


@pytest.mark.parametrize(("path", "command"), list(commands()), ids=lambda value: str(value))
def test_every_command_has_help_and_appears_in_the_readme(path: str, command: click.Command) -> None:
    assert (command.help or "").strip(), f"`kb-bot {path}` has no help text"
    assert f"kb-bot {path}" in README, f"`kb-bot {path}` is not shown in README.md"


def test_the_command_list_is_not_empty() -> None:
    found = dict(commands())
    assert {"ask", "index", "serve", "stats", "dupes scan", "eval golden"} <= set(found)
