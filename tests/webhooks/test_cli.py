"""`syncctl webhooks serve|stats` as an operator runs them: real processes, real servers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests

from sync_pipeline.processes import free_port
from tests.conftest import syncctl, wait_for
from tests.webhooks.conftest import CONFIG_DIR


def test_serve_answers_until_ctrl_c_then_stops_cleanly(sandbox, service_env, tmp_path) -> None:
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(CONFIG_DIR)}
    port = free_port()
    exe = Path(sys.executable).parent / "syncctl"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "webhooks", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        health = wait_for(
            lambda: _get(f"http://127.0.0.1:{port}/healthz"), 60, what="the service's /healthz"
        )

        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert health == {"status": "ok"}
    assert code == 0
    assert "webhooks: stopped" in log.read_text()


def _get(url: str) -> dict | None:
    try:
        answer = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_serve_with_redis_unreachable_says_so_in_one_line_and_exits_2(sandbox, service_env) -> None:
    env = {
        **service_env,
        **sandbox.env(),
        "SYNC_CONFIG_DIR": str(CONFIG_DIR),
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }

    result = syncctl("webhooks", "serve", "--port", str(free_port()), env=env)

    assert result.returncode == 2
    assert result.stderr.startswith("syncctl: cannot reach Redis at redis://127.0.0.1:1/0")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_without_the_callback_secrets_names_them_and_exits_2(sandbox, service_env) -> None:
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(CONFIG_DIR)}
    del env["SANDBOX_FEISHU_ENCRYPT_KEY"]

    result = syncctl("webhooks", "serve", "--port", str(free_port()), env=env)

    assert result.returncode == 2
    assert (
        "sandbox_feishu.webhook.encrypt_key: expected environment variable "
        "SANDBOX_FEISHU_ENCRYPT_KEY to be set" in result.stderr
    )


def test_stats_counts_accepted_duplicates_and_refusals_per_connector(
    sandbox, service, service_env
) -> None:
    sandbox.fault("oa", "duplicate_webhook")
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    service.wait_rows("oa", 1)
    requests.post(service.endpoint("agora"), data=b"{}", timeout=10)  # unsigned: forged
    wait_for(lambda: service.refusals("oa") == {"replay": 1}, 20, what="the replay counted")

    result = syncctl("webhooks", "stats", "--json", env=service_env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "connector": "sandbox_agora",
            "accepted": 0,
            "queued": 0,
            "duplicates": 0,
            "refused": {"bad_signature": 1},
        },
        {
            "connector": "sandbox_oa",
            "accepted": 1,
            "queued": 1,
            "duplicates": 0,
            "refused": {"replay": 1},
        },
    ]


def test_stats_prints_a_table_by_default(service, service_env) -> None:
    requests.post(service.endpoint("oa"), data=b"{}", timeout=10)

    result = syncctl("webhooks", "stats", env=service_env)

    assert result.returncode == 0, result.stderr
    assert "sandbox_oa" in result.stdout
    assert "bad_signature: 1" in result.stdout


def test_slack_socket_on_a_connector_that_is_not_slack_says_so_in_one_line_and_exits_2(
    sandbox, service_env
) -> None:
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(CONFIG_DIR)}

    result = syncctl("webhooks", "slack-socket", "sandbox_oa", env=env)

    assert result.returncode == 2
    assert "Socket Mode is for slack connectors" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
