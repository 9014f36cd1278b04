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
    assert {"redis", "postgres", "migrate", "worker", "beat", "flower", "webhooks"} <= set(SERVICES)


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


GROUP_SERVICES = [
    name
    for name in APP_SERVICES
    if isinstance(main.commands.get(SERVICES[name]["command"][0]), click.Group)
]


@pytest.mark.parametrize("name", GROUP_SERVICES)
def test_app_subcommands_and_their_options_are_real(name: str) -> None:
    command, sub, *options = SERVICES[name]["command"]
    group = main.commands[command]
    assert isinstance(group, click.Group)

    assert sub in group.commands
    with click.Context(main) as parent, click.Context(group, parent=parent) as ctx:
        group.commands[sub].make_context(sub, list(options), parent=ctx)


def test_the_webhook_service_listens_inside_and_publishes_on_loopback_the_port_it_serves() -> None:
    command = SERVICES["webhooks"]["command"]
    port = command[command.index("--port") + 1]

    assert command[:2] == ["webhooks", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in the container
    assert SERVICES["webhooks"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/healthz" in " ".join(SERVICES["webhooks"]["healthcheck"]["test"])


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


def _queues(service: dict[str, Any]) -> set[str]:
    command = service["command"]
    return set(command[command.index("--queues") + 1].split(","))


def test_every_queue_has_a_worker_and_webhook_events_one_of_their_own() -> None:
    from sync_pipeline.dispatch import QUEUES

    workers = {
        n: s for n, s in SERVICES.items() if n in APP_SERVICES and s["command"][0] == "worker"
    }

    assert set().union(*(_queues(s) for s in workers.values())) == set(QUEUES)
    assert _queues(workers["events-worker"]) == {"events"}
    assert "--no-task-events" in workers["events-worker"]["command"]
    assert all("events" not in _queues(s) for n, s in workers.items() if n != "events-worker")
