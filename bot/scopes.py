"""Per-channel scopes: a mapped channel's questions search only its folders (KB_SCOPES).

Unmapped channels, DMs and the CLI without `--scope` search everything. The
filter itself runs inside `bot.search.search` (`scope=`), so a scoped question
still gets its k sources; this module only says which folders and how to say so.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.settings import Settings


def scope_for(settings: Settings, channel: str | None) -> tuple[str, ...]:
    """The folders `channel` searches; empty (everything) for an unmapped channel or none."""
    return dict(settings.scopes).get(channel, ()) if channel else ()


def parse_scope(values: Iterable[str]) -> tuple[str, ...]:
    """`--scope hr --scope it,engineering` as ('hr', 'it', 'engineering')."""
    return tuple(dict.fromkeys(f.strip().strip("/") for v in values for f in v.split(",") if f.strip().strip("/")))


def scope_note(scope: tuple[str, ...]) -> str:
    """The answer footer's line for a scoped search; empty when nothing was left out."""
    if not scope:
        return ""
    return "Searched only " + ", ".join(f"{folder}/" for folder in scope) + "."
