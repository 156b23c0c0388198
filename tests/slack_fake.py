"""A loopback Slack: the Web API, response_urls and Socket Mode, plus requests signed as Slack signs them.

`FakeSlack` serves on 127.0.0.1 (port 0) in a thread and records every call:

    POST /api/<method>        Web API (auth.test, chat.postMessage, chat.postEphemeral,
                              chat.getPermalink, reactions.add/remove, conversations.history,
                              conversations.replies, users.conversations, apps.connections.open);
                              the token is checked
    POST /response/<name>     a response_url (`fake.response_url("ask-1")`)
    GET  /socket              Socket Mode's WebSocket: sends "hello", records what the app
                              sends back (envelope acks), `socket_send()` pushes envelopes

Canned data: `fake.history[channel] = [message, ...]` (conversations.history,
newest first, `oldest`/`latest` exclusive, paginated by `limit` with
response_metadata.next_cursor) and `fake.channels` (users.conversations; a channel
with "is_private": true is listed only when `types` asks for private_channel).
Faults: `fake.fail(method, error)` answers ok=false; `fake.rate_limit(method)`
answers HTTP 429 with Retry-After; each is used up by one call. `with fake.holding_responses():`
keeps response_url posts waiting until the block ends; `with fake.holding_answers(method):`
records calls to a Web API method at once but keeps their answers waiting until the block ends
(a Slack that got the post and has not answered yet); `with fake.losing_requests(method):` keeps
them waiting unrecorded (but for a "<method> (lost)" call) and drops them unanswered when it ends
(a request that never reached Slack). conversations.replies answers with the thread's parent
(from `fake.history`, if there) and the messages chat.postMessage posted in that thread.

The second half builds what Slack sends to an app: slash-command, event and
block_actions bodies, and the v0 signature headers.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import socket
import struct
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode, urlsplit

T = TypeVar("T")

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEAM_ID = "T0001"
APP_ID = "A0001"
DEFAULT_TIMEOUT = 30.0  # how long a test waits for something that should happen soon


@dataclass
class Call:
    """One request the fake received: a Web API method, or "response_url"."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]

    @property
    def text(self) -> str:
        """Every visible text of a message: `text`, then each block's mrkdwn."""
        return "\n".join([str(self.params.get("text", "")), *iter_blocks_text(self.params.get("blocks") or [])])


