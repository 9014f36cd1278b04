"""docker-compose.yml stays true to the code: there is no Docker engine here, so we read it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from sync_pipeline.cli import main
from sync_pipeline.settings import SettingsSchema

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = [
    name for name, svc in SERVICES.items() if svc.get("image") == "sync_pipeline:latest"
]


def test_the_stack_has_every_role() -> None:
    assert {"redis", "postgres", "migrate", "worker", "beat", "flower"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_ports_bind_to_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_commands_are_real_syncctl_commands(name: str) -> None:
    command, *args = SERVICES[name]["command"]

    assert command in main.commands
    with click.Context(main) as parent:
        main.commands[command].make_context(command, list(args), parent=parent)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_uses_only_variables_the_code_reads(name: str) -> None:
    known = set(SettingsSchema().fields)

    assert set(SERVICES[name]["environment"]) <= known


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_urls_point_at_services_of_the_stack(name: str) -> None:
    env = {key: interpolated(value) for key, value in SERVICES[name]["environment"].items()}

    assert urlsplit(env["REDIS_URL"]).hostname in SERVICES
    assert urlsplit(env["DATABASE_URL"]).hostname in SERVICES


def interpolated(value: str) -> str:
    """Compose's ${VAR:?message} with a stand-in value, as `docker compose config` would."""
    return re.sub(r"\$\{[^}]*\}", "value", value)


def test_app_image_is_built_from_this_repository() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text("utf-8")

    assert SERVICES["worker"]["build"] == "."
    assert 'ENTRYPOINT ["syncctl"]' in dockerfile


def test_redis_keeps_nothing_on_disk_like_production() -> None:
    assert SERVICES["redis"]["command"][-4:] == ["--save", "", "--appendonly", "no"]


def test_flower_requires_basic_auth() -> None:
    assert "FLOWER_BASIC_AUTH" in SERVICES["flower"]["environment"]


def test_exactly_one_beat() -> None:
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


def test_workers_start_after_migrations() -> None:
    depends = SERVICES["worker"]["depends_on"]

    assert depends["migrate"]["condition"] == "service_completed_successfully"
