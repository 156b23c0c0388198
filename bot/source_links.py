"""Links to cited files: KB_SOURCE_URL's template filled in with a passage's path and lines.

The template is checked when the settings load, so a typo is refused at start
with one line instead of putting a broken link under every answer.
"""

from __future__ import annotations

import re
from string import Formatter
from urllib.parse import quote

FIELDS = ("path", "start_line", "end_line")
# Characters that would end the URL early or break Slack's <url|label> link syntax.
_UNSAFE = re.compile(r"[\s<>|\"]")


def check_template(template: str) -> str:
    """The template, stripped, if it is an http(s) URL naming only FIELDS; else ValueError in one line."""
    value = template.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    if bad := _UNSAFE.search(value):
        raise ValueError(f"must not contain {bad.group()!r} (spaces, quotes, <, > or |), got {value!r}")
    known = ", ".join("{" + name + "}" for name in FIELDS)
    try:
        named = [(field, conversion) for _, field, _, conversion in Formatter().parse(value) if field is not None]
    except ValueError as exc:  # a lone { or }
        raise ValueError(f"is not a valid template ({exc}; write {{{{ or }}}} for a literal brace)") from None
    for name, conversion in named:
        if name not in FIELDS:
            raise ValueError(f"has an unknown field {{{name}}}: use {known}")
        if conversion:
            raise ValueError(f"has a conversion in {{{name}!{conversion}}}: write {{{name}}}")
    try:
        source_url(value, "a/b.md", 1, 2)
    except ValueError as exc:  # a conversion or format spec the values do not take, e.g. {path:d}
        raise ValueError(f"cannot be filled in ({exc})") from None
    return value


def source_url(template: str, path: str, start_line: int, end_line: int) -> str | None:
    """The link to `path` at these lines (each path segment percent-encoded, `/` kept); None without a template."""
    if not template:
        return None
    encoded = "/".join(quote(segment, safe="") for segment in path.split("/"))
    return template.format(path=encoded, start_line=start_line, end_line=end_line)
