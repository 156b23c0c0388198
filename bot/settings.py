"""Settings: the only module that reads the environment.

Values come from the process environment, then from a `.env` file (the
environment wins). `load_settings()` validates everything once and returns a
frozen `Settings`; every other module receives that object as an argument.
`.env.example` lists each variable with its default.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from dotenv import dotenv_values

from bot.errors import SettingsError
from bot.redact import redact
from bot.source_links import check_template

T = TypeVar("T")

EMBED_BACKENDS = ("local", "openai", "fake")  # bot.embeddings registers each; fake is for tests
EMBED_LOCAL_VARIANTS = ("standard", "fp32")  # bundled model: int8 products (default), or fp32 (the vectors of before)
SEARCH_MODES = ("hybrid", "vector", "keyword")
DUP_ACTIONS = ("thread", "digest", "both")


def _secret_repr(value: str) -> str:
    return "''" if not value else "'***'"


@dataclass(frozen=True)
class Settings:
    """Every setting kb-bot reads, validated. Field names are lower-case env names."""

    # Where things live
    knowledge_dir: Path = Path("knowledge")
    db_path: Path | str = Path("data/kb.sqlite3")  # a path, or a postgresql:// URL kept as written
    log_level: str = "INFO"

    # Embeddings
    embed_backend: str = "local"
    embed_model: str = "text-embedding-3-small"
    embed_model_path: Path | None = None
    embed_local_variant: str = "standard"
    embed_dim: int | None = None
    embed_batch_size: int = 64
    embed_max_tokens: int = 8191
    embed_batch_tokens: int = 100_000
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str = field(default="", repr=False)
    openai_timeout: float = 30.0
    openai_max_retries: int = 5
    embed_concurrency: int = 4  # requests in flight to a remote endpoint while indexing

    # Vector search
    vector_copy: bool = True  # keep a compact copy of the vectors in each process (bot.vector_index)
    pg_ef_search: int = 100  # pgvector's hnsw.ef_search, when PostgreSQL's HNSW index answers (no copy)

    # Chunking and search
    chunk_tokens: int = 256
    chunk_overlap_tokens: int = 32
    top_k: int = 5
    min_score: float = 0.25
    search_mode: str = "hybrid"

    # Slack
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_app_token: str = field(default="", repr=False)
    slack_api_url: str = "https://slack.com/api/"
    ask_command: str = "/ask"
    admin_user_ids: tuple[str, ...] = ()
    port: int = 3000

    # Duplicate flagging
    dup_channels: tuple[str, ...] = ()
    dup_scan_minutes: float = 15
    dup_scan_cron: str = ""
    dup_window_days: int = 30
    # Stage one of the scan: how similar an earlier message must be to reach the judge, and how
    # many of the most similar the judge reads (bot/dupe_judge.py; scripts/fit_dupe_judge.py).
    dup_threshold: float = 0.45
    dup_candidates: int = 5
    dup_action: str = "thread"
    dup_report_channel: str = ""
    dup_min_words: int = 4
    dup_min_chars: int = 15
    dup_same_author_minutes: int = 0
    # Private channels are watched only when named in DUP_CHANNELS and this is true: a repeat can
    # link an earlier message from any watched channel, so private text could surface publicly.
    dup_allow_private: bool = False

    # Questions, feedback and knowledge gaps (bot/questions.py, bot/gaps.py)
    questions_days: int = 180
    feedback_days: int = 180
    gaps_report_channel: str = ""
    gaps_report_cron: str = "0 9 * * mon"
    # Per-channel scopes: channel id -> the top folders its questions search (bot/scopes.py)
    scopes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Links for cited files: a URL template with {path}, {start_line}, {end_line} (bot/source_links.py)
    source_url: str = ""

    def __repr__(self) -> str:  # secrets never reach logs
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            shown = _secret_repr(value) if not f.repr else repr(redact(value) if isinstance(value, str) else value)
            parts.append(f"{f.name}={shown}")
        return f"Settings({', '.join(parts)})"


def _text(raw: str) -> str:
    return raw.strip()


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _float_between(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"must be true or false, got {raw!r}")
    return value in ("true", "1", "yes")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _optional(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    return lambda raw: parse(raw) if raw.strip() else None


def _db_location(raw: str) -> Path | str:
    """An SQLite path, or a postgresql:// URL as written (a Path would fold its `//`)."""
    value = raw.strip()
    return value if value.startswith(("postgresql://", "postgres://")) else Path(value)


def _url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {value!r}")
    return value


def _slack_api_url(raw: str) -> str:
    value = _url(raw)
    return value if value.endswith("/") else value + "/"


def _command(raw: str) -> str:
    value = raw.strip()
    if not value.startswith("/") or " " in value or len(value) < 2:
        raise ValueError(f"must look like /ask, got {raw!r}")
    return value


