"""What a request to /slack/events must pass before Bolt parses it.

Bolt parses a body before it checks the signature, so a forged, malformed body
reached the JSON parser and ended in HTTP 500 with a traceback; and Slack sends
no id with a slash command, so a captured signed /ask could be sent again within
the signature window and was answered again. Here a request is, in order:

1. refused with 413 when larger than MAX_BODY_BYTES (waitress does it from the
   Content-Length header, before reading the body: see `bot.slack.server.http_server`);
2. verified: a missing, bad or stale signature gets 401 and one log line, and
   nothing of the body is parsed or logged;
3. ignored (200, nothing done) when its signature and timestamp were seen
   before: a replay;
4. handed to Bolt; a signed body Bolt cannot parse gets 400 and one log line.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk.signature import SignatureVerifier

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Slack's payloads are a few KB (a 4,000-character /ask is ~13 KB form-encoded);
# 1 MB leaves room for any real one and keeps a forged one from costing memory.
MAX_BODY_BYTES = 1 << 20
SIGNATURE_WINDOW = 300  # seconds: how old a signed request may be (Slack's rule, and Bolt's)
PRUNE_EVERY = 30.0  # seconds between sweeps of expired signatures


class ReplayGuard:
    """The (signature, timestamp) pairs accepted within the signature window; safe across threads.

    Kept in memory: one `kb-bot serve` process answers every HTTP request, and a
    restart forgets at most 5 minutes of signatures.
    """

    def __init__(self, window: float = SIGNATURE_WINDOW) -> None:
        self._window = window
        self._expiry: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def first_time(self, signature: str, timestamp: str) -> bool:
        """Record the pair; False if it was accepted before and its window has not closed."""
        now = time.time()
        with self._lock:
            if now >= self._next_prune:
                self._expiry = {key: end for key, end in self._expiry.items() if end > now}
                self._next_prune = now + PRUNE_EVERY
            key = (signature, timestamp)
            if self._expiry.get(key, 0.0) > now:
                return False
            # a timestamp may be up to the window in the future: remember it until it is stale
            self._expiry[key] = max(now, float(timestamp)) + self._window
            return True


def guarded(slack: WSGIApp, path: str, signing_secret: str) -> WSGIApp:
    """`slack` with POSTs to `path` behind the checks above (it answers anything else with 404)."""
    verifier = SignatureVerifier(signing_secret)
    replays = ReplayGuard()

    def check(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != path:
            return slack(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            log.warning("refused a request with Content-Length %r", environ.get("CONTENT_LENGTH"))
            return _answer(start_response, "413 Payload Too Large", b"too large\n")
        body = environ["wsgi.input"].read(length)
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""
        signature = environ.get("HTTP_X_SLACK_SIGNATURE") or ""
        if not _signed(verifier, body, timestamp, signature):
            log.warning("refused a request without a valid Slack signature (%d bytes)", length)
            return _answer(start_response, "401 Unauthorized", b"invalid signature\n")
        if not replays.first_time(signature, timestamp):
            log.warning("ignored a replayed request (its signature was used before)")
            return _answer(start_response, "200 OK", b"")
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            return slack(environ, start_response)
        except Exception as exc:  # noqa: BLE001 - JSON or form data Bolt cannot read, signed nonetheless
            log.warning("refused a signed request that could not be parsed (%s)", type(exc).__name__)
            return _answer(start_response, "400 Bad Request", b"malformed request\n")

    return check


def _signed(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str) -> bool:
    try:
        return verifier.is_valid(body, timestamp, signature)
    except ValueError:  # a timestamp that is not a number, or a body that is not UTF-8
        return False


def _answer(start_response: Callable[..., Any], status: str, body: bytes) -> Iterable[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
