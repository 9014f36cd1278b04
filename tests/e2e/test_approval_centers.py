"""End to end: the approval-center flows (`approvals_to_feishu_approval_center`,
`approvals_to_dingtalk_todos`) run by a real worker against the sandbox. Each OA approval
becomes one instance whose tasks follow the OA as it moves (pending, then approved in the OA
and pulled again), and no vendor call is made twice: not by a pull that finds nothing new,
nor by the same planned writes made again, as a redelivered write task makes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import build_runtime
from sync_pipeline.records import WriteRequest
from sync_pipeline.settings import load_settings
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import pages as pages_table
from tests.conftest import next_second, syncctl

pytestmark = pytest.mark.slow

SEED = 7
APPROVALS = 12
WORLD = World(SEED)
FEISHU_FLOW = "approvals_to_feishu_approval_center"
DINGTALK_FLOW = "approvals_to_dingtalk_todos"
FLOWS = (FEISHU_FLOW, DINGTALK_FLOW)


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    data = tmp_path / "sandbox"
    with seeded_sandbox(data, seed=SEED, approvals=APPROVALS, checkin_days=1) as client:
        yield client


@pytest.fixture
def store(sandbox: SandboxClient, tmp_path: Path) -> SandboxStore:
    return SandboxStore(store_path(tmp_path / "sandbox"))


def run(flow: str, env: dict[str, str]) -> None:
    """A pull through the worker; both flows ship disabled, so the operator says so."""
    result = syncctl(
        "run", flow, "--wait", "--even-if-disabled", "--timeout", "240", env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_both(env: dict[str, str]) -> None:
    for flow in FLOWS:
        run(flow, env)


def feishu_people(store: SandboxStore) -> dict[str, str]:
    """employee_no -> Feishu open_id."""
    return {u["employee_no"]: u["open_id"] for u in store.list("feishu", "user")}


def dingtalk_people(store: SandboxStore) -> dict[str, str]:
    """employee_no -> DingTalk userId."""
    return {u["job_number"]: u["userid"] for u in store.list("dingtalk", "user")}


def feishu_open(store: SandboxStore) -> dict[str, list[str]]:
    """instance_id -> open_ids of its PENDING tasks."""
    return {
        i["instance_id"]: sorted(t["open_id"] for t in i["task_list"] if t["status"] == "PENDING")
        for i in store.list("feishu", "external_instance")
    }


def dingtalk_open(store: SandboxStore) -> dict[str, list[str]]:
    """processInstanceId -> userIds of its RUNNING todos."""
    found: dict[str, list[str]] = {
        i["processInstanceId"]: [] for i in store.list("dingtalk", "pc_instance")
    }
    for task in store.list("dingtalk", "pc_task"):
        if task["status"] == "RUNNING":
            found[task["processInstanceId"]].append(task["userId"])
    return {k: sorted(v) for k, v in found.items()}


def center_writes(sandbox: SandboxClient) -> list[tuple[str, str]]:
    """Every approval-center call the emulators accepted."""
    return [
        (e["platform"], e["endpoint"])
        for e in sandbox.ledger()
        if "external_" in e["endpoint"] or "processCentres" in e["endpoint"]
    ]


def test_each_approval_is_one_instance_whose_tasks_follow_the_oa(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    feishu_ids, ding_ids = feishu_people(store), dingtalk_people(store)
    approvals = list(WORLD.approvals(APPROVALS))

    run_both(sandbox_env)

    assert feishu_open(store) == {
        a.request_id: sorted(feishu_ids[n] for n in a.current_approver_nos) for a in approvals
    }
    assert sorted(dingtalk_open(store).values()) == sorted(
        sorted(ding_ids[n] for n in a.current_approver_nos) for a in approvals
    )


def test_an_approval_decided_in_the_oa_moves_its_instance_and_closes_the_task(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    feishu_ids, ding_ids = feishu_people(store), dingtalk_people(store)
    pending = next(a for a in WORLD.approvals(APPROVALS) if a.state == "pending")
    approver = pending.current_approver_nos[0]
    run_both(sandbox_env)

    moved = sandbox.transition(pending.request_id, "approve", by=approver)
    next_second()  # else a pull starting in the second of the change leaves it to the next
    run_both(sandbox_env)

    instance = store.get("feishu", "external_instance", pending.request_id)
    assert instance is not None
    tasks = {t["open_id"]: t["status"] for t in instance["task_list"]}
    assert tasks[feishu_ids[approver]] == "APPROVED"
    assert instance["status"] == ("APPROVED" if moved["status"] == "approved" else "PENDING")
    assert len(store.list("feishu", "external_instance")) == APPROVALS
    assert len(store.list("dingtalk", "pc_instance")) == APPROVALS
    closed = [
        (t["status"], t["result"])
        for t in store.list("dingtalk", "pc_task")
        if t["userId"] == ding_ids[approver]
    ]
    assert ("COMPLETED", "agree") in closed


def test_no_call_is_made_twice_by_a_second_pull_or_a_redelivered_write(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    run_both(sandbox_env)
    before = center_writes(sandbox)

    run_both(sandbox_env)  # nothing changed in the OA
    rt = build_runtime(load_settings(sandbox_env), sandbox_env)
    engine = engine_for(sandbox_env["DATABASE_URL"])
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(pages_table.c.flow, pages_table.c.run_id, pages_table.c.plan)
        ).all()
    engine.dispose()
    remade = 0
    for flow, run_id, plan in stored:
        requests = [WriteRequest.from_json(r) for r in (plan or [{"requests": []}])[0]["requests"]]
        remade += steps.make_effects(rt, rt.flow(flow), requests, run_id).written

    assert remade == 0
    assert center_writes(sandbox) == before
    assert sum(1 for p, e in before if e.endswith("external_instances")) == APPROVALS
    assert sum(1 for p, e in before if e == "workflow/processCentres/instances") == APPROVALS
