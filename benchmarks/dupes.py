#!/usr/bin/env python3
"""Benchmark 4: duplicate scan.

    .venv/bin/python benchmarks/dupes.py [--full N] [--real N] [--repeats N] [--profile] [--seed N]

Times `bot.dupes.match.find_duplicates` — what `kb-bot dupes scan --dry-run`
runs, no Slack — on a real SQLite store in a temporary directory with the
bundled embedder, for:

1. 1,000 new (unscanned) messages against a window of 10,000 earlier ones;
2. 1,000 new against 100,000 earlier ones;
3. a first scan of `--full` (100,000) messages that are all new (after an
   import or a backfill); given less than 100,000, it also runs half that and
   extrapolates to 100,000 with a·n + b·n² through both, marked EXTRAPOLATED.

Messages are Slack-like and seeded: question and announcement templates with
slots filled from word lists, paraphrases, mentions, links, emoji, code and
short chatter (which the scan skips), in 8 channels, a quarter of them thread
replies, spread over DUP_WINDOW_DAYS; 2% of the new messages re-ask an earlier
question (same slots, any phrasing), and the table counts how many of those
the scan flags.

Vectors: embedding 100,000 texts takes ~8+ minutes on 2 cores, so the
embedding cache is prefilled for the window, keyed exactly as the scan looks
up (model id + `candidate_text`): real vectors from the bundled model for
`--real` distinct window texts (the ones new messages re-ask come from these),
seeded random unit vectors for the rest. The earlier messages are then prepared
(normalised, cache keys stored), as the Slack app does when they arrive. The
new messages of cases 1-2 are prepared by the scan itself with the real model:
"cold" is that first scan (embedding + the rest), "warm" the same scan again,
as when they were prepared on arrival (reading the window's vectors, and
comparing). Comparison cost does not depend on the vectors' values; the pairs
found do (random vectors match nothing).

Peak memory is the process's peak RSS above its RSS before the scan, sampled
every 5 ms. `--profile` (also automatic when case 2 warm misses the 5 s
target) prints the scan's stages timed one by one and a cProfile of one warm
case-2 scan. The whole run takes ~2 minutes on an idle 2-core machine, the
100,000 all-new scan ~40 s of it.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import io
import os
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table  # noqa: E402
from bot.dupes.match import (  # noqa: E402
    WINDOW_CHUNK,
    Candidates,
    _top_earlier,
    _window,
    find_duplicates,
    judged_pair,
)
from bot.dupes.normalise import candidate_text  # noqa: E402
from bot.dupes.prepare import preparation_label, prepare_messages  # noqa: E402
from bot.dupes.rules import DAY, DupRules  # noqa: E402
from bot.embeddings import Embedder, LocalEmbedder  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.slack.format import from_slack  # noqa: E402
from bot.store import Message, Store, open_store  # noqa: E402

TARGET_S = 5.0
END = 1_767_225_600.0  # 2026-01-01 00:00 UTC: the newest message, fixed so runs are identical
NEW_SPAN = DAY  # new messages: the last day (a scan after a day of downtime, or a busy day)

# --- Slack-like messages --------------------------------------------------------------

CHANNELS = ["C01HELPDESK", "C02ENGINEER", "C03INCIDENT", "C04PEOPLEOP", "C05PLATFORM", "C06DATAENG",
            "C07RANDOMCH", "C08SALESENG"]
CHANNEL_WEIGHTS = [30, 25, 8, 10, 12, 8, 4, 3]

W = {
    "comp": ["Kafka", "the S3 buckets", "Terraform", "billing-api", "Okta", "Postgres", "Redis", "the CI runners",
             "Elasticsearch", "the data warehouse", "Airflow", "the iOS build", "the Android build", "web checkout",
             "Grafana", "Datadog", "PagerDuty", "the VPN", "GitHub Actions", "Snowflake", "dbt", "the ML platform",
             "LaunchDarkly", "the CDN", "nginx", "the k8s cluster", "the helm charts", "ArgoCD", "Vault",
             "the API gateway", "Stripe", "the invoicing job", "the Salesforce sync", "Zendesk", "the search cluster",
             "the recommendations model", "the nightly ETL", "Jenkins", "Sentry", "the laptop fleet",
             "the office network", "Google Workspace", "Jira", "Confluence", "the staging cluster", "auth-service",
             "the notifications service", "RabbitMQ", "the mobile backend", "BigQuery", "Looker", "the payroll export"],
    "aspect": ["consumer lag", "permissions", "rate limits", "dashboards", "alerts", "timeouts", "credentials",
               "costs", "retention policy", "migrations", "latency", "logs", "backups", "autoscaling", "disk usage",
               "certificates", "webhooks", "retries", "memory usage", "build times", "cache hit rate",
               "error budget", "access requests", "quotas", "schema changes", "nightly jobs", "flaky tests",
               "release process", "runbook", "SLA", "audit trail", "replicas", "connection pool", "DNS records",
               "cron schedule", "license count", "SSO setup", "feature toggles", "data exports", "version upgrade"],
    "fix": ["fix", "configure", "debug", "reset", "tune", "monitor", "turn off", "update", "migrate", "speed up",
            "clean up", "document", "test", "roll back", "automate", "get access to", "change"],
    "symptom": ["spikes", "5xx errors", "weird numbers", "slowness", "timeouts", "missing data", "duplicate events",
                "flapping", "high CPU", "a permissions error", "stale results", "OOM kills"],
    "env": ["staging", "prod", "dev", "qa", "the sandbox", "eu-west-1", "us-east-1"],
    "hr": ["expense reports", "PTO requests", "parental leave", "the 401k match", "health insurance",
           "the learning budget", "the home-office stipend", "relocation support", "the on-call bonus",
           "performance reviews", "travel bookings", "the referral bonus", "sick days", "company credit cards",
           "conference tickets", "the equipment policy"],
    "hr_act": ["submit", "get approval for", "find the policy for", "change", "ask about", "get reimbursed for",
               "cancel", "find the form for"],
    "when": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "yesterday", "this morning", "last week",
             "the last deploy", "the upgrade", "the holidays", "Q3 close"],
    "team": ["platform", "data", "security", "IT", "finance", "HR", "SRE", "mobile", "frontend", "payments",
             "growth", "infra", "support"],
    "device": ["laptop", "monitor", "headset", "dock", "work phone", "keyboard", "badge", "webcam"],
    "device_issue": ["charge", "connect to the wifi", "pair over bluetooth", "wake from sleep",
                     "show the second screen", "boot", "update", "get past the login screen"],
    "expense": ["a client dinner", "a taxi", "a hotel night", "a flight change", "a team lunch", "a book",
                "a software license", "a coworking day pass", "a visa fee"],
    "meeting": ["QBR", "demo", "kickoff", "renewal call", "security review", "pilot review"],
    "metric": ["churn", "MRR", "NPS", "signup", "activation", "support ticket", "uptime", "cloud spend",
               "conversion", "refund"],
    "room": ["a meeting room", "the big conference room", "a phone booth", "a desk", "the podcast room"],
    "customer": ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Enterprises",
                 "Soylent", "Tyrell", "Cyberdyne", "Vandelay", "Pied Piper"],
}

# Each group is one question in several phrasings; a re-ask keeps the group and slots, any phrasing.
QUESTIONS = [
    ["how do I {fix} the {aspect} on {comp}?", "any idea how to {fix} {comp} {aspect}?",
     "what's the right way to {fix} {aspect} for {comp}?"],
    ["is anyone else seeing {symptom} in {comp} {aspect}?", "{comp} {aspect} show {symptom} since {when}, "
     "known issue?", "seeing {symptom} around {aspect} in {comp} on {env}, is something going on?"],
    ["who owns the {aspect} for {comp}? {ticket} needs an owner", "which team looks after {comp} {aspect}? "
     "{ticket} has been sitting there for a week"],
    ["where are the docs for {comp} {aspect}?", "is there a runbook somewhere for {aspect} on {comp}?",
     "does anyone have a link to the {comp} {aspect} docs?"],
    ["why did the {aspect} of {comp} change {when}?", "did someone change {comp} {aspect} {when}? things look "
     "different"],
    ["can we raise the {aspect} for {comp} in {env}?", "who approves a change to {comp} {aspect} on {env}?"],
    ["how do I {hr_act} {hr}?", "where do I {hr_act} {hr}?", "what's the policy on {hr}? I need to {hr_act} it "
     "soon"],
    ["{customer} is asking about our {comp} {aspect}, who can answer?", "customer question from {customer}: "
     "how do we handle {aspect} in {comp}?"],
    ["is it safe to {fix} {comp} {aspect} on {env} today?", "any objection if I {fix} the {aspect} on {comp} "
     "in {env}?"],
    ["who is on call for {team} this week? need someone for {comp}", "what's the {team} on-call rotation? "
     "{comp} {aspect} need a look"],
    ["what's the ETA on the {comp} {aspect} fix? {customer} keeps asking", "any update on {ticket}? {customer} "
     "is waiting on the {comp} fix"],
    ["why did our {comp} bill jump last month? is it the {aspect}?", "{comp} costs doubled, could {aspect} be "
     "the reason?"],
    ["is there a dashboard that tracks {comp} {aspect}?", "where can I see {aspect} numbers for {comp}?"],
    ["what's the difference between {comp} and {comp2} for {aspect}?", "should I use {comp} or {comp2} if I "
     "care about {aspect}?"],
    ["we're moving from {comp} to {comp2}, does anyone have a plan for the {aspect}?", "migration from {comp} "
     "to {comp2}: who is handling {aspect}?"],
    ["can {comp} {aspect} be managed in Terraform?", "is {comp} {aspect} in code somewhere or clicked in the UI?"],
    ["my {device} won't {device_issue} after the update, any tips?", "anyone else's {device} refusing to "
     "{device_issue} since {when}?"],
    ["where can I book {room} for {when}?", "how do I reserve {room} on {when}?"],
    ["how do I expense {expense} for the {customer} trip?", "can I expense {expense}? it was for {customer}"],
    ["who has the slides from the {customer} {meeting}?", "are the notes from the {customer} {meeting} "
     "written up anywhere?"],
    ["what do we answer to {customer}'s security questionnaire about {aspect}?", "{customer} asks how {comp} "
     "handles {aspect}, do we have a standard answer?"],
    ["can I get a {team} review on my design doc for {comp} {aspect}?", "looking for someone from {team} to "
     "review the {comp} {aspect} proposal"],
    ["anyone know why the {comp} tests are failing on main? looks like {symptom}", "main is red: {comp} tests "
     "fail with {symptom}, is someone on it?"],
    ["where do I find last month's {metric} numbers?", "who keeps the {metric} report? need last month's "
     "figures for the {customer} {meeting}"],
]
STATEMENTS = [
    "deployed a change to {comp} {aspect} on {env} ({version}), shout if anything looks off",
    "heads up: {comp} maintenance {when} may affect {aspect}",
    "merged {pr}, which fixes the {aspect} problem in {comp}",
    "FYI the {team} team updated the {comp} {aspect} runbook: {link}",
    "I'm out {when}, {person} is covering {team} questions about {comp}",
    "postmortem for the {comp} incident ({aspect}) is up: {link}",
    "reminder: {hr} deadline is {when}",
    "rolled back {comp} on {env} to {version} after {symptom} in {aspect}",
    "{ticket} is done, {comp} {aspect} should be fine now",
    "we're seeing {symptom} on {comp} in {env}, looking into it",
]
CHATTER = ["thanks!", "lgtm", ":+1:", "on it", "standup in 5", "ty :pray:", "nice one :tada:", "will check",
           "brb", "done :white_check_mark:", "+1 same here", "looking", "fixed, thanks", "ok!", "haha",
           "<https://example.slack.com/archives/C01/p1>", ":eyes:", "merged", "same", "good morning :wave:"]
PREFIXES = ["", "", "", "", "hey team, ", "quick question: ", "{person} ", "sorry if this was asked before, ",
            "hi all :wave: ", "hey {person}, ", "Morning! "]
SUFFIXES = ["", "", "", "", " thanks!", " :pray:", " any help appreciated", " (asking for {person})",
            " see {link}", " :thinking_face:", " cc {person}"]


@dataclass(frozen=True)
class Spec:
    """What a message says, before decoration: a re-ask keeps the group and the slots."""

    group: int  # index into QUESTIONS, or -1 for a statement, -2 for chatter
    variant: int
    slots: tuple[tuple[str, str], ...]


def _slot(rng: random.Random, name: str) -> str:
    if name in W:
        return rng.choice(W[name])
    if name == "comp2":
        return rng.choice(W["comp"])
    if name == "ticket":
        return f"{rng.choice(['PROJ', 'OPS', 'SEC', 'DATA', 'BILL'])}-{rng.randint(100, 9999)}"
    if name == "pr":
        return f"PR #{rng.randint(100, 9999)}"
    if name == "version":
        return f"v{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
    if name == "person":
        return f"<@U{rng.randint(1, 400):05d}>"
    if name == "link":
        slug = rng.choice(["runbooks", "postmortems", "howto", "policies"]) + f"/{rng.randint(1, 999)}"
        return rng.choice([f"<https://wiki.example.com/{slug}|the wiki>", f"https://wiki.example.com/{slug}"])
    raise KeyError(name)


def _fill(rng: random.Random, template: str, slots: dict[str, str]) -> str:
    names = [part.split("}")[0] for part in template.split("{")[1:]]
    for name in names:
        if name not in slots:
            slots[name] = _slot(rng, name)
    return template.format(**slots)


def new_spec(rng: random.Random) -> Spec:
    kind = rng.random()
    if kind < 0.12:
        return Spec(-2, rng.randrange(len(CHATTER)), ())
    if kind < 0.30:
        group, variant, template = -1, 0, rng.choice(STATEMENTS)
    else:
        group = rng.randrange(len(QUESTIONS))
        variant = rng.randrange(len(QUESTIONS[group]))
        template = QUESTIONS[group][variant]
    slots: dict[str, str] = {}
    _fill(rng, template, slots)
    if group == -1:
        variant = STATEMENTS.index(template)
    return Spec(group, variant, tuple(sorted(slots.items())))


def render(rng: random.Random, spec: Spec) -> str:
    """The Slack text: the template with its slots, decorated (mentions, emoji, markup, links)."""
    if spec.group == -2:
        return CHATTER[spec.variant]
    template = STATEMENTS[spec.variant] if spec.group == -1 else QUESTIONS[spec.group][spec.variant]
    slots = dict(spec.slots)
    for name in ("person", "link"):  # who is mentioned and which link is pasted changes every time
        slots.pop(name, None)
    text = _fill(rng, template, slots)
    if rng.random() < 0.15:  # some people `code` or *bold* a word
        words = text.split()
        i = rng.randrange(len(words))
        words[i] = rng.choice(["`{}`", "*{}*", "_{}_"]).format(words[i])
        text = " ".join(words)
    if rng.random() < 0.2:
        text = text[0].upper() + text[1:]
    extra: dict[str, str] = {}
    return _fill(rng, rng.choice(PREFIXES), extra) + text + _fill(rng, rng.choice(SUFFIXES), extra)


def reask(rng: random.Random, spec: Spec) -> Spec:
    """The same question again, in any of its phrasings."""
    return Spec(spec.group, rng.randrange(len(QUESTIONS[spec.group])), spec.slots)


def timestamps(rng: random.Random, count: int, start: float, end: float) -> list[float]:
    """`count` sorted, distinct (to the microsecond) times in [start, end)."""
    out = sorted(round(rng.uniform(start, end), 6) for _ in range(count))
    for i in range(1, count):
        if out[i] <= out[i - 1]:
            out[i] = round(out[i - 1] + 1e-6, 6)
    return out


def as_messages(rng: random.Random, specs: list[Spec], times: list[float]) -> list[Message]:
    """Messages in posting order: weighted channels and authors, a quarter replies in a recent thread."""
    users = [f"U{i:05d}" for i in range(1, 401)]
    user_weights = [1 / i for i in range(1, 401)]
    recent: dict[str, list[str]] = {c: [] for c in CHANNELS}
    out = []
    channels = rng.choices(CHANNELS, CHANNEL_WEIGHTS, k=len(specs))
    authors = rng.choices(users, user_weights, k=len(specs))
    for spec, posted, channel, user in zip(specs, times, channels, authors):
        ts = f"{posted:.6f}"
        parents = recent[channel]
        thread_ts = rng.choice(parents[-30:]) if parents and rng.random() < 0.25 else None
        if thread_ts is None:
            parents.append(ts)
        out.append(Message(channel, ts, thread_ts, user, render(rng, spec), posted))
    return out


@dataclass
class Corpus:
    window: list[Message]  # 100,000 earlier messages over the 30 days before the new ones
    new: list[Message]  # 1,000 new messages over the last day
    real: dict[str, np.ndarray]  # candidate text -> real vector, for the sampled window texts
    reasks: set[tuple[str, str]]  # (channel, ts) of the new messages that re-ask an earlier question


def build_corpus(
    embedder: Embedder, rules: DupRules, window_size: int, new_size: int, real_count: int, seed: int
) -> Corpus:
    rng = random.Random(seed)
    first_new = END - NEW_SPAN
    specs = [new_spec(rng) for _ in range(window_size)]
    window = as_messages(rng, specs, timestamps(rng, window_size, first_new - rules.window_seconds,
                                                first_new))
    # real vectors for `real_count` distinct texts of the 10,000-message window (every 10th), so cases 1 and 2 share them
    small = range(0, window_size, max(1, window_size // 10_000))
    texts: dict[str, int] = {}
    for i in small:
        text = candidate_text(window[i].text, rules, from_slack)
        if text is not None and specs[i].group >= 0:
            texts.setdefault(text, i)
    sampled = rng.sample(sorted(texts), min(real_count, len(texts)))
    started = time.perf_counter()
    vectors = embedder.embed(sampled, truncate=True)
    print(f"embedded {len(sampled)} window texts with the real model in {time.perf_counter() - started:.1f} s")
    real = dict(zip(sampled, vectors))
    # the new messages: fresh ones, and 2% that re-ask a sampled (real-vector) window question
    targets = [specs[texts[t]] for t in sampled]
    new_specs = []
    reasked = set()
    for i in range(new_size):
        if rng.random() < 0.02:
            new_specs.append(reask(rng, rng.choice(targets)))
            reasked.add(i)
        else:
            new_specs.append(new_spec(rng))
    new = as_messages(rng, new_specs, timestamps(rng, new_size, first_new, END))
    return Corpus(window, new, real, {(new[i].channel, new[i].ts) for i in reasked})


# --- the store --------------------------------------------------------------------


def prefill(store: Store, embedder: Embedder, rules: DupRules, messages: list[Message],
            real: dict[str, np.ndarray], seed: int) -> tuple[int, int]:
    """Cache a vector for each distinct candidate text, as the scan keys it; (real, synthetic) counts."""
    texts = sorted({t for m in messages if (t := candidate_text(m.text, rules, from_slack)) is not None})
    synthetic = [t for t in texts if t not in real]
    noise = np.random.default_rng(seed).standard_normal((len(synthetic), embedder.dim), dtype=np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    known = [t for t in texts if t in real]
    for start in range(0, len(known), 5000):
        part = known[start : start + 5000]
        store.cache_vectors(embedder.model_id, part, np.vstack([real[t] for t in part]))
    for start in range(0, len(synthetic), 5000):
        store.cache_vectors(embedder.model_id, synthetic[start : start + 5000], noise[start : start + 5000])
    return len(known), len(synthetic)


def make_store(folder: Path, name: str, scanned: list[Message], new: list[Message]) -> Store:
    store = open_store(folder / f"{name}.db")
    store.messages.record_messages(scanned, scanned_at=END - NEW_SPAN)
    store.messages.record_messages(new)
    return store


# --- measuring --------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


try:
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _libc = None


class PeakRss:
    """Peak resident memory above the starting point, sampled every 5 ms in a thread."""

    def __enter__(self) -> PeakRss:
        gc.collect()
        if _libc is not None:
            _libc.malloc_trim(0)  # hand freed heap back first, so earlier cases do not hide this one's growth
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 1e6


@dataclass
class Run:
    seconds: float
    pool: int  # window messages worth judging (candidates), new ones included
    new: int  # unscanned messages examined
    judged: int  # of those, the ones worth judging: each is scored against the whole pool
    pairs: int
    reasks_found: int  # pairs whose later message is one of the planted re-asks
    peak_mb: float


def scan(store: Store, embedder: Embedder, rules: DupRules, reasks: Collection[tuple[str, str]] = ()) -> Run:
    sizes: list[tuple[int, int]] = []

    def counting(*args: object, **kwargs: object) -> object:
        sizes.append((len(args[0].rows), len(args[1])))  # type: ignore[attr-defined,arg-type]
        return top_earlier(*args, **kwargs)

    import bot.dupes.match as dup

    top_earlier = dup._top_earlier
    dup._top_earlier = counting  # only to count the rows; the scan itself is untouched
    try:
        with PeakRss() as mem:
            started = time.perf_counter()
            findings = find_duplicates(store, embedder, rules, to_plain=from_slack)
            seconds = time.perf_counter() - started
    finally:
        dup._top_earlier = top_earlier
    pool, judged = sizes[0] if sizes else (0, 0)
    found = sum(1 for p in findings.pairs if (p.later.channel, p.later.ts) in reasks)
    return Run(seconds, pool, len(findings.examined), judged, len(findings.pairs), found, mem.mb)


def stages(store: Store, embedder: Embedder, rules: DupRules) -> list[tuple[str, float]]:
    """find_duplicates step by step (the same calls, timed apart), the comparison split further."""
    out: list[tuple[str, float]] = []

    def step(name: str, fn: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = fn()
        out.append((name, time.perf_counter() - started))
        return result

    new = step("unscanned_messages (SQL)", lambda: store.messages.unscanned_messages())
    start, end = new[0].posted_at - rules.window_seconds, new[-1].posted_at
    label = preparation_label(embedder, rules)
    todo = step("unprepared_messages (SQL: none left after the first scan)",
                lambda: store.messages.unprepared_messages(start, end, label))
    step("prepare_messages on them", lambda: prepare_messages(store, embedder, rules, todo, to_plain=from_slack))
    window = step("prepared_window + _window (SQL: messages joined with their cached vectors, into one matrix)",
                  lambda: _window(store, embedder, rules, store.messages.prepared_window(start, end, label),
                                  from_slack))
    flagged = step("flagged_laters (SQL)", lambda: store.messages.flagged_laters())
    is_new = {(m.channel, m.ts) for m in new}
    judge = [i for i, r in enumerate(window.rows) if (r.channel, r.ts) in is_new and (r.channel, r.ts) not in flagged]
    matches = step("_top_earlier (masks + matmul + the k best above DUP_THRESHOLD)",
                   lambda: list(_top_earlier(window, judge, rules)))
    by_key = {(m.channel, m.ts): m for m in new}

    def candidates() -> list[Candidates]:
        return [Candidates(by_key[(window.rows[i].channel, window.rows[i].ts)],
                           [(m, score) for j, score in row_matches
                            if (m := store.messages.get_message(window.rows[j].channel, window.rows[j].ts)) is not None])
                for i, row_matches in matches]

    found = step("get_message for the candidates (SQL)", candidates)
    pairs = sum(len(c.earlier) for c in found)
    step(f"the judge on the {pairs} candidate pairs", lambda: [judged_pair(c, from_slack) for c in found])
    vectors = window.vectors

    def product() -> None:  # inside _top_earlier: the products alone, every judged row by every column
        questions = vectors[np.array(judge)].astype(np.float32)
        for lo in range(0, len(vectors), WINDOW_CHUNK):
            _ = questions @ vectors[lo : lo + WINDOW_CHUNK].astype(np.float32).T

    step("  of it: the products alone (every judged row × every column)", product)
    return out


def profile(store: Store, embedder: Embedder, rules: DupRules, top: int = 14) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    find_duplicates(store, embedder, rules, to_plain=from_slack)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--full", type=int, default=100_000,
                        help="messages in case 3 (all new); below 100,000 also half that, and extrapolate; 0 skips it")
    parser.add_argument("--real", type=int, default=2000, help="window texts given real vectors")
    parser.add_argument("--repeats", type=int, default=3, help="warm scans per 1k case (median reported)")
    parser.add_argument("--profile", action="store_true", help="stage timings and cProfile of case 2 warm")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()

    rules = DupRules.from_settings(Settings())
    embedder = LocalEmbedder.bundled()
    print(f"load average at start (1/5/15 min): {load()}; {os.cpu_count()} cores")
    started = time.perf_counter()
    corpus = build_corpus(embedder, rules, 100_000, 1000, args.real, args.seed)
    print(f"generated {len(corpus.window) + len(corpus.new)} messages in {time.perf_counter() - started:.1f} s "
          f"({len(corpus.reasks)} new messages re-ask an earlier question)")

    rows = []
    notes = []

    def row(case: str, label: str, run: Run, seconds: float, reasks: str = "–") -> list[object]:
        return [case, label, f"{seconds:.2f}", f"{run.new:,}", f"{run.judged:,} × {run.pool:,}", run.pairs, reasks,
                f"{run.peak_mb:.0f}", "yes" if seconds <= TARGET_S else "no"]

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, window in (("10k", corpus.window[::10]), ("100k", corpus.window)):
            store = make_store(folder, name, window, corpus.new)
            real, synthetic = prefill(store, embedder, rules, window, corpus.real, args.seed)
            started = time.perf_counter()
            prepare_messages(store, embedder, rules, window, to_plain=from_slack)  # as they arrived, or one earlier scan
            prepared = time.perf_counter() - started
            new_texts = {t for m in corpus.new if (t := candidate_text(m.text, rules, from_slack)) is not None}
            uncached = len(new_texts) - len(store.cached_vectors(embedder.model_id, list(new_texts)))
            cold = scan(store, embedder, rules, corpus.reasks)
            warm = [scan(store, embedder, rules, corpus.reasks) for _ in range(args.repeats)]
            median = statistics.median(r.seconds for r in warm)
            case = f"1,000 new vs {len(window):,} earlier"
            found = f"{cold.reasks_found}/{len(corpus.reasks)}"
            rows.append(row(case, "cold: scan embeds them (real model)", cold, cold.seconds, found))
            rows.append(row(case, f"warm: cached (median of {args.repeats})", warm[0], median, found))
            notes.append(f"{len(window):,} earlier: cached vectors {real:,} real, {synthetic:,} synthetic, prepared "
                         f"once before the scans in {prepared:.1f} s (normalised, cache keys stored); the cold scan "
                         f"embedded {uncached:,} new texts with the real model: {cold.seconds - median:.1f} s, "
                         f"{(cold.seconds - median) / max(uncached, 1) * 1000:.1f} ms each (cold - warm)")
            if name == "100k" and (args.profile or median > TARGET_S):
                print("\n## Where a warm 1,000-new vs 100,000-earlier scan spends its time (stages run one by one)\n")
                for stage, seconds in stages(store, embedder, rules):
                    print(f"- {stage}: {seconds:.2f} s")
                print("\ncProfile of one more warm scan (tottime; numpy's `@` and elementwise operators count as "
                      "_top_earlier's own time):\n")
                print(profile(store, embedder, rules))
            store.close()
            gc.collect()

        sizes = [] if args.full <= 0 else [args.full] if args.full >= 100_000 else [args.full // 2, args.full]
        measured = []
        for size in sizes:
            full = corpus.window[-size:]
            store = make_store(folder, f"full{size}", [], full)
            real, synthetic = prefill(store, embedder, rules, full, corpus.real, args.seed)
            run = scan(store, embedder, rules)
            measured.append((size, run.seconds))
            rows.append(row(f"{size:,} all new (first scan)", "warm: all cached", run, run.seconds))
            notes.append(f"{size:,} all new: cached vectors {real:,} real, {synthetic:,} synthetic (embedding them "
                         "cold would add ~100,000 × the per-text cost above)" if size >= 100_000 else
                         f"{size:,} all new: cached vectors {real:,} real, {synthetic:,} synthetic")
            store.close()
            gc.collect()
        if len(measured) == 2:  # t = a·n + b·n² through both points
            (n1, t1), (n2, t2) = measured
            b = (t2 / n2 - t1 / n1) / (n2 - n1)
            a = t1 / n1 - b * n1
            estimate = a * 100_000 + b * 100_000**2
            rows.append(["100,000 all new (EXTRAPOLATED)", f"a·n + b·n² fit to the {n1:,} and {n2:,} rows",
                         f"~{estimate:.0f}", "100,000", "–", "–", "–", "–", "no" if estimate > TARGET_S else "yes"])

    print_table(
        f"Duplicate scan: find_duplicates (what `kb-bot dupes scan --dry-run` runs), {embedder.model_id}, "
        f"{os.cpu_count()} cores, load average {load()}",
        ["case", "vectors of the new", "wall s", "new", "judged × pool", "pairs", "re-asks flagged", "peak RSS Δ MB",
         f"≤ {TARGET_S:.0f} s"],
        rows,
    )
    print()
    for note in notes:
        print(f"- {note}")
    print("- real vectors: the bundled model's, for the sampled earlier texts and every new text of the 1,000-new "
          "cases; synthetic: seeded random unit vectors (they match nothing; comparing costs the same)")
    print("- pool: messages worth judging (candidate_text not None: chatter dropped), the new ones included; "
          "each judged message is scored against the whole pool, then masked to earlier/window/other thread")
    print(f"- {len(corpus.reasks)} of the 1,000 new re-ask an earlier question (real vector); pairs: new messages the "
          f"judge accepts against one of their {rules.candidates} best earlier matches at ≥ DUP_THRESHOLD "
          f"{rules.threshold} (the other pairs: templated texts that resemble an earlier one)")

if __name__ == "__main__":
    main()
