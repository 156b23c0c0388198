"""reStructuredText read with docutils, Sphinx's roles and directives understood, nothing else trusted.

docutils alone fails on every Sphinx role and directive, so the common ones are
registered here and any other name found in a file is registered as a tolerant
one (its content kept as text, its options dropped) before parsing. File
insertion and raw output are off; the only file read is an `include` that
stays inside the knowledge folder. docutils never writes a warning anywhere.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path

from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.languages import en

from bot.parsing import BlockWriter, Parsed, readable_target, role_text, text_blocks

MAX_INCLUDES = 50  # per document: a file that includes itself stops here
MAX_INCLUDE_BYTES = 1024 * 1024

_ROLE_USE = re.compile(r"(?<![\w`]):([A-Za-z][\w:+.-]*):`")
_DIRECTIVE_USE = re.compile(r"^[ \t]*\.\.[ \t]+([A-Za-z][\w:+.-]*)[ \t]*::", re.M)
_ADORNMENT = "=-~^\"'`#*+:._"
_CODE_ROLES = {"code", "literal", "kbd", "program", "option", "envvar", "file", "samp", "command", "makevar",
               "mod", "func", "class", "meth", "attr", "exc", "data", "obj", "const", "regexp", "mimetype"}
_XREF_OR_TEXT_ROLES = {"doc", "ref", "term", "numref", "any", "download", "guilabel", "menuselection", "abbr",
                       "dfn", "pep", "rfc", "sub", "sup", "strong", "emphasis", "title-reference"}


class _AnyOption(dict):
    """An option_spec that accepts every option, so an unknown one never fails the directive."""

    def __missing__(self, key: str):
        return directives.unchanged


_ANY = _AnyOption(class_=directives.unchanged)


def _role(name, rawtext, text, lineno, inliner, options=None, content=None):  # docutils' role signature
    node = nodes.literal if name.lower().rsplit(":", 1)[-1] in _CODE_ROLES else nodes.inline
    return [node(rawtext, role_text(name.lower().rsplit(":", 1)[-1], text))], []


class _Labelled(Directive):
    """Any directive: its argument becomes a label, its content is parsed as rST, its options dropped."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _ANY
    label: str | None = None

    def run(self) -> list[nodes.Node]:
        node = nodes.container()
        node["kb_label"] = self.caption()
        node.source, node.line = self.state_machine.get_source_and_line(self.lineno)
        self.state.nested_parse(self.content, self.content_offset, node)
        return [node]

    def caption(self) -> str:
        # An argument is raw rST (`.. tab:: |brand|`): substitutions and roles read as words.
        argument = re.sub(r"\|([^|\s][^|]*)\|", lambda m: readable_target(m.group(1)), " ".join(self.arguments))
        argument = re.sub(r":([\w:+.-]+):`([^`]*)`", lambda m: role_text(m.group(1), m.group(2)), argument)
        if self.label:
            return f"{self.label} {argument}".strip()
        return argument


def _labelled(label: str | None, *, argument: bool = True) -> type[_Labelled]:
    """A _Labelled directive; without an argument, text on the directive's line is content (`.. seealso:: x`)."""
    name = f"Labelled{(label or 'Container').title().replace(' ', '')}"
    return type(name, (_Labelled,), {"label": label, "optional_arguments": int(argument)})


class _AnyOptions(Directive):
    """A directive that takes one optional argument, content, and any option (ignored)."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec = _ANY


class _Code(_AnyOptions):
    """code-block / sourcecode / code-tab: the code, without highlighting or options."""

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        node = nodes.literal_block(code, code)
        node.source, node.line = self.state_machine.get_source_and_line(self.lineno)
        caption = self.options.get("caption") or (self.arguments[0] if self.name == "code-tab" and self.arguments else "")
        if not caption:
            return [node]
        box = nodes.container()
        box["kb_label"] = caption
        box += node
        return [box]


class _Drop(_AnyOptions):
    """toctree, literalinclude, raw and the like: nothing a reader of a passage needs."""

    def run(self) -> list[nodes.Node]:
        return []


class _Include(Directive):
    """`.. include::` resolved inside the knowledge folder only; anything else is left out."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = _ANY

    def run(self) -> list[nodes.Node]:
        settings = self.state.document.settings
        settings.kb_includes += 1
        path = _confined(self.arguments[0], Path(settings.kb_path), Path(settings.kb_root)) if settings.kb_root else None
        if path is None or settings.kb_includes > MAX_INCLUDES:
            return []
        text = _read_included(path)
        if text is None:
            return []
        if after := self.options.get("start-after"):
            text = text.split(after, 1)[-1]
        if before := self.options.get("end-before"):
            text = text.split(before, 1)[0]
        if "literal" in self.options or "code" in self.options:
            return [nodes.literal_block(text, text)]
        _register_names(text)
        self.state_machine.insert_input(lengthen_underlines(text).split("\n"), str(path))
        return []


