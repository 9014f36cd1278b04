"""`syncctl flower`: an admin surface that never admits a blank or missing login."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sync_pipeline.processes import free_port
from tests.conftest import syncctl, wait_for
from tests.e2e.spine import FLOW, start_worker, stop

USER, PASSWORD = "ops", "Xq3-9vT_2kLmN8pR"


@pytest.fixture
def flower_from_a_secret_file(service_env, tmp_path: Path) -> Iterator[str]:
    """`syncctl flower` with its login in FLOWER_BASIC_AUTH_FILE (a Docker secret); its URL."""
    yield from _flower(service_env, tmp_path)


def _flower(service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    secret = tmp_path / "flower-auth"
    secret.write_text(f"{USER}:{PASSWORD}\n")
    env = {k: v for k, v in service_env.items() if not k.startswith("FLOWER_")}
    env["FLOWER_BASIC_AUTH_FILE"] = str(secret)
    port = free_port()
    exe = Path(sys.executable).parent / "syncctl"
    with (tmp_path / "flower.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(exe), "flower", "--port", str(port)], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url, proc), 60, what="Flower's port")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _answers(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "syncctl flower exited"
    try:
        requests.get(f"{url}/healthcheck", timeout=2)
    except requests.ConnectionError:
        return False
    return True


def test_given_the_login_in_a_secret_file_flower_refuses_a_request_without_it(
    flower_from_a_secret_file: str,
) -> None:
    answer = requests.get(f"{flower_from_a_secret_file}/workers", timeout=10)

    assert answer.status_code == 401


def test_given_the_login_in_a_secret_file_flower_admits_it(flower_from_a_secret_file: str) -> None:
    answer = requests.get(f"{flower_from_a_secret_file}/workers", auth=(USER, PASSWORD), timeout=10)

    assert answer.status_code == 200


@pytest.mark.parametrize("auth", [":", "admin:", ":hunter2"])
def test_given_a_blank_user_or_password_settings_are_refused_in_one_line(
    service_env, auth: str
) -> None:
    # Redis unreachable: were the login admitted, the command would stop there, not serve.
    env = {**service_env, "FLOWER_BASIC_AUTH": auth, "REDIS_URL": "redis://127.0.0.1:1/0"}

    result = syncctl("flower", "--port", str(free_port()), env=env)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "syncctl: environment: FLOWER_BASIC_AUTH: expected user:password, neither empty"
        " (several separated by commas)"
    ]


def test_given_no_login_at_all_flower_refuses_to_start_in_one_line(service_env) -> None:
    env = {k: v for k, v in service_env.items() if not k.startswith("FLOWER_")}

    result = syncctl("flower", "--port", str(free_port()), env=env)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "syncctl: Flower needs FLOWER_BASIC_AUTH=user:password (or FLOWER_BASIC_AUTH_FILE): it"
        " is an admin surface and never runs without auth"
    ]


def test_given_a_pull_by_a_real_worker_flowers_api_lists_its_tasks_by_name(
    sandbox_env: dict[str, str], tmp_path: Path
) -> None:
    url = next(flower := _flower(sandbox_env, tmp_path))
    worker = start_worker(sandbox_env, tmp_path / "worker.log")
    try:
        run = syncctl("run", FLOW, "--wait", "--timeout", "240", env=sandbox_env, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr

        def named() -> set[str]:
            tasks = requests.get(f"{url}/api/tasks", auth=(USER, PASSWORD), timeout=10).json()
            return {str(task.get("name")) for task in tasks.values()}

        wait_for(lambda: {"pull.start", "write.page"} <= named(), 60, what="Flower's task list")
    finally:
        stop(worker)
        flower.close()
