"""`kb-bot embed`: the real bundled model (or the loopback OpenAI fake), through the cache, into a new store of each kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from bot.cli import cli
from bot.embeddings import STANDARD_MODEL_ID, LocalEmbedder
from bot.store import open_store
from tests.openai_fake import OpenAIFake, vector_for


@pytest.fixture
def db(store_kind: str, kb_db: Path | str, tmp_path: Path) -> Path | str:
    """KB_DB: on SQLite a file in a folder that does not exist yet (kb-bot makes it), else a new database."""
    return tmp_path / "data" / "kb.sqlite3" if store_kind == "sqlite" else kb_db


def run(args: list[str], db: Path | str, env: dict[str, str] | None = None, env_file: str = "/nonexistent/.env") -> Result:
    return CliRunner().invoke(cli, ["--env-file", env_file, *args], env={"KB_DB": str(db), **(env or {})}, obj={})


def cache_entries(db: Path | str) -> int:
    with open_store(db) as store:
        return store.conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0]


def test_embed_json(db: Path | str, embedder: LocalEmbedder) -> None:
    result = run(["embed", "The cat sat on the mat.", "--json"], db)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["text"] == "The cat sat on the mat."
    assert row["model"] == STANDARD_MODEL_ID
    assert row["dim"] == 384
    assert len(row["vector"]) == 384
    assert all(isinstance(x, float) for x in row["vector"])
    vector = np.asarray(row["vector"], dtype=np.float32)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(vector, embedder.embed(["The cat sat on the mat."])[0], atol=1e-5)
    assert cache_entries(db) == 1  # in KB_DB


def test_embed_twice_uses_the_cache(db: Path | str) -> None:
    first = run(["embed", "hello world", "--json"], db)
    second = run(["embed", "hello world", "--json"], db)
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert cache_entries(db) == 1


def test_embed_per_word_json(db: Path | str, embedder: LocalEmbedder) -> None:
    result = run(["embed", "the quick  brown fox", "--per-word", "--json"], db)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["text"] for r in rows] == ["the", "quick", "brown", "fox"]
    assert all(r["dim"] == 384 and len(r["vector"]) == 384 and r["model"] == STANDARD_MODEL_ID for r in rows)
    expected = embedder.embed(["the", "quick", "brown", "fox"])
    np.testing.assert_allclose(np.asarray([r["vector"] for r in rows]), expected, atol=1e-5)
    assert cache_entries(db) == 4


def test_embed_per_word_text(db: Path | str) -> None:
    result = run(["embed", "cats dogs cats", "--per-word", "--values", "3"], db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3  # one row per word, repeats included
    assert lines[0].startswith("'cats': all-MiniLM-L6-v2-int8-rows dim=384 [")
    assert lines[0] == lines[2]
    assert lines[1].startswith("'dogs': ")
    shown = lines[0].split("[", 1)[1].removesuffix(", …]").split(", ")
    assert len(shown) == 3
    assert cache_entries(db) == 2


def test_embed_text_output(db: Path | str) -> None:
    result = run(["embed", "hello"], db)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("'hello': all-MiniLM-L6-v2-int8-rows dim=384 [")
    assert len(line.split("[", 1)[1].split(", ")) == 9  # 8 values (default) and the ellipsis


def test_embed_empty_per_word_is_a_usage_error(db: Path | str) -> None:
    result = run(["embed", "   ", "--per-word"], db)
    assert result.exit_code == 2
    assert "TEXT is empty" in result.output


def test_embed_reads_the_env_file(tmp_path: Path, kb_db: Path | str) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"KB_DB={kb_db}\n")
    result = CliRunner().invoke(cli, ["--env-file", str(env_file), "embed", "hello", "--json"], obj={})
    assert result.exit_code == 0, result.output
    assert cache_entries(kb_db) == 1


def test_embed_bad_setting_is_one_line(db: Path | str) -> None:
    result = run(["embed", "hello"], db, env={"EMBED_BACKEND": "foo"})
    assert result.exit_code == 1
    assert "SettingsError: EMBED_BACKEND must be one of local, openai" in result.output
    assert "Traceback" not in result.output


def test_embed_bad_model_folder_is_one_line(db: Path | str, tmp_path: Path) -> None:
    result = run(["embed", "hello"], db, env={"EMBED_MODEL_PATH": str(tmp_path)})
    assert result.exit_code == 1
    assert "EmbeddingError: EMBED_MODEL_PATH" in result.output
    assert "tokenizer.json" in result.output


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key="sk-cli-" + "Pw4" * 10) as server:
        yield server


def openai_env(fake: OpenAIFake, key: str) -> dict[str, str]:
    return {
        "EMBED_BACKEND": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": key,
        "OPENAI_MAX_RETRIES": "0",
        "OPENAI_TIMEOUT": "10",
    }


def test_embed_with_the_openai_backend(db: Path | str, fake: OpenAIFake) -> None:
    env = openai_env(fake, fake.api_key or "")
    first = run(["embed", "hello there", "--json"], db, env=env)
    assert first.exit_code == 0, first.output
    row = json.loads(first.stdout)
    assert row["model"] == "openai:text-embedding-3-small"
    assert row["dim"] == 384
    np.testing.assert_allclose(row["vector"], vector_for("hello there"), atol=1e-6)
    assert fake.request_count == 1
    second = run(["embed", "hello there", "--json"], db, env=env)
    assert second.exit_code == 0
    assert fake.request_count == 1  # served from the cache in the store


def test_embed_with_a_wrong_key(db: Path | str, fake: OpenAIFake) -> None:
    wrong = "sk-wrong-" + "Qv8" * 10
    result = run(["embed", "hello"], db, env=openai_env(fake, wrong))
    assert result.exit_code == 1
    assert "EmbeddingError" in result.output
    assert "OPENAI_API_KEY" in result.output
    assert wrong not in result.output
