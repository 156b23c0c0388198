"""A loopback OpenAI-compatible `/v1/embeddings` server with fault injection.

Speaks OpenAI's wire format closely enough for the official `openai` client:

    POST /v1/embeddings  {"model", "input": str | [str, ...], "encoding_format", "dimensions"?}
    -> {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...]}],
        "model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}

Vectors are deterministic (seeded by a hash of model, dimension and text) and
unit length, so a test can predict every row with `vector_for`. Like OpenAI it
rejects more than 2,048 inputs, unknown models (404 `model_not_found`) and a
wrong key (401). Faults queued with `queue_*` answer the next requests, one
fault per request, in order; then normal service resumes. `latency` delays every
answer (a remote endpoint's round trip); `max_in_flight` says how many requests
were ever answered at once; a request with an input containing one of
`failing_words` always fails with 500, however often it is retried.

    with OpenAIFake(api_key="sk-test") as fake:
        fake.queue_error(429, headers={"Retry-After": "0"})
        client = OpenAIEmbedder(base_url=fake.base_url, api_key="sk-test", model=fake.model)
        ...
        assert fake.request_count == 2
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MAX_INPUTS = 2048
DEFAULT_MODEL = "text-embedding-3-small"


def vector_for(text: str, model: str = DEFAULT_MODEL, dim: int = 384) -> np.ndarray:
    """The unit-length float32 vector the fake returns for `text` under `model`."""
    seed = int.from_bytes(hashlib.sha256(f"{model}\x00{dim}\x00{text}".encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw bytes when the body was not JSON

    @property
    def inputs(self) -> list[str]:
        if not isinstance(self.body, dict):
            return []
        value = self.body.get("input")
        return [value] if isinstance(value, str) else list(value or [])


@dataclass
class Fault:
    """How to answer one request instead of (or on top of) normal service.

    `status`/`body`/`headers`: a raw answer (body bytes sent as they are).
    `transform`: let the fake build its normal answer, then rewrite the payload.
    `delay`: seconds to wait before answering (interrupted by `stop()`).
    """

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    delay: float = 0.0


class OpenAIFake:
    """Start with `start()` (or `with`), point a client at `base_url`, `stop()` after."""

    def __init__(
        self,
        *,
        models: Iterable[str] = (DEFAULT_MODEL,),
        api_key: str | None = None,
        dim: int = 384,
        latency: float = 0.0,
    ) -> None:
        self.models = set(models)
        self.api_key = api_key
        self.dim = dim
        self.latency = latency
        self.failing_words: set[str] = set()
        self.max_in_flight = 0
        self._in_flight = 0
        self.requests: list[Recorded] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> OpenAIFake:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> OpenAIFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        """The served model name (the first, when several are served)."""
        return sorted(self.models)[0]

    # --- what happened ------------------------------------------------------------

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def inputs_seen(self) -> list[str]:
        """Every input text of every request, in arrival order."""
        with self._lock:
            return [text for r in self.requests for text in r.inputs]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.max_in_flight = 0

    # --- faults ---------------------------------------------------------------------

    def queue(self, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def queue_error(
        self,
        status: int,
        message: str = "fault injected by the test",
        *,
        type_: str = "server_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """An OpenAI-style error body: {"error": {"message", "type", "param", "code"}}."""
        body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
        self.queue(Fault(status=status, body=body.encode(), headers=dict(headers or {})), times)

    def queue_raw(self, body: bytes, *, status: int = 200, content_type: str = "application/json", times: int = 1) -> None:
        """Send `body` as it is (e.g. not JSON at all)."""
        self.queue(Fault(status=status, body=body, headers={"Content-Type": content_type}), times)

    def queue_transform(self, transform: Callable[[dict[str, Any]], dict[str, Any]], times: int = 1) -> None:
        """Build the normal answer, then rewrite it (drop a row, cut a vector, ...)."""
        self.queue(Fault(transform=transform), times)

    def queue_delay(self, seconds: float, times: int = 1) -> None:
        """Answer normally, but only after `seconds` (to make a client time out)."""
        self.queue(Fault(delay=seconds), times)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # --- normal service ----------------------------------------------------------------

    def answer(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        """What OpenAI would answer (status, JSON payload)."""
        if self.api_key is not None:
            sent = headers.get("authorization", "")
            if sent != f"Bearer {self.api_key}":
                given = sent.removeprefix("Bearer ")
                # Deliberately echoes the key it got, like a careless self-hosted server.
                return 401, _error(f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key")
        if not isinstance(body, dict):
            return 400, _error("We could not parse the JSON body of your request.", "invalid_request_error")
        model = body.get("model")
        if model not in self.models:
            return 404, _error(
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return 400, _error("'$.input' is invalid.", "invalid_request_error")
        if len(texts) > MAX_INPUTS:
            return 400, _error(
                f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request, got {len(texts)}.",
                "invalid_request_error",
            )
        dim = body.get("dimensions") or self.dim
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = vector_for(text, model, dim)
            value: Any = base64.b64encode(vector.tobytes()).decode() if b64 else [float(x) for x in vector]
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(t.split()) + 1 for t in texts)
        return 200, {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIFake
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            models = [{"id": m, "object": "model", "owned_by": "fake"} for m in sorted(self.owner.models)]
            self._send(200, json.dumps({"object": "list", "data": models}).encode())
        else:
            self._send(404, json.dumps(_error("unknown route", "invalid_request_error")).encode())

    def do_POST(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        recorded = Recorded("POST", self.path, headers, body)
        with owner._lock:
            owner.requests.append(recorded)
            owner._in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner._in_flight)
        try:
            if owner.latency and owner._stopping.wait(owner.latency):
                return  # stopping: drop the connection
            self._answer_post(headers, body, recorded)
        finally:
            with owner._lock:
                owner._in_flight -= 1

    def _answer_post(self, headers: dict[str, str], body: Any, recorded: Recorded) -> None:
        owner = self.owner
        if self.path.rstrip("/") != "/v1/embeddings":
            self._send(404, json.dumps(_error("unknown route", "invalid_request_error")).encode())
            return
        if any(isinstance(text, str) and word in text for text in recorded.inputs for word in owner.failing_words):
            self._send(500, json.dumps(_error("this batch always fails (failing_words)", "server_error")).encode())
            return
        fault = owner._next_fault()
        if fault is not None and fault.delay and owner._stopping.wait(fault.delay):
            return  # stopping: drop the connection
        if fault is not None and fault.body is not None:
            self._send(fault.status, fault.body, fault.headers)
            return
        status, payload = owner.answer(headers, body)
        if fault is not None and fault.transform is not None and status == 200:
            payload = fault.transform(payload)
        self._send(status, json.dumps(payload).encode(), fault.headers if fault else None)
