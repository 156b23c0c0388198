#!/usr/bin/env python3
"""Benchmark 5: serving /ask over HTTP under concurrent load.

    .venv/bin/python benchmarks/serving.py [--clients 20] [--seconds 30] [--db PATH]

Indexes the sample knowledge folder into a temp database (or uses `--db`, which
is only read, apart from the bot's own state), starts `kb-bot serve` as a
subprocess in HTTP mode on a free loopback port, with its Slack Web API and
every response_url pointed at a loopback fake Slack (tests/slack_fake.py).

Each client thread is one user asking back to back: it posts a signed
`/ask <question>` (questions from tests/data/golden.jsonl), waits for the ack,
then for the answer on its response_url, then asks again, for `--seconds`.
Measured: ack latency (the HTTP response), answer latency (request sent → the
answer received by the fake), requests sent / acked / answered, errors, and the
server's memory (VmRSS sampled every 0.2 s, VmHWM at the end).
Targets: ack p99 < 100 ms, every request answered, RSS ≤ 400 MB.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import KNOWLEDGE, percentile, print_table  # noqa: E402
from bot.embeddings import make_embedder  # noqa: E402
from bot.indexer import index_folder  # noqa: E402
from bot.settings import ENV_NAMES, load_settings  # noqa: E402
from bot.store import open_store  # noqa: E402
from tests.slack_fake import Call, FakeSlack, command_payload, form, post_signed  # noqa: E402

BOT_TOKEN = "xoxb-bench"
SECRET = "bench-signing-secret"
ANSWER_TIMEOUT = 60.0  # seconds a client waits for one answer before counting it missing
START_TIMEOUT = 60.0


class TimedSlack(FakeSlack):
    """The loopback Slack, noting when each response_url first received a post."""

    def __init__(self) -> None:
        super().__init__(bot_token=BOT_TOKEN)
        self.answered: dict[str, tuple[float, Call]] = {}
        self._arrived: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def expect(self, name: str) -> threading.Event:
        with self._lock:
            return self._arrived.setdefault(name, threading.Event())

    def _record(self, call: Call) -> None:
        if call.method == "response_url":
            name = call.path.rsplit("/", 1)[-1]
            with self._lock:
                self.answered.setdefault(name, (time.monotonic(), call))
            self.expect(name).set()
        super()._record(call)


@dataclass
class Sent:
    name: str
    at: float
    ack_ms: float | None = None  # None: no 200 ack
    error: str = ""


@dataclass
class Load:
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: Sent) -> None:
        with self.lock:
            self.sent.append(sent)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_db(db: Path) -> None:
    settings = load_settings(environ={}, env_file=None, knowledge_dir=KNOWLEDGE, db_path=db)
    with open_store(db) as store:
        report = index_folder(store, make_embedder(settings), settings)
    print(f"indexed {KNOWLEDGE}: {report.chunks} chunks in {report.seconds:.1f} s")


def start_server(db: Path, port: int, slack: FakeSlack, workdir: Path) -> subprocess.Popen[bytes]:
    """`kb-bot serve` with only the settings given here (no .env, none of the caller's KB_/SLACK_ variables)."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.api_url,
               KB_DB=str(db), KB_KNOWLEDGE_DIR=str(KNOWLEDGE), PORT=str(port), LOG_LEVEL="warning")
    command = [str(ROOT / ".venv" / "bin" / "kb-bot"), "--env-file", str(workdir / "none.env"), "serve"]
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kb-bot serve exited {process.returncode}:\n{(workdir / 'serve.log').read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"kb-bot serve did not answer /healthz within {START_TIMEOUT:.0f} s")


def memory_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def sample_rss(pid: int, stop: threading.Event, samples: list[int]) -> None:
    while not stop.wait(0.2):
        samples.append(memory_kb(pid, "VmRSS"))


