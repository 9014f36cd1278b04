"""`syncctl run FLOW`: what it refuses to run, and why, before anything is queued."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from sync_pipeline.state import requests
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import work_requests
from tests.conftest import syncctl


def queued_pulls(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).llen("pull"))


def test_given_a_flow_only_webhooks_trigger_run_says_it_has_nothing_to_pull(
    service_env, redis_url
) -> None:
    result = syncctl("run", "agora_important_messages_to_oa_todos", env=service_env)

    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "syncctl: agora_important_messages_to_oa_todos has nothing to pull: "
        "sandbox_agora/messages is synced only by its webhook events"
    )
    assert queued_pulls(redis_url) == 0


DISABLED = "approvals_to_dingtalk_todos"  # ships with enabled: false


def queued_pull_args(redis_url: str) -> list[list[Any]]:
    """The arguments of every pull.start waiting on the pull queue (kombu's Redis layout)."""
    found = []
    for raw in redis.Redis.from_url(redis_url).lrange("pull", 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append(args)
    return found


def test_given_a_disabled_flow_run_refuses_it_and_queues_nothing(service_env, redis_url) -> None:
    result = syncctl("run", DISABLED, env=service_env)

    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"syncctl: {DISABLED} is disabled (enabled: false in its flow file), so it is not run; "
        f"to run it once anyway: syncctl run {DISABLED} --even-if-disabled"
    )
    assert queued_pulls(redis_url) == 0


def test_given_even_if_disabled_without_a_terminal_run_queues_it_without_asking(
    migrated, redis_url
) -> None:
    result = syncctl("run", DISABLED, "--even-if-disabled", env=migrated)

    assert result.returncode == 0, result.stdout + result.stderr
    assert queued_pull_args(redis_url) == [[DISABLED, "manual", True]]


def test_given_even_if_disabled_on_a_terminal_run_asks_and_a_no_runs_nothing(
    service_env, redis_url
) -> None:
    exe = Path(sys.executable).parent / "syncctl"
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "wb", buffering=0) as keyboard:
        keyboard.write(b"n\n")
        result = subprocess.run(
            [str(exe), "run", DISABLED, "--even-if-disabled"],
            stdin=terminal,
            env=service_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    os.close(terminal)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{DISABLED} is disabled. Run it now anyway" in result.stdout
    assert queued_pulls(redis_url) == 0


def test_given_no_worker_run_wait_gives_up_after_the_start_timeout_in_one_line(
    migrated, redis_url
) -> None:
    result = syncctl(
        "run", "approvals_to_wecom", "--wait", "--start-timeout", "3", env=migrated, timeout=60
    )

    assert result.returncode == 3, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "syncctl: no worker began the run of approvals_to_wecom within 3 s; gave up waiting"
    )
    assert queued_pulls(redis_url) == 1  # the request stays: a worker started later runs it


def test_run_records_the_request_before_its_task_is_queued(migrated, redis_url) -> None:
    result = syncctl("run", "approvals_to_wecom", env=migrated)

    assert result.returncode == 0, result.stdout + result.stderr
    with engine_for(migrated["DATABASE_URL"]).connect() as conn:
        [task_id] = conn.execute(sa.select(work_requests.c.task_id)).scalars()
        request = requests.by_task_id(conn, task_id)
    assert request is not None
    assert (request.status, request.sends) == (requests.RequestStatus.REQUESTED, 1)
    assert queued_pull_args(redis_url) == [["approvals_to_wecom", "manual", False]]
