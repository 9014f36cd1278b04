"""docker-compose.yml and the Dockerfile stay a deployment, true to the code: there is no Docker
engine here, so we read them (tests/compose.py) and check them against the code.
tests/e2e/test_installed_wheel.py runs each service's command and healthcheck from the wheel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from sync_pipeline import metrics
from sync_pipeline.cli import main
from sync_pipeline.config.loader import load_config
from sync_pipeline.settings import SettingsSchema
from tests.compose import (
    MissingVariable,
    dockerfile,
    healthcheck_argv,
    image_services,
    interpolate,
    interpolated,
    load,
    read_env_file,
    variables,
)
from tests.conftest import ROOT

COMPOSE: dict[str, Any] = load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = sorted(image_services())
# The stack proper: our image with the app's settings (the sandbox profile is apart).
STACK_SERVICES = [n for n in APP_SERVICES if "REDIS_URL" in SERVICES[n].get("environment", {})]
LONG_RUNNING = [n for n, s in SERVICES.items() if s.get("restart") != "no"]
PRODUCTION_EXAMPLE = ROOT / "config" / "examples" / "production"
CONNECTORS_ENV_EXAMPLE = ROOT / "deploy" / "connectors.env.example"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
DOCKERFILE = dockerfile()
IMAGE_STAGE = max(i.stage for i in DOCKERFILE)


def image_env() -> dict[str, str]:
    """The ENV of the image's final stage."""
    env: dict[str, str] = {}
    for instruction in DOCKERFILE:
        if instruction.stage == IMAGE_STAGE and instruction.keyword == "ENV":
            env.update(pair.split("=", 1) for pair in instruction.args.split())
    return env


def mounts(name: str) -> dict[str, str]:
    """A service's volumes as container path -> source (a named volume or a host path)."""
    found = {}
    for volume in SERVICES[name].get("volumes", []):
        source, target, *_ = str(volume).split(":")
        found[target] = source
    return found


