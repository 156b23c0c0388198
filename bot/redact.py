"""Credentials in URLs never reach logs or replies.

`OPENAI_BASE_URL=http://user:pass@host/v1` is a fair setting (basic auth in front
of a self-hosted server), and some endpoints take a key in the query string
(`?api-key=…`). URLs are shown in error messages and logged by the HTTP client
on every request, so everything kb-bot prints goes through `redact_url` or
`redact`, and `install_log_redaction` rewrites every log record, whoever logs it
(httpx's "HTTP Request: POST http://user:pass@…" line included).
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
# Query parameters whose value is hidden: api-key, access_token, sig, password, …
SECRET_PARAMETER = re.compile(r"key|token|secret|pass|sig|auth|credential", re.IGNORECASE)
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` without its userinfo and without the values of secret-looking query parameters."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rpartition('@')[2]}"
    pairs = [pair.partition("=") for pair in parts.query.split("&")] if parts.query else []
    query = "&".join(
        f"{name}={HIDDEN}" if equals and SECRET_PARAMETER.search(name) else name + equals + value
        for name, equals, value in pairs
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact(text: str) -> str:
    """`text` with every URL in it redacted."""
    return _URL.sub(lambda match: redact_url(match.group()), text) if "://" in text else text


_installed = False
_install_lock = threading.Lock()


def install_log_redaction() -> None:
    """Make every log record of this process carry a redacted message (idempotent).

    A record factory, not a handler filter: it holds for loggers and handlers
    configured later, and for libraries' child loggers, which logger filters miss.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        make_record = logging.getLogRecordFactory()

        def redacting_record(*args: object, **kwargs: object) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
            return record

        logging.setLogRecordFactory(redacting_record)
        _installed = True
