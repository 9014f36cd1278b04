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

USER, PASSWORD = "ops", "Xq3-9vT_2kLmN8pR"


@pytest.fixture
def flower_from_a_secret_file(service_env, tmp_path: Path) -> Iterator[str]:
    """`syncctl flower` with its login in FLOWER_BASIC_AUTH_FILE (a Docker secret); its URL."""
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