def client(url: str, slack: TimedSlack, questions: list[str], seed: int, until: float,
           names: itertools.count[int], load: Load) -> None:
    """One user: ask, wait for the ack and the answer, ask again, until `until`."""
    rng = random.Random(seed)
    while time.monotonic() < until:
        name = f"q{next(names)}"
        arrived = slack.expect(name)
        body = form(command_payload(rng.choice(questions), response_url=slack.response_url(name)))
        sent = Sent(name, time.monotonic())
        load.add(sent)
        try:
            reply = post_signed(url, body, SECRET)
        except OSError as exc:
            sent.error = f"POST failed: {type(exc).__name__}"
            continue
        if reply.status != 200:
            sent.error = f"ack HTTP {reply.status}"
            continue
        sent.ack_ms = reply.seconds * 1000
        arrived.wait(ANSWER_TIMEOUT)


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p):.1f}" if values else "–"


def report(load: Load, slack: TimedSlack, clients: int, seconds: float, rss: list[int], hwm_kb: int) -> None:
    acks = [s.ack_ms for s in load.sent if s.ack_ms is not None]
    answers = {s.name: (slack.answered[s.name][0] - s.at) * 1000 for s in load.sent if s.name in slack.answered}
    bad = [s.name for s in load.sent if s.name in slack.answered
           and not str(slack.answered[s.name][1].params.get("text", "")).startswith("Answer to:")]
    missing = [s.name for s in load.sent if s.ack_ms is not None and s.name not in slack.answered]
    errors = [s.error for s in load.sent if s.error]
    latencies = list(answers.values())
    rows: list[list[object]] = [
        ["requests sent / acked / answered", f"{len(load.sent)} / {len(acks)} / {len(answers)}"],
        ["throughput (answers/s)", f"{len(answers) / seconds:.1f}"],
        ["ack latency p50 / p99 / max (ms)", f"{ms(acks, 50)} / {ms(acks, 99)} / {max(acks, default=0):.1f}"],
        ["answer latency p50 / p99 / max (ms)",
         f"{ms(latencies, 50)} / {ms(latencies, 99)} / {max(latencies, default=0):.1f}"],
        ["acked but not answered", f"{len(missing)} {missing[:5] if missing else ''}".strip()],
        ["errors (failed POSTs, non-200 acks, answers that are not answers)",
         f"{len(errors) + len(bad)} {sorted(set(errors))[:3] if errors else ''}".strip()],
        ["server RSS idle / median / peak sampled (MB)",
         f"{rss[0] / 1024:.0f} / {statistics.median(rss) / 1024:.0f} / {max(rss) / 1024:.0f}"],
        ["server VmHWM at end (MB)", f"{hwm_kb / 1024:.0f}"],
    ]
    print_table(f"Serving /ask: {clients} clients asking back to back for {seconds:.0f} s (2 cores)",
                ["measure", "value"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--db", type=Path, help="an existing index to serve (default: the sample folder, indexed now)")
    args = parser.parse_args()

    questions = [json.loads(line)["q"] for line in (ROOT / "tests" / "data" / "golden.jsonl").read_text().splitlines()
                 if line.strip()]
    with tempfile.TemporaryDirectory(prefix="kb-bench-serving-") as tmp, TimedSlack() as slack:
        workdir = Path(tmp)
        db = args.db.resolve() if args.db else workdir / "kb.sqlite3"
        if not args.db:
            build_db(db)
        port = free_port()
        server = start_server(db, port, slack, workdir)
        try:
            rss = [memory_kb(server.pid, "VmRSS")]
            print(f"kb-bot serve pid {server.pid} on port {port}, RSS {rss[0] / 1024:.0f} MB; "
                  f"{args.clients} clients for {args.seconds:.0f} s", flush=True)
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(server.pid, stop, rss), daemon=True)
            sampler.start()
            load, names = Load(), itertools.count(1)
            url = f"http://127.0.0.1:{port}/slack/events"
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(url, slack, questions, seed, until, names, load))
                       for seed in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            stop.set()
            sampler.join()
            hwm = memory_kb(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(30)
        report(load, slack, args.clients, args.seconds, rss, hwm)
        problems = [line for line in (workdir / "serve.log").read_text().splitlines() if "level=" in line]
        print(f"\nserver log: {len(problems)} warning/error lines" + "".join(f"\n  {p}" for p in problems[:5]))


if __name__ == "__main__":
    main()
