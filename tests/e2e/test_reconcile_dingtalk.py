"""Issue 12, point 3, for DingTalk's process centre (`approvals_to_dingtalk_todos`): todos
closed behind our back (through DingTalk's own API) are reported by `reconcile` exactly, read
back through `GET /v1.0/workflow/processCentres/todoTasks`, and `--repair` opens each again on
the same instance with one call, a second repair sending nothing. A real worker, Redis,
PostgreSQL and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import id_map
from tests.conftest import syncctl

pytestmark = pytest.mark.slow

SEED = 7
APPROVALS = 12
FLOW = "approvals_to_dingtalk_todos"
TASKS = "workflow/processCentres/tasks"


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(tmp_path / "sandbox", seed=SEED, approvals=APPROVALS) as client:
        yield client


@pytest.fixture
def store(sandbox: SandboxClient, tmp_path: Path) -> SandboxStore:
    return SandboxStore(store_path(tmp_path / "sandbox"))


def sync(env: dict[str, str]) -> None:
    result = syncctl(
        "run", FLOW, "--wait", "--even-if-disabled", "--timeout", "240", env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def reconcile(env: dict[str, str], *more: str) -> tuple[int, dict[str, Any]]:
    result = syncctl("reconcile", FLOW, "--json", *more, env=env, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def close_behind_our_back(env: dict[str, str], store: SandboxStore) -> dict[str, str]:
    """Two open todos closed by someone else through DingTalk's API, one cancelled and one
    completed: {processInstanceId: "activityId/userId" of the todo closed}."""
    base = env["SANDBOX_DINGTALK_BASE_URL"].rstrip("/")
    token = requests.post(
        f"{base}/v1.0/oauth2/accessToken",
        json={
            "appKey": env["SANDBOX_DINGTALK_APP_KEY"],
            "appSecret": env["SANDBOX_DINGTALK_APP_SECRET"],
        },
        timeout=10,
    ).json()["accessToken"]
    running = [t for t in store.list("dingtalk", "pc_task") if t["status"] == "RUNNING"]
    first = running[0]
    second = next(t for t in running if t["processInstanceId"] != first["processInstanceId"])
    closed = {}
    for task, how in (
        (first, {"status": "CANCELED"}),
        (second, {"status": "COMPLETED", "result": "agree"}),
    ):
        answer = requests.put(
            f"{base}/v1.0/workflow/processCentres/tasks",
            json={
                "processInstanceId": task["processInstanceId"],
                "tasks": [{"taskId": task["taskId"], **how}],
            },
            headers={"x-acs-dingtalk-access-token": token},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        closed[task["processInstanceId"]] = f"{task['activityId']}/{task['userId']}"
    return closed


def task_writes(sandbox: SandboxClient, since_seq: int) -> list[dict[str, Any]]:
    """Every process-centre call that changed DingTalk since `since_seq`."""
    return [
        e
        for e in sandbox.ledger("dingtalk", since_seq=since_seq)
        if "processCentres" in e["endpoint"]
    ]


def test_a_synced_flow_reconciles_clean(sandbox_env, sandbox_worker, sandbox) -> None:
    sync(sandbox_env)

    code, report = reconcile(sandbox_env)

    assert (code, report["checked"], report["drift"]) == (0, APPROVALS, [])


def test_todos_closed_behind_our_back_are_reported_exactly(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    sync(sandbox_env)
    closed = close_behind_our_back(sandbox_env, store)
    before = sandbox.last_seq()

    code, report = reconcile(sandbox_env)

    assert code == 1
    assert {d["target_id"]: d["kind"] for d in report["drift"]} == dict.fromkeys(
        closed, "different"
    )
    for d in report["drift"]:
        fields = d["fields"]["open_tasks"]
        assert closed[d["target_id"]] in fields["expected"].split(",")
        assert closed[d["target_id"]] not in fields["found"].split(",")
    assert task_writes(sandbox, before) == []  # a report writes nothing


def test_repair_opens_each_todo_again_with_one_call_and_a_second_repair_sends_nothing(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    sync(sandbox_env)
    closed = close_behind_our_back(sandbox_env, store)
    before = sandbox.last_seq()

    code, report = reconcile(sandbox_env, "--repair")

    assert (code, report["repaired"], report["left"]) == (0, 2, 0)
    made = task_writes(sandbox, before)
    assert sorted(e["endpoint"] for e in made) == [TASKS, TASKS]  # no new instance
    assert sorted(e["body"]["processInstanceId"] for e in made) == sorted(closed)
    assert reconcile(sandbox_env)[1]["drift"] == []
    again = sandbox.last_seq()
    assert reconcile(sandbox_env, "--repair")[1]["drift"] == []
    assert task_writes(sandbox, again) == []
    running = {t["taskId"] for t in store.list("dingtalk", "pc_task") if t["status"] == "RUNNING"}
    held = handles(sandbox_env, closed)
    assert held
    assert set(held) <= running  # the id map names the new todos, not the closed ones


def handles(env: dict[str, str], instances: dict[str, str]) -> list[int]:
    """The task ids the id map's handles hold for these instances (the next pull's base)."""
    engine = engine_for(env["DATABASE_URL"])
    with engine.connect() as conn:
        held = conn.execute(sa.select(id_map.c.target_id).where(id_map.c.flow == FLOW)).scalars()
        parsed = [json.loads(h) for h in held if h]
    engine.dispose()
    return [task for h in parsed if h["i"] in instances for task in h["t"].values()]
