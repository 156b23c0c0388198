"""compose.yaml, checked without a Docker engine: valid against the Compose schema, and consistent with kb-bot.

The schema is the Compose Specification's own (tests/data/compose-spec); the rest
checks what a schema cannot: each kb-bot service runs a real CLI command with
real settings, reaches the database service with its credentials, and two
replicas serve on different host ports once the database is healthy.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from bot.cli import cli
from bot.settings import ENV_NAMES, load_settings
from tests.conftest import DATA, ROOT

yaml = pytest.importorskip("yaml", reason="the compose check needs pyyaml (`make install`)")
jsonschema = pytest.importorskip("jsonschema", reason="the compose check needs jsonschema (`make install`)")

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
KB_BOT_SERVICES = {name: s for name, s in COMPOSE["services"].items() if s.get("image") == "kb-bot"}


def dockerfile_cmd() -> list[str]:
    return json.loads(re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1))


def test_compose_yaml_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose-spec" / "compose-spec.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(COMPOSE)]
    assert not errors


def test_every_kb_bot_service_runs_a_real_command_with_real_settings() -> None:
    assert len(KB_BOT_SERVICES) >= 3  # the index job and two replicas
    for name, service in KB_BOT_SERVICES.items():
        command = service.get("command", dockerfile_cmd())
        assert command[0] == "kb-bot" and command[1] in cli.commands, name
        environment = service.get("environment", {})
        assert set(environment) <= set(ENV_NAMES), name
        settings = load_settings(environ=environment, env_file=None)
        assert str(settings.knowledge_dir) in {v.split(":")[1] for v in service.get("volumes", [])}, name


def test_the_replicas_reach_the_database_service_with_its_credentials_once_it_is_healthy() -> None:
    db = COMPOSE["services"]["db"]
    assert db["image"].startswith("pgvector/pgvector:") and "healthcheck" in db
    for name, service in KB_BOT_SERVICES.items():
        url = urlsplit(service["environment"]["KB_DB"])
        assert url.scheme == "postgresql" and url.hostname == "db", name
        assert (url.username, url.password, url.path.strip("/")) == (
            db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_PASSWORD"], db["environment"]["POSTGRES_DB"]
        ), name
        assert service["depends_on"]["db"]["condition"] == "service_healthy", name


def test_two_replicas_serve_on_different_host_ports() -> None:
    serving = [s for s in KB_BOT_SERVICES.values() if s.get("command", dockerfile_cmd())[1] == "serve"]
    host_ports = [p.split(":")[0] for s in serving for p in s.get("ports", [])]
    assert len(serving) >= 2 and len(set(host_ports)) == len(host_ports) == len(serving)