def _confined(argument: str, document: Path, root: Path) -> Path | None:
    """The included file if it is inside `root`: `/x` is tried from each folder above the document."""
    argument = argument.strip()
    if argument.startswith("<"):  # docutils' standard-definition files
        return None
    if argument.startswith("/"):
        folders = [document.parent, *document.parent.parents]
        candidates = [f / argument.lstrip("/") for f in folders if f == root or root in f.parents]
    else:
        candidates = [document.parent / argument]
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
            resolved.relative_to(root)
        except (ValueError, OSError):
            continue
        if resolved.is_file():
            return resolved
    return None


def _read_included(path: Path) -> str | None:
    """The text of a confined include, read without following a symlink swapped in since, or None.

    Capped at MAX_INCLUDE_BYTES: an include is a snippet, not a way to pull a huge file into a passage.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_INCLUDE_BYTES:
            return None
        data = handle.read(MAX_INCLUDE_BYTES + 1)
    if len(data) > MAX_INCLUDE_BYTES:
        return None
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")


_ADMONITIONS = {"seealso": "See also", "versionadded": "New in version", "versionchanged": "Changed in version",
                "deprecated": "Deprecated since version", "versionremoved": "Removed in version"}
_CONTAINERS = ["tabs", "tab", "group-tab", "only", "glossary", "ifconfig", "hlist", "centered", "cssclass",
               "container", "card", "grid", "grid-item", "grid-item-card", "tab-set", "tab-item", "dropdown"]
_DROPPED = ["toctree", "literalinclude", "raw", "highlight", "index", "meta", "contents", "sectionauthor",
            "moduleauthor", "codeauthor", "currentmodule", "default-role", "default-domain", "tabularcolumns"]


def _register_builtins() -> None:
    for name in _CONTAINERS:
        directives.register_directive(name, _labelled(None))
    for name, label in _ADMONITIONS.items():
        directives.register_directive(name, _labelled(label, argument=name != "seealso"))
    for name in ("code-block", "sourcecode", "code", "code-tab"):
        directives.register_directive(name, _Code)
    for name in _DROPPED:
        directives.register_directive(name, _Drop)
    directives.register_directive("include", _Include)
    for name in _CODE_ROLES | _XREF_OR_TEXT_ROLES:
        roles.register_local_role(name, _role)


_registered_directives: set[str] = set()
_registered_roles: set[str] = set()


def _register_names(text: str) -> None:
    """Register every role and directive name docutils does not know as a tolerant one."""
    for name in {m.lower() for m in _DIRECTIVE_USE.findall(text)} - _registered_directives:
        if name not in en.directives:
            directives.register_directive(name, _labelled(None))
        _registered_directives.add(name)
    for name in {m.lower() for m in _ROLE_USE.findall(text)} - _registered_roles:
        if name not in en.roles:
            roles.register_local_role(name, _role)
        _registered_roles.add(name)


def lengthen_underlines(text: str) -> str:
    """Make a title's underline as long as the title, so a short one still makes a heading.

    Only a line between a blank line (or the start) and an underline made of one
    adornment character, followed by a blank line, counts as a title.
    """
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        title, under = lines[i].rstrip(), lines[i + 1].rstrip()
        if (
            len(under) >= 2 and under[0] in _ADORNMENT and under == under[0] * len(under)
            and title.strip() and title == title.lstrip() and len(under) < len(title)
            and not (title[0] in _ADORNMENT and title == title[0] * len(title))
            and (i == 0 or not lines[i - 1].strip())
            and (i + 2 >= len(lines) or not lines[i + 2].strip())
        ):
            lines[i + 1] = under[0] * len(title)
    return "\n".join(lines)


def parse_rst(text: str, path: Path, root: Path | None) -> Parsed:
    """Blocks of readable text from an rST document at `path` inside the knowledge folder `root`.

    Without a `root` (rST embedded in Markdown), nothing is included.
    """
    _register_names(text)
    settings = {
        "report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(), "traceback": True,
        "file_insertion_enabled": False, "raw_enabled": False, "_disable_config": True,
        "doctitle_xform": False, "sectsubtitle_xform": False, "syntax_highlight": "none",
        "smart_quotes": False, "pep_references": False, "rfc_references": False,
        "line_length_limit": 1_000_000, "kb_path": str(path), "kb_root": str(root.resolve()) if root else "",
        "kb_includes": 0,
    }
    walker = _Walker(str(path))
    try:
        doctree = publish_doctree(lengthen_underlines(text), source_path=str(path), settings_overrides=settings)
        walker.visit_children(doctree)
    except Exception:  # docutils raises ad-hoc errors on pathological input; a file never fails
        return Parsed(text_blocks(text))
    return Parsed(walker.out.blocks, walker.out.title)


_register_builtins()


_SKIPPED = (nodes.comment, nodes.substitution_definition, nodes.target, nodes.system_message, nodes.raw,
            nodes.pending, nodes.image, nodes.meta, nodes.transition,
            nodes.footnote_reference, nodes.citation_reference, nodes.label, nodes.decoration)


def _problematic(raw: str) -> str:
    """Markup docutils could not resolve (`|brand|`, `` `Guide`_ ``), read as words."""
    raw = re.sub(r"^:[\w:+.-]+:", "", raw.strip())
    if raw.startswith("|") and raw.rstrip("_").endswith("|"):
        return readable_target(raw.strip("|_"))
    return role_text("", raw.strip("`_"))


def _inline(node: nodes.Node) -> str:
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, nodes.Text):
            parts.append(child.astext())
        elif isinstance(child, nodes.problematic):
            parts.append(_problematic(child.astext()))
        elif not isinstance(child, _SKIPPED) or isinstance(child, nodes.target) and child.children:
            parts.append(_inline(child))
    return "".join(parts)


class _Walker:
    """Walks a doctree into blocks; lines of included files are cited at the last line of the document."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out = BlockWriter()
        self.line = 1
        self.depth = 0

    def line_of(self, node: nodes.Node) -> int:
        for item in node.findall(nodes.Element):
            if item.line and item.source in (None, self.source):
                self.line = max(self.line, item.line)
                return item.line
        return self.line

    def add(self, text: str, node: nodes.Node, *, code: bool = False) -> None:
        start = self.line_of(node)
        included = node.source not in (None, self.source)
        lines = 0 if included else (node.rawsource or text).strip("\n").count("\n") + int(code)
        self.out.add(text, start, start + lines, code=code)

    def visit_children(self, node: nodes.Node) -> None:
        for child in node.children:
            self.visit(child)

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, _SKIPPED) or isinstance(node, nodes.topic) and "contents" in node["classes"]:
            return
        if isinstance(node, nodes.section):
            self.section(node)
        elif isinstance(node, (nodes.literal_block, nodes.doctest_block)):
            self.add(node.astext(), node, code=True)
        elif isinstance(node, nodes.table):
            self.table(node)
        elif isinstance(node, (nodes.bullet_list, nodes.enumerated_list)):
            for number, item in enumerate(node.children, start=1):
                self.out.item(f"{number}. " if isinstance(node, nodes.enumerated_list) else "- ", number == 1)
                self.visit_children(item)
        elif isinstance(node, (nodes.definition_list_item, nodes.field)):
            self.out.label(_inline(node.children[0]))
            for child in node.children[1:]:
                self.visit(child)
        elif isinstance(node, nodes.Admonition) or "kb_label" in getattr(node, "attributes", {}):
            self.labelled(node)
        elif isinstance(node, nodes.line_block):
            self.add("\n".join(_inline(line) for line in node.findall(nodes.line)), node, code=True)
        elif isinstance(node, nodes.TextElement):
            self.add(_inline(node), node)
        else:
            self.visit_children(node)

    def section(self, node: nodes.section) -> None:
        titled = bool(node.children) and isinstance(node[0], nodes.title)
        self.line_of(node)
        self.depth += 1
        self.out.heading(self.depth, _inline(node[0]) if titled else "")
        for child in node.children[1:] if titled else node.children:
            self.visit(child)
        self.depth -= 1

    def labelled(self, node: nodes.Element) -> None:
        children = list(node.children)
        if isinstance(node, nodes.Admonition):
            label = node.tagname.replace("_", " ").capitalize()
            if children and isinstance(children[0], nodes.title):
                label = _inline(children.pop(0))
        else:
            label = node["kb_label"]
        if not children:  # `.. option:: --no-cache` alone: its argument is all there is to read
            self.add(label, node)
            return
        self.out.label(label)
        for child in children:
            self.visit(child)
        self.out.prefix = ""

    def table(self, node: nodes.table) -> None:
        for title in (child for child in node.children if isinstance(child, nodes.title)):
            self.add(_inline(title), title)
        header: list[str] = []
        for row in (row for group in node.findall(nodes.thead) for row in group.findall(nodes.row)):
            header = [_cell(entry) for entry in row.children]
        rows = []
        for row in (row for group in node.findall(nodes.tbody) for row in group.findall(nodes.row)):
            line = self.line_of(row)
            rows.append(([_cell(entry) for entry in row.children], line, line + row.astext().count("\n")))
        self.out.table(header, rows)


def _cell(entry: nodes.Element) -> str:
    return " ".join(_inline(child) if isinstance(child, nodes.TextElement) else child.astext()
                    for child in entry.children)
