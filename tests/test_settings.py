"""Settings: environment over `.env` file, keyword overrides over both, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from bot.errors import SettingsError
from bot.settings import ENV_NAMES, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_environment_or_file(tmp_path: Path) -> None:
    settings = load_settings(environ={}, env_file=tmp_path / "missing.env")
    assert settings == Settings()
    assert settings.embed_backend == "local"
    assert settings.port == 3000
    assert settings.embed_dim is None


def test_env_file_is_read(tmp_path: Path) -> None:
    env_file = write_env(
        tmp_path,
        "# a comment\n"
        "PORT=4001\n"
        "KB_DB=/srv/kb/db.sqlite3\n"
        "KB_MIN_SCORE=0.5\n"
        'EMBED_BACKEND="openai"\n'
        "ADMIN_USER_IDS=U1, U2 ,,U3\n"
        "LOG_LEVEL=debug\n"
        "SLACK_API_URL=http://127.0.0.1:9/api\n",
    )
    settings = load_settings(environ={}, env_file=env_file)
    assert settings.port == 4001
    assert settings.db_path == Path("/srv/kb/db.sqlite3")
    assert settings.min_score == 0.5
    assert settings.embed_backend == "openai"
    assert settings.admin_user_ids == ("U1", "U2", "U3")
    assert settings.log_level == "DEBUG"
    assert settings.slack_api_url == "http://127.0.0.1:9/api/"


def test_environment_wins_over_file(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "PORT=4001\nKB_TOP_K=7\nEMBED_MODEL=from-file\n")
    settings = load_settings(environ={"PORT": "5002", "EMBED_MODEL": "from-env"}, env_file=env_file)
    assert settings.port == 5002
    assert settings.embed_model == "from-env"
    assert settings.top_k == 7  # only in the file: the file still counts


def test_process_environment_is_the_default_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = write_env(tmp_path, "PORT=4001\nKB_TOP_K=7\n")
    monkeypatch.setenv("PORT", "6003")
    settings = load_settings(env_file=env_file)
    assert settings.port == 6003
    assert settings.top_k == 7


def test_overrides_win_over_environment_and_file(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "KB_DB=file.sqlite3\nKB_TOP_K=7\n")
    settings = load_settings(
        environ={"KB_DB": "env.sqlite3", "KB_TOP_K": "8"},
        env_file=env_file,
        db_path=tmp_path / "flag.sqlite3",
        top_k=9,
    )
    assert settings.db_path == tmp_path / "flag.sqlite3"
    assert settings.top_k == 9


def test_none_override_means_not_given(tmp_path: Path) -> None:
    # The CLI passes every flag; an absent flag (None) must not clobber the environment.
    settings = load_settings(environ={"KB_DB": "env.sqlite3"}, env_file=None, db_path=None, knowledge_dir=None)
    assert settings.db_path == Path("env.sqlite3")
    assert settings.knowledge_dir == Path("knowledge")


def test_blank_value_means_default(tmp_path: Path) -> None:
    settings = load_settings(environ={"PORT": "", "EMBED_DIM": "  ", "KB_MIN_SCORE": ""}, env_file=None)
    assert settings.port == 3000
    assert settings.embed_dim is None
    assert settings.min_score == 0.25


def test_blank_list_clears_it() -> None:
    settings = load_settings(environ={"ADMIN_USER_IDS": "", "DUP_CHANNELS": " , "}, env_file=None)
    assert settings.admin_user_ids == ()
    assert settings.dup_channels == ()


@pytest.mark.parametrize(
    ("name", "value", "hint"),
    [
        ("PORT", "abc", "whole number"),
        ("PORT", "0", "at least 1"),
        ("KB_MIN_SCORE", "2", "between"),
        ("KB_MIN_SCORE", "high", "number"),
        ("EMBED_BACKEND", "foo", "local, openai"),
        ("OPENAI_BASE_URL", "ftp://x", "http"),
        ("SLACK_API_URL", "slack.com/api", "http"),
        ("OPENAI_TIMEOUT", "0", "between"),
        ("EMBED_DIM", "-5", "at least 1"),
        ("EMBED_CONCURRENCY", "0", "at least 1"),
        ("KB_VECTOR_COPY", "maybe", "true or false"),
        ("PG_EF_SEARCH", "0", "at least 1"),
        ("KB_SEARCH_MODE", "fuzzy", "hybrid"),
        ("DUP_ACTION", "email", "thread"),
        ("ASK_COMMAND", "ask", "/ask"),
        ("LOG_LEVEL", "loud", "debug"),
        ("DUP_THRESHOLD", "1.5", "between"),
    ],
)
def test_invalid_value_names_the_variable(name: str, value: str, hint: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={name: value}, env_file=None)
    message = str(info.value)
    assert name in message
    assert hint in message


def test_invalid_value_in_file_names_the_variable(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "KB_TOP_K=many\n")
    with pytest.raises(SettingsError, match="KB_TOP_K"):
        load_settings(environ={}, env_file=env_file)


def test_valid_environment_value_hides_invalid_file_value(tmp_path: Path) -> None:
    env_file = write_env(tmp_path, "PORT=abc\n")
    assert load_settings(environ={"PORT": "8080"}, env_file=env_file).port == 8080


def test_chunk_overlap_must_be_under_half_the_chunk() -> None:
    with pytest.raises(SettingsError, match="KB_CHUNK_OVERLAP_TOKENS"):
        load_settings(environ={"KB_CHUNK_TOKENS": "64", "KB_CHUNK_OVERLAP_TOKENS": "32"}, env_file=None)
    ok = load_settings(environ={"KB_CHUNK_TOKENS": "64", "KB_CHUNK_OVERLAP_TOKENS": "31"}, env_file=None)
    assert ok.chunk_overlap_tokens == 31


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={}, env_file=None)
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


SECRETS = {
    "OPENAI_API_KEY": "sk-proj-Secret0penAIkey",
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-SecretBotToken",
    "SLACK_SIGNING_SECRET": "8f14e45fceea167a5a36dedd4bea2543",
    "SLACK_APP_TOKEN": "xapp-1-A111-SecretAppToken",
}


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    settings = load_settings(environ=dict(SECRETS), env_file=None)
    assert settings.openai_api_key == SECRETS["OPENAI_API_KEY"]  # loaded...
    assert settings.slack_bot_token == SECRETS["SLACK_BOT_TOKEN"]
    shown = repr(settings) + str(settings) + f"{settings}" + repr([settings])
    for secret in SECRETS.values():
        assert secret not in shown  # ...but never shown
    assert "openai_api_key='***'" in shown
    assert "port=3000" in shown  # ordinary values are still shown


def test_repr_shows_unset_secret_as_empty() -> None:
    assert "slack_app_token=''" in repr(load_settings(environ={}, env_file=None))


def test_env_example_lists_exactly_the_settings() -> None:
    documented = dotenv_values(ENV_EXAMPLE)
    missing = sorted(set(ENV_NAMES) - set(documented))
    extra = sorted(set(documented) - set(ENV_NAMES))
    assert not missing, f".env.example lacks {missing}"
    assert not extra, f".env.example has unknown variables {extra}"


def test_env_example_shows_the_defaults() -> None:
    # ".env.example: every line shows the default" -- loading it must change nothing.
    assert load_settings(environ={}, env_file=ENV_EXAMPLE) == Settings()
