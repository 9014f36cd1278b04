"""syncctl: one clear line and exit code 2 when a server is missing; --help everywhere."""

from __future__ import annotations

import pytest

from tests.conftest import syncctl

COMMANDS = [
    "check",
    "migrate",
    "worker",
    "beat",
    "flower",
    "health",
    "demo",
    "run",
    "status",
    "dlq",
    "dlq list",
    "dlq replay",
    "dlq discard",
    "events",
    "events list",
    "events replay",
    "webhooks",
    "webhooks serve",
    "webhooks stats",
    "sandbox",
    "bench",
    "bench sandbox",
    "bench spine",
    "bench events",
]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_command_has_help(command: str, service_env) -> None:
    result = syncctl(*command.split(), "--help", env=service_env)

    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_unreachable_redis_is_one_line_and_exit_2(service_env) -> None:
    env = {**service_env, "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}

    result = syncctl("migrate", env=env)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("syncctl: cannot reach Redis at redis://:***@127.0.0.1:1/0")
    assert "REDIS_URL" in lines[0]
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_unreachable_postgres_is_one_line_and_exit_2(service_env) -> None:
    env = {**service_env, "DATABASE_URL": "postgresql://app:pw@127.0.0.1:1/sync"}

    result = syncctl("migrate", env=env)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach PostgreSQL at postgresql://app:***@127.0.0.1:1/sync" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_variable_and_exits_2(service_env) -> None:
    env = {**service_env, "SYNC_LOG_LEVEL": "LOUD"}

    result = syncctl("check", env=env)

    assert result.returncode == 2
    assert "environment: SYNC_LOG_LEVEL: Must be one of" in result.stderr


def test_migrate_twice_changes_nothing_the_second_time(service_env) -> None:
    first = syncctl("migrate", env=service_env)
    second = syncctl("migrate", env=service_env)

    assert first.returncode == second.returncode == 0
    assert "applied 0001" in first.stdout
    assert "nothing to do" in second.stdout


def test_flower_refuses_to_start_without_auth(service_env) -> None:
    env = {k: v for k, v in service_env.items() if not k.startswith("FLOWER_")}

    result = syncctl("flower", env=env)

    assert result.returncode == 2
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_health_without_a_worker_fails_with_exit_1(service_env) -> None:
    result = syncctl("health", "--timeout", "2", env=service_env)

    assert result.returncode == 1
    assert "no worker answered" in result.stderr


@pytest.mark.parametrize(
    "command", [["status"], ["dlq", "list"], ["events", "list"], ["webhooks", "stats"]]
)
def test_given_a_database_never_migrated_a_command_says_to_migrate_in_one_line(
    command: list[str], service_env
) -> None:
    result = syncctl(*command, env=service_env)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "syncctl migrate" in result.stderr
    assert "Traceback" not in result.stderr