def test_given_the_stack_then_it_has_every_role() -> None:
    roles = {"redis", "postgres", "migrate", "worker", "events-worker", "beat", "webhooks"}

    assert roles | {"flower", "sandbox"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_given_a_service_then_it_publishes_ports_on_loopback_only(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_given_the_datastores_then_they_publish_no_port_at_all(name: str) -> None:
    assert "ports" not in SERVICES[name]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_given_an_app_service_then_its_command_is_a_real_syncctl_command(name: str) -> None:
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
def test_given_a_group_command_then_its_subcommand_and_options_are_real(name: str) -> None:
    command, sub, *options = SERVICES[name]["command"]
    group = main.commands[command]
    assert isinstance(group, click.Group)

    assert sub in group.commands
    with click.Context(main) as parent, click.Context(group, parent=parent) as ctx:
        group.commands[sub].make_context(sub, list(options), parent=ctx)


def test_given_the_webhook_service_then_it_publishes_on_loopback_the_port_it_serves() -> None:
    command = SERVICES["webhooks"]["command"]
    port = command[command.index("--port") + 1]

    assert command[:2] == ["webhooks", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in the container
    assert SERVICES["webhooks"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/healthz" in " ".join(SERVICES["webhooks"]["healthcheck"]["test"])


def test_given_flower_then_it_publishes_on_loopback_the_port_it_serves_and_checks() -> None:
    command = SERVICES["flower"]["command"]
    port = command[command.index("--port") + 1]

    assert SERVICES["flower"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/healthcheck" in " ".join(SERVICES["flower"]["healthcheck"]["test"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_given_an_app_service_then_it_sets_only_variables_the_code_reads(name: str) -> None:
    known = set(SettingsSchema().fields)

    assert set(SERVICES[name].get("environment", {})) <= known


@pytest.mark.parametrize("name", STACK_SERVICES)
def test_given_a_stack_service_then_its_urls_point_at_services_of_the_stack(name: str) -> None:
    env = interpolated(SERVICES[name]["environment"], dict.fromkeys(variables(COMPOSE), "value"))

    assert urlsplit(env["REDIS_URL"]).hostname == "redis"
    assert urlsplit(env["DATABASE_URL"]).hostname == "postgres"


def test_given_the_image_then_compose_builds_it_from_this_repository() -> None:
    [entrypoint] = [i.args for i in DOCKERFILE if i.keyword == "ENTRYPOINT"]

    assert all(SERVICES[name]["build"] == "." for name in APP_SERVICES)
    assert entrypoint == '["syncctl"]'


def test_given_redis_then_it_keeps_nothing_on_disk_like_production() -> None:
    assert SERVICES["redis"]["command"][-4:] == ["--save", "", "--appendonly", "no"]


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH", "SYNC_CONFIG"])
def test_given_a_required_variable_unset_then_compose_refuses_to_start(variable: str) -> None:
    env = dict.fromkeys(variables(COMPOSE), "value") | {variable: ""}

    with pytest.raises(MissingVariable, match=variable):
        interpolated(COMPOSE, env)


def test_given_flower_then_it_requires_basic_auth() -> None:
    assert "FLOWER_BASIC_AUTH" in SERVICES["flower"]["environment"]


def test_given_beat_then_there_is_exactly_one() -> None:
    assert SERVICES["beat"]["deploy"]["replicas"] == 1


@pytest.mark.parametrize("name", [n for n in STACK_SERVICES if n != "migrate"])
def test_given_a_stack_service_then_it_starts_after_the_migrations(name: str) -> None:
    depends = SERVICES[name]["depends_on"]

    assert depends["migrate"]["condition"] == "service_completed_successfully"


def _queues(service: dict[str, Any]) -> set[str]:
    command = service["command"]
    return set(command[command.index("--queues") + 1].split(","))


def test_given_the_queues_then_each_has_a_worker_and_webhook_events_one_of_their_own() -> None:
    from sync_pipeline.dispatch import QUEUES

    workers = {n: SERVICES[n] for n in APP_SERVICES if SERVICES[n]["command"][0] == "worker"}

    assert set().union(*(_queues(s) for s in workers.values())) == set(QUEUES)
    assert _queues(workers["events-worker"]) == {"events"}
    assert "--no-task-events" in workers["events-worker"]["command"]
    assert all("events" not in _queues(s) for n, s in workers.items() if n != "events-worker")


# -- operations: logs, health, restarts ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_given_a_service_then_its_logs_are_rotated(name: str) -> None:
    logging = SERVICES[name]["logging"]

    assert logging["driver"] in ("json-file", "local")
    assert {"max-size", "max-file"} <= set(logging["options"])


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_given_a_long_running_service_then_it_has_a_healthcheck(name: str) -> None:
    assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"
    assert healthcheck_argv(SERVICES[name]["healthcheck"]["test"]), f"{name}'s runs nothing"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_given_a_long_running_service_then_it_restarts_unless_stopped(name: str) -> None:
    assert SERVICES[name]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", [n for n in APP_SERVICES if SERVICES[n]["command"][0] == "worker"])
def test_given_a_worker_then_its_healthcheck_pings_its_own_celery_node(name: str) -> None:
    argv = healthcheck_argv(interpolated(SERVICES[name]["healthcheck"]["test"], {}))

    # $$HOSTNAME reaches the shell as $HOSTNAME: the container's host name, Celery's node name.
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2].startswith("celery -A workers.app inspect ping --destination celery@$HOSTNAME")


def _beat_check(data_dir: Path) -> int:
    argv = healthcheck_argv(SERVICES["beat"]["healthcheck"]["test"])
    assert argv[0] == "python"
    env = {**os.environ, "SYNC_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, *argv[1:]], env=env, check=False, timeout=30)
    return done.returncode


def test_given_no_beat_schedule_file_then_beat_is_unhealthy(tmp_path: Path) -> None:
    assert _beat_check(tmp_path) != 0


def test_given_a_beat_schedule_file_written_just_now_then_beat_is_healthy(tmp_path: Path) -> None:
    # The name `syncctl beat` gives it (SYNC_DATA_DIR/celerybeat-schedule, plus the suffix of
    # the dbm behind shelve); the wheel test runs a real Beat against this healthcheck.
    (tmp_path / "celerybeat-schedule.db").write_bytes(b"")

    assert _beat_check(tmp_path) == 0


def test_given_a_beat_schedule_file_untouched_for_11_minutes_then_beat_is_unhealthy(
    tmp_path: Path,
) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"")
    eleven_minutes_ago = time.time() - 11 * 60
    os.utime(schedule, (eleven_minutes_ago, eleven_minutes_ago))

    assert _beat_check(tmp_path) != 0


# -- configuration and secrets: mounted and handed in, never in the image -----------------------


@pytest.mark.parametrize("name", STACK_SERVICES)
def test_given_a_stack_service_then_its_config_is_mounted_read_only_where_it_reads_it(
    name: str,
) -> None:
    config_dir = SERVICES[name]["environment"]["SYNC_CONFIG_DIR"]
    volumes = [str(v) for v in SERVICES[name]["volumes"]]

    assert config_dir == image_env()["SYNC_CONFIG_DIR"]
    assert any(v.endswith(f":{config_dir}:ro") and v.startswith("${SYNC_CONFIG:?") for v in volumes)


# The commands that load the connectors' configuration, secrets included.
CONNECTOR_COMMANDS = {"worker", "beat", "webhooks", "events"}  # events: `events connect`


@pytest.mark.parametrize("name", APP_SERVICES)
def test_given_an_app_service_then_connector_secrets_reach_it_only_if_it_uses_them(
    name: str,
) -> None:
    env_files = SERVICES[name].get("env_file", [])

    if SERVICES[name]["command"][0] in CONNECTOR_COMMANDS:
        assert [interpolate(f, {}) for f in env_files] == ["deploy/connectors.env"]
        assert CONNECTORS_ENV_EXAMPLE.is_file()
    else:
        assert env_files == []


def test_given_the_image_then_it_carries_no_configuration_and_no_sandbox_defaults() -> None:
    image = " ".join(f"{i.keyword} {i.args}" for i in DOCKERFILE)
    copied = [i.args for i in DOCKERFILE if i.keyword in ("COPY", "ADD")]

    assert not any("config" in args.split()[0] for args in copied)
    assert "SANDBOX" not in image
    assert "127.0.0.1" not in image


def test_given_the_image_then_it_runs_as_a_user_who_owns_every_volume_mounted_in_it() -> None:
    [user] = [i.args for i in DOCKERFILE if i.stage == IMAGE_STAGE and i.keyword == "USER"]
    runs = " ".join(i.args for i in DOCKERFILE if i.stage == IMAGE_STAGE and i.keyword == "RUN")
    owned = {
        path
        for command in runs.split("&&")
        if command.split()[:2] == ["chown", f"{user}:{user}"]
        for path in command.split()[2:]
    }
    named = set(COMPOSE["volumes"])
    mounted = {t for n in APP_SERVICES for t, source in mounts(n).items() if source in named}

    assert user not in ("root", "0")
    assert not user.startswith("0:")
    assert mounted <= owned
    assert image_env()["SYNC_DATA_DIR"] in owned


def test_given_the_build_context_then_it_holds_only_what_the_image_copies() -> None:
    patterns = [
        line
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    copied = {
        source
        for i in DOCKERFILE
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for source in i.args.split()[:-1]
    }

    assert patterns[0] == "*"
    assert {p.removeprefix("!") for p in patterns if p.startswith("!")} == copied


def _referenced(config_dir: Path) -> set[str]:
    """Every environment variable a configuration directory's connectors.yaml reads, and
    the signing secrets its alerts.yaml names."""
    raw = yaml.safe_load((config_dir / "connectors.yaml").read_text("utf-8"))
    alerts = yaml.safe_load((config_dir / "alerts.yaml").read_text("utf-8"))
    secrets = {
        d["webhook"]["secret_env"] for d in alerts["destinations"].values() if "webhook" in d
    }

    def refs(value: Any) -> set[str]:
        if isinstance(value, dict):
            own = {value["env"]} if set(value) == {"env"} else set()
            return own.union(*(refs(v) for v in value.values()))
        return variables(value) if isinstance(value, str) else set()

    return refs(raw) | secrets


def test_given_the_connectors_env_example_then_it_names_exactly_what_the_example_reads() -> None:
    assert set(read_env_file(CONNECTORS_ENV_EXAMPLE)) == _referenced(PRODUCTION_EXAMPLE)


@pytest.mark.parametrize("example", [CONNECTORS_ENV_EXAMPLE, COMPOSE_ENV_EXAMPLE])
def test_given_an_env_example_then_it_holds_names_only(example: Path) -> None:
    assert set(read_env_file(example).values()) == {""}


def test_given_the_compose_env_example_then_it_names_every_variable_compose_reads() -> None:
    assert set(read_env_file(COMPOSE_ENV_EXAMPLE)) == variables(COMPOSE) | {"COMPOSE_PROFILES"}


def test_given_the_production_example_with_its_variables_set_then_it_loads() -> None:
    env = dict.fromkeys(read_env_file(CONNECTORS_ENV_EXAMPLE), "stand-in")
    env |= {"OA_BASE_URL": "https://oa.example.com", "WECOM_AGENTID": "1000002"}

    config = load_config(PRODUCTION_EXAMPLE, env, webhook_secrets=True)

    assert {c.base_url.split("://")[0] for c in config.connectors.values()} == {"https"}
    assert config.enabled_flows()


def test_given_the_production_example_then_its_flows_are_the_shipped_ones_on_its_connectors() -> (
    None
):
    for path in sorted((PRODUCTION_EXAMPLE / "flows").glob("*.yaml")):
        example = yaml.safe_load(path.read_text("utf-8"))
        shipped = yaml.safe_load((ROOT / "config" / "flows" / path.name).read_text("utf-8"))
        for side in ("source", "target"):
            shipped[side]["connector"] = shipped[side]["connector"].removeprefix("sandbox_")

        assert example == shipped, path.name


# -- the sandbox: a profile for trying the stack ------------------------------------------------


def test_given_the_sandbox_then_it_runs_only_in_its_own_profile() -> None:
    assert SERVICES["sandbox"]["profiles"] == ["sandbox"]
    assert {n: s["profiles"] for n, s in SERVICES.items() if "profiles" in s} == {
        "sandbox": ["sandbox"],
        "prometheus": ["monitoring"],
        "grafana": ["monitoring"],
        "admin": ["admin"],
        "events-connect": ["events-connect"],
    }
    assert not any("sandbox" in s.get("depends_on", {}) for s in SERVICES.values())


def test_given_the_sandbox_then_it_serves_the_stack_under_its_service_name() -> None:
    command = SERVICES["sandbox"]["command"]

    assert command[:2] == ["sandbox", "up"]
    assert command[command.index("--host") + 1] == "sandbox"
    assert SERVICES["sandbox"]["environment"]["SYNC_DATA_DIR"] in mounts("sandbox")


# -- monitoring: Prometheus and Grafana in a profile of their own ----------------------------------
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
GRAFANA_DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"


def test_given_the_stack_then_its_services_log_json_lines() -> None:
    assert all(SERVICES[n]["environment"]["SYNC_LOG_FORMAT"] == "json" for n in STACK_SERVICES)


def test_given_prometheus_then_it_scrapes_the_webhook_service_where_it_serves_with_the_token() -> (
    None
):
    [job] = yaml.safe_load(PROMETHEUS_CONFIG.read_text("utf-8"))["scrape_configs"]
    command = SERVICES["webhooks"]["command"]
    [target] = job["static_configs"][0]["targets"]

    assert target == f"webhooks:{command[command.index('--port') + 1]}"
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] == "/run/secrets/admin_token"
    assert "admin_token" in SERVICES["prometheus"]["secrets"]


def test_given_prometheus_then_its_config_is_the_deploy_folders_mounted_read_only() -> None:
    assert mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in SERVICES["prometheus"]["command"]


def test_given_grafana_then_its_data_source_is_the_stacks_prometheus() -> None:
    [source] = yaml.safe_load((GRAFANA_DATASOURCES / "prometheus.yml").read_text("utf-8"))[
        "datasources"
    ]
    published = SERVICES["prometheus"]["ports"][0].rsplit(":", 1)[1]

    assert source["url"] == f"http://prometheus:{published}"
    assert mounts("grafana")["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def test_given_grafana_then_its_admin_password_comes_from_a_secret_file() -> None:
    env = SERVICES["grafana"]["environment"]

    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in SERVICES["grafana"]["secrets"]


def test_given_the_dashboard_then_it_charts_every_documented_metric_and_no_other() -> None:
    panels = json.loads(DASHBOARD.read_text("utf-8"))["panels"]
    queried = {
        name
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"\bsync_[a-z_]+", target["expr"])
    }

    assert queried == {m.name for m in metrics.DOCUMENTED}
