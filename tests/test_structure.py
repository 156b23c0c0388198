"""The layering, read from the source with `ast`: no import circle, Slack only in bot/slack, SQL only in the store.

What is not done yet is allowed explicitly below, each entry with why; an
entry that is no longer needed fails the test, so the lists only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"
SLACK_LIBRARIES = ("slack_sdk", "slack_bolt")
SQL_METHODS = {"execute", "executemany", "executescript"}

# The packages that own SQL: connections, migrations, the Store, the message store, keyword indexes.
STORE_PACKAGES = ("bot.store.sqlite", "bot.store.postgres")  # the backends: the only modules with SQL

# Not done yet: SQL or a Store's connection outside the store packages, each entry with why (none left).
SQL_ALLOWED: set[str] = set()


PACKAGES = {
    ".".join(path.relative_to(BOT.parent).parent.parts) for path in BOT.rglob("__init__.py")
}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(BOT.rglob("*.py")):
        parts = path.relative_to(BOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return found


def imported(tree: ast.Module, module: str) -> Iterator[str]:
    """Every module `module` imports, at any depth (lazy imports in functions too), but not for type checking."""
    package = module if module in PACKAGES else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []  # never runs: not an import that can close a circle
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: {m for m in imported(tree, name) if m in trees and m != name} for name, tree in trees.items()}


def test_no_import_circle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            circle = path[path.index(module):] + [module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        for target in sorted(edges[module]):
            if not (target in PACKAGES and module.startswith(target + ".")):
                visit(target, [*path, module])  # a submodule importing its own package is not a circle
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_slack_libraries_only_in_bot_slack() -> None:
    users = {
        name for name, tree in modules().items()
        if any(m.split(".")[0] in SLACK_LIBRARIES for m in imported(tree, name))
    }
    outside = {name for name in users if not name.startswith("bot.slack")}
    assert outside == set()


def _runs_sql(tree: ast.Module) -> bool:
    """Calls .execute/.executemany/.executescript, or reaches into a store's `.conn`."""
    return any(
        (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_METHODS)
        or (isinstance(node, ast.Attribute) and node.attr == "conn" and ast.unparse(node.value) != "self")
        for node in ast.walk(tree)
    )


def test_sql_only_in_the_store() -> None:
    outside = {
        name for name, tree in modules().items()
        if not any(name == p or name.startswith(p + ".") for p in STORE_PACKAGES) and _runs_sql(tree)
    }
    assert outside == SQL_ALLOWED


def test_the_core_of_duplicates_knows_no_platform() -> None:
    """The duplicate scan's rules reach a chat only through bot.chat.ChatPort."""
    trees = modules()
    # every bot.dupes module but the evaluation harness, whose labelled test data is Slack-formatted
    dupes = [name for name in trees if name.startswith("bot.dupes.") and name != "bot.dupes.evaluate"]
    for name in (*dupes, "bot.chat", "bot.store", "bot.store.records", "bot.services", "bot.scheduler"):
        slack = [m for m in imported(trees[name], name) if m.split(".")[0] in SLACK_LIBRARIES or m.startswith("bot.slack")]
        assert slack == [], f"{name} imports {slack}"



# The library's public surface (`from bot import …`): a change here is a change for every user of kb-bot as a library.
PUBLIC = [
    "Embedder", "Hit", "IndexReport", "KbError", "LocalEmbedder", "OpenAIEmbedder", "SearchResult", "Settings",
    "Store", "index_folder", "load_settings", "make_embedder", "open_store", "search",
]


def test_the_public_names_are_pinned_and_each_imports() -> None:
    import bot

    assert bot.__all__ == PUBLIC
    namespace: dict[str, object] = {}
    exec("from bot import *", namespace)  # noqa: S102 - fails on a listed name that bot does not define
    assert set(namespace) - {"__builtins__"} == set(PUBLIC)