@dataclass
class _Fault:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    """The loopback Slack; use as a context manager."""

    def __init__(self, *, bot_token: str = "xoxb-test", app_token: str = "xapp-test", bot_user_id: str = "UBOT") -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.bot_user_id = bot_user_id
        self.calls: list[Call] = []
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.channels: list[dict[str, Any]] = []
        self.socket_received: list[dict[str, Any]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._responses_open = threading.Event()
        self._responses_open.set()
        self._answers_open: dict[str, threading.Event] = {}
        self._ts = itertools.count(1)
        self._replies: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (channel, thread_ts) -> posted replies
        self._lost: dict[str, threading.Event] = {}
        self._changed = threading.Condition()
        self._socket: socket.socket | None = None
        self._socket_lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )

    # --- lifecycle and addresses -------------------------------------------

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._socket_lock:
            if self._socket is not None:
                with contextlib.suppress(OSError):  # the client may have hung up first (ENOTCONN)
                    self._socket.shutdown(socket.SHUT_RDWR)
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        return self.url + "api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}response/{name}"

    # --- faults --------------------------------------------------------------

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer {"ok": false, "error": error}."""
        for _ in range(times):
            self._faults.setdefault(method, deque()).append(_Fault(200, {"ok": False, "error": error}))

    def rate_limit(self, method: str, retry_after: int = 0, times: int = 1) -> None:
        """The next `times` calls of `method` answer HTTP 429 with Retry-After."""
        for _ in range(times):
            self._faults.setdefault(method, deque()).append(
                _Fault(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
            )

    @contextlib.contextmanager
    def holding_responses(self) -> Iterator[None]:
        """Posts to response_urls wait (unanswered, unrecorded) until the block ends: a slow Slack."""
        self._responses_open.clear()
        try:
            yield
        finally:
            self._responses_open.set()

    def holding_answers(self, method: str) -> contextlib.AbstractContextManager[None]:
        """Calls to `method` are recorded at once, answered only when the block ends."""
        return _gate(self._answers_open, method)

    def losing_requests(self, method: str) -> contextlib.AbstractContextManager[None]:
        """Calls to `method` never reach Slack: each waits, recorded only as "<method> (lost)", and is
        dropped unanswered (its connection closed) when the block ends."""
        return _gate(self._lost, method)

    # --- what was called -------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._changed:
            return [c for c in self.calls if c.method == method]

    def responses(self, name: str | None = None) -> list[Call]:
        """Posts to response_urls (to one of them when `name` is given)."""
        return [c for c in self.calls_to("response_url") if name is None or c.path.endswith(f"/response/{name}")]

    def wait_for(self, check: Callable[[], T | None], timeout: float = DEFAULT_TIMEOUT) -> T:
        """Wait until `check()` returns something truthy (re-checked on every call the fake gets)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := check()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; calls so far: {[c.method for c in self.calls]}")
                self._changed.wait(left)
        return result

    def wait_calls(self, method: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[Call]:
        return self.wait_for(lambda: _at_least(self.calls_to(method), count), timeout)

    def wait_responses(self, name: str | None = None, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[Call]:
        return self.wait_for(lambda: _at_least(self.responses(name), count), timeout)

    def _record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    # --- Socket Mode -------------------------------------------------------------

    def socket_send(self, envelope: dict[str, Any]) -> None:
        """Push an envelope to the connected Socket Mode client."""
        with self._socket_lock:
            if self._socket is None:
                raise AssertionError("no Socket Mode client is connected")
            self._socket.sendall(_ws_frame(0x1, json.dumps(envelope).encode()))

    def wait_socket_message(self, envelope_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        return self.wait_for(
            lambda: next((m for m in self.socket_received if m.get("envelope_id") == envelope_id), None), timeout
        )

    # --- the Web API ---------------------------------------------------------------

    def _answer(self, method: str, params: dict[str, Any], token: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        faults = self._faults.get(method)
        if faults:
            fault = faults.popleft()
            return fault.status, fault.body, fault.headers
        return 200, self._method(method, params), {}

    def _method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "kb-bot",
                    "team_id": TEAM_ID, "user_id": self.bot_user_id, "bot_id": "BBOT", "is_enterprise_install": False}
        if method in ("chat.postMessage", "chat.postEphemeral"):
            ts = f"1700000000.{next(self._ts):06d}"
            message = {"type": "message", "user": self.bot_user_id, "bot_id": "BBOT", "ts": ts,
                       **{k: params[k] for k in ("text", "blocks", "thread_ts") if k in params}}
            key = "message_ts" if method == "chat.postEphemeral" else "ts"
            if method == "chat.postMessage" and "thread_ts" in params:
                self._replies.setdefault((str(params.get("channel")), str(params["thread_ts"])), []).append(message)
            return {"ok": True, "channel": params.get("channel"), key: ts, "message": message}
        if method == "chat.update":
            return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts"), "text": params.get("text")}
        if method == "chat.getPermalink":
            channel, ts = params.get("channel"), str(params.get("message_ts", ""))
            return {"ok": True, "channel": channel,
                    "permalink": f"https://fake.slack.com/archives/{channel}/p{ts.replace('.', '')}"}
        if method in ("reactions.add", "reactions.remove"):
            return {"ok": True}
        if method == "conversations.history":
            messages = sorted(self.history.get(str(params.get("channel")), []), key=lambda m: float(m["ts"]), reverse=True)
            oldest, latest = float(params.get("oldest") or 0), float(params.get("latest") or "inf")
            messages = [m for m in messages if oldest < float(m["ts"]) < latest]
            return self._page("messages", messages, params)
        if method == "conversations.replies":
            channel, thread_ts = str(params.get("channel")), str(params.get("ts"))
            parent = [m for m in self.history.get(channel, []) if m["ts"] == thread_ts]
            return self._page("messages", parent + self._replies.get((channel, thread_ts), []), params)
        if method == "users.conversations":
            types = str(params.get("types") or "public_channel").split(",")
            kinds = {True: "private_channel", False: "public_channel"}
            return self._page("channels", [c for c in self.channels if kinds[bool(c.get("is_private"))] in types],
                              params)
        if method == "apps.connections.open":
            return {"ok": True, "url": self.url.replace("http://", "ws://") + "socket"}
        return {"ok": False, "error": "unknown_method"}

    @staticmethod
    def _page(key: str, items: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        end = start + limit
        more = end < len(items)
        return {"ok": True, key: items[start:end], "has_more": more,
                "response_metadata": {"next_cursor": str(end) if more else ""}}

    # --- HTTP plumbing ---------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urlsplit(self.path).path
                params = _parse_params(raw, self.headers.get("Content-Type", ""), urlsplit(self.path).query)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if path.startswith("/response/"):
                    fake._responses_open.wait()
                    fake._record(Call("response_url", path, params, headers))
                    self._send(200, b"ok", "text/plain")
                    return
                if not path.startswith("/api/"):
                    self._send(404, b"not found", "text/plain")
                    return
                method = path.removeprefix("/api/")
                if (lost := fake._lost.get(method)) is not None:
                    fake._record(Call(f"{method} (lost)", path, params, headers))
                    lost.wait()
                    self.close_connection = True
                    return
                token = headers.get("authorization", "").removeprefix("Bearer ") or str(params.get("token", ""))
                status, body, extra = fake._answer(method, params, token)
                fake._record(Call(method, path, params, headers))
                if (gate := fake._answers_open.get(method)) is not None:
                    gate.wait()
                self._send(status, json.dumps(body).encode(), "application/json", extra)

            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/socket" or self.headers.get("Upgrade", "").lower() != "websocket":
                    self._send(404, b"not found", "text/plain")
                    return
                accept = base64.b64encode(hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest())
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept.decode())
                self.end_headers()
                self.wfile.flush()
                fake._serve_socket(self.connection, self.rfile)
                self.close_connection = True

            def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _serve_socket(self, sock: socket.socket, rfile: Any) -> None:
        """One Socket Mode connection: hello, then answer pings and record text frames."""
        with self._socket_lock:
            self._socket = sock
            sock.sendall(_ws_frame(0x1, json.dumps({"type": "hello", "num_connections": 1}).encode()))
        self._record(Call("socket.connected", "/socket", {}, {}))
        try:
            while (frame := _read_ws_frame(rfile)) is not None:
                opcode, data = frame
                if opcode == 0x8:  # close
                    break
                if opcode == 0x9:  # ping
                    with self._socket_lock:
                        sock.sendall(_ws_frame(0xA, data))
                elif opcode == 0x1:
                    with self._changed:
                        self.socket_received.append(json.loads(data))
                        self._changed.notify_all()
        except OSError:
            pass
        finally:
            with self._socket_lock:
                self._socket = None


@contextlib.contextmanager
def _gate(gates: dict[str, threading.Event], method: str) -> Iterator[None]:
    """A closed gate for `method`'s calls in `gates` while the block runs, opened (and removed) when it ends."""
    gate = gates[method] = threading.Event()
    try:
        yield
    finally:
        gate.set()
        del gates[method]


def _at_least(calls: list[Call], count: int) -> list[Call] | None:
    return calls if len(calls) >= count else None


def _parse_params(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
    params: dict[str, Any] = dict(parse_qsl(query))
    if "json" in content_type:
        params.update(json.loads(raw or b"{}"))
    elif raw:
        params.update(parse_qsl(raw.decode()))
    for key in ("blocks", "attachments"):  # form-encoded calls send these as JSON strings
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame (servers never mask)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def _read_ws_frame(rfile: Any) -> tuple[int, bytes] | None:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, size = head[0] & 0x0F, head[1] & 0x7F
    if size == 126:
        size = struct.unpack("!H", rfile.read(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", rfile.read(8))[0]
    mask = rfile.read(4) if head[1] & 0x80 else b""
    data = rfile.read(size)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return opcode, data


# --- what Slack sends to the app --------------------------------------------------------


def signature_headers(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """X-Slack-Request-Timestamp and X-Slack-Signature: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def command_payload(text: str, *, response_url: str, command: str = "/ask", user_id: str = "U123",
                    channel_id: str = "C0001") -> dict[str, str]:
    """A slash command's fields, as Slack posts them (form-encoded over HTTP, JSON in Socket Mode)."""
    return {
        "token": "deprecated-verification-token", "team_id": TEAM_ID, "team_domain": "fake",
        "channel_id": channel_id, "channel_name": "general", "user_id": user_id, "user_name": "someone",
        "command": command, "text": text, "api_app_id": APP_ID, "is_enterprise_install": "false",
        "response_url": response_url, "trigger_id": "1.2.3",
    }


def event_envelope(event: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    """An Events API callback around `event`."""
    return {
        "token": "deprecated-verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID,
        "event": event, "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
    }


def share_click_payload(value: str, *, response_url: str, user_id: str = "U123", channel_id: str = "C0001",
                        action_id: str = "share_answer") -> dict[str, Any]:
    """A block_actions payload: a button clicked on an ephemeral message."""
    return {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user_id, "username": "someone", "team_id": TEAM_ID}, "api_app_id": APP_ID,
        "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel_id,
                      "is_ephemeral": True},
        "trigger_id": "1.2.3", "channel": {"id": channel_id, "name": "general"},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": value,
                     "text": {"type": "plain_text", "text": "Share in channel"}, "action_ts": "1700000001.0"}],
    }


@dataclass
class Reply:
    status: int
    body: str
    seconds: float


def post_signed(url: str, body: str, secret: str, *, content_type: str = "application/x-www-form-urlencoded",
                timestamp: int | None = None, headers: dict[str, str] | None = None) -> Reply:
    """POST `body` to the app as Slack would, signed with `secret`; time how long the answer took."""
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": content_type, **signature_headers(secret, body, timestamp), **(headers or {}),
    })
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=DEFAULT_TIMEOUT) as response:
            return Reply(response.status, response.read().decode(), time.monotonic() - started)
    except HTTPError as exc:
        return Reply(exc.code, exc.read().decode(), time.monotonic() - started)


def form(fields: dict[str, str]) -> str:
    return urlencode(fields)


def interaction_form(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})


def iter_blocks_text(blocks: list[dict[str, Any]]) -> Iterator[str]:
    """The mrkdwn text of each section and context element."""
    for block in blocks:
        if isinstance(block.get("text"), dict):
            yield block["text"]["text"]
        for element in block.get("elements") or []:
            if element.get("type") == "mrkdwn":
                yield element["text"]