def _scopes(raw: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`C0ENG=engineering,runbooks;C0SALES=sales` as ((channel, folders), ...)."""
    pairs = []
    for part in (p.strip() for p in raw.split(";")):
        if not part:
            continue
        channel, sep, folders = part.partition("=")
        names = tuple(f.strip().strip("/") for f in folders.split(",") if f.strip().strip("/"))
        if not sep or not channel.strip() or not names:
            raise ValueError(f"expected CHANNEL=folder,folder;... got {part!r}")
        pairs.append((channel.strip(), names))
    return tuple(pairs)


def _log_level(raw: str) -> str:
    return _one_of(("debug", "info", "warning", "error"))(raw).upper()


# env variable -> (Settings field, parser)
_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "KB_KNOWLEDGE_DIR": ("knowledge_dir", Path),
    "KB_DB": ("db_path", _db_location),
    "LOG_LEVEL": ("log_level", _log_level),
    "EMBED_BACKEND": ("embed_backend", _one_of(EMBED_BACKENDS)),
    "EMBED_MODEL": ("embed_model", _text),
    "EMBED_MODEL_PATH": ("embed_model_path", _optional(Path)),
    "EMBED_LOCAL_VARIANT": ("embed_local_variant", _one_of(EMBED_LOCAL_VARIANTS)),
    "EMBED_DIM": ("embed_dim", _optional(_int_at_least(1))),
    "EMBED_BATCH_SIZE": ("embed_batch_size", _int_at_least(1)),
    "EMBED_MAX_TOKENS": ("embed_max_tokens", _int_at_least(16)),
    "EMBED_BATCH_TOKENS": ("embed_batch_tokens", _int_at_least(16)),
    "OPENAI_BASE_URL": ("openai_base_url", _url),
    "OPENAI_API_KEY": ("openai_api_key", _text),
    "OPENAI_TIMEOUT": ("openai_timeout", _float_between(0.1, 600)),
    "OPENAI_MAX_RETRIES": ("openai_max_retries", _int_at_least(0)),
    "EMBED_CONCURRENCY": ("embed_concurrency", _int_at_least(1)),
    "KB_VECTOR_COPY": ("vector_copy", _bool),
    "PG_EF_SEARCH": ("pg_ef_search", _int_at_least(1)),
    "KB_CHUNK_TOKENS": ("chunk_tokens", _int_at_least(32)),
    "KB_CHUNK_OVERLAP_TOKENS": ("chunk_overlap_tokens", _int_at_least(0)),
    "KB_TOP_K": ("top_k", _int_at_least(1)),
    "KB_MIN_SCORE": ("min_score", _float_between(-1.0, 1.0)),
    "KB_SEARCH_MODE": ("search_mode", _one_of(SEARCH_MODES)),
    "SLACK_BOT_TOKEN": ("slack_bot_token", _text),
    "SLACK_SIGNING_SECRET": ("slack_signing_secret", _text),
    "SLACK_APP_TOKEN": ("slack_app_token", _text),
    "SLACK_API_URL": ("slack_api_url", _slack_api_url),
    "ASK_COMMAND": ("ask_command", _command),
    "ADMIN_USER_IDS": ("admin_user_ids", _csv),
    "PORT": ("port", _int_at_least(1)),
    "DUP_CHANNELS": ("dup_channels", _csv),
    "DUP_SCAN_MINUTES": ("dup_scan_minutes", _float_between(0.05, 10080)),
    "DUP_SCAN_CRON": ("dup_scan_cron", _text),
    "DUP_WINDOW_DAYS": ("dup_window_days", _int_at_least(1)),
    "DUP_THRESHOLD": ("dup_threshold", _float_between(-1.0, 1.0)),
    "DUP_CANDIDATES": ("dup_candidates", _int_at_least(1)),
    "DUP_ACTION": ("dup_action", _one_of(DUP_ACTIONS)),
    "DUP_REPORT_CHANNEL": ("dup_report_channel", _text),
    "DUP_MIN_WORDS": ("dup_min_words", _int_at_least(0)),
    "DUP_MIN_CHARS": ("dup_min_chars", _int_at_least(0)),
    "DUP_SAME_AUTHOR_MINUTES": ("dup_same_author_minutes", _int_at_least(0)),
    "DUP_ALLOW_PRIVATE": ("dup_allow_private", _bool),
    "KB_QUESTIONS_DAYS": ("questions_days", _int_at_least(1)),
    "KB_FEEDBACK_DAYS": ("feedback_days", _int_at_least(1)),
    "GAPS_REPORT_CHANNEL": ("gaps_report_channel", _text),
    "GAPS_REPORT_CRON": ("gaps_report_cron", _text),
    "KB_SCOPES": ("scopes", _scopes),
    "KB_SOURCE_URL": ("source_url", check_template),
}

ENV_NAMES = tuple(_PARSERS)


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = ".env",
    **overrides: Any,
) -> Settings:
    """Build `Settings` from `environ` (default `os.environ`) over `env_file`.

    Keyword `overrides` (field names) win over both, so the CLI can pass flags.
    Raises `SettingsError` naming the first bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    kwargs: dict[str, Any] = {}
    for name, (attr, parse) in _PARSERS.items():
        raw = values.get(name)
        if raw is None or (raw.strip() == "" and attr not in _BLANK_MEANS_EMPTY):
            continue
        try:
            kwargs[attr] = parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{name} {exc}") from None
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**kwargs)
    if settings.chunk_overlap_tokens >= settings.chunk_tokens // 2:
        raise SettingsError(
            "KB_CHUNK_OVERLAP_TOKENS must be less than half of KB_CHUNK_TOKENS "
            f"({settings.chunk_overlap_tokens} >= {settings.chunk_tokens // 2})"
        )
    return settings


# Variables where an empty value is meaningful (clears a default) rather than "unset".
_BLANK_MEANS_EMPTY = {
    "admin_user_ids", "dup_channels", "dup_scan_cron", "dup_report_channel", "gaps_report_channel", "scopes",
}
