"""Issue 12, point 3, done when: records changed, removed or added behind our back at the
target (through the emulator's own API) are reported by `reconcile` exactly, and `--repair`
fixes them with no duplicate. A real worker (and Beat), Redis, PostgreSQL and the sandbox;
the flow is `approvals_to_feishu_approval_center`, whose target Feishu can read back
(`external_instances/check`, `external_tasks`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import ROOT, syncctl, wait_for
from tests.e2e.spine import stop

pytestmark = pytest.mark.slow

SEED = 7
APPROVALS = 12
FLOW = "approvals_to_feishu_approval_center"
CODE = "sync_pipeline_oa"  # the shipped connector's approval center definition
ADDED = "added-behind-our-back"
OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # the seed-7 sandbox's first team group
INSTANCES = "/approval/v4/external_instances"


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


class FeishuApi:
    """Someone else's calls to Feishu's own API, as the app: changes behind our back."""

    def __init__(self, env: dict[str, str]) -> None:
        self.base = env["SANDBOX_FEISHU_BASE_URL"].rstrip("/") + "/open-apis"
        answer = requests.post(
            f"{self.base}/auth/v3/tenant_access_token/internal",
            json={
                "app_id": env["SANDBOX_FEISHU_APP_ID"],
                "app_secret": env["SANDBOX_FEISHU_APP_SECRET"],
            },
            timeout=10,
        ).json()
        self.headers = {"Authorization": f"Bearer {answer['tenant_access_token']}"}

    def push(self, body: dict[str, Any]) -> None:
        answer = requests.post(
            f"{self.base}{INSTANCES}", json=body, headers=self.headers, timeout=10
        ).json()
        assert answer["code"] == 0, answer


def held(store: SandboxStore, instance_id: str) -> dict[str, Any]:
    """The instance as Feishu holds it, fit to push back (its private fields left out)."""
    found = store.get("feishu", "external_instance", instance_id)
    assert found is not None
    body = {k: v for k, v in found.items() if not k.startswith("_")}
    body["task_list"] = [
        {k: v for k, v in t.items() if k != "user_id"} for t in found.get("task_list") or []
    ]
    return body


def drift_behind_our_back(env: dict[str, str], store: SandboxStore) -> dict[str, str]:
    """One instance approved in Feishu by someone else, one removed, one added under our
    definition: {instance id: what was done}."""
    pending = [a.request_id for a in World(SEED).approvals(APPROVALS) if a.state == "pending"]
    changed, removed = pending[0], pending[1]
    api = FeishuApi(env)
    body = held(store, changed)
    api.push(
        {
            **body,
            "status": "APPROVED",
            "task_list": [],
            "update_mode": "REPLACE",
            "update_time": body["update_time"] + 1000,
        }
    )
    api.push(
        {
            "approval_code": CODE,
            "instance_id": removed,
            "status": "DELETED",
            "update_mode": "UPDATE",
            "update_time": held(store, removed)["update_time"] + 1000,
        }
    )
    api.push({**held(store, changed), "instance_id": ADDED, "title": "not from the OA"})
    return {changed: "different", removed: "missing", ADDED: "extra"}


def sync(env: dict[str, str]) -> None:
    result = syncctl(
        "run", FLOW, "--wait", "--even-if-disabled", "--timeout", "240", env=env, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def reconcile(env: dict[str, str], *more: str) -> tuple[int, dict[str, Any]]:
    result = syncctl("reconcile", FLOW, "--json", *more, env=env, timeout=300)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def instance_writes(sandbox: SandboxClient, since_seq: int) -> list[str]:
    """The instance ids of every instance push the emulator accepted since `since_seq`."""
    return [
        e["body"]["instance_id"]
        for e in sandbox.ledger("feishu", since_seq=since_seq)
        if e["endpoint"].endswith(INSTANCES)
    ]


def test_a_synced_flow_reconciles_clean(sandbox_env, sandbox_worker, sandbox) -> None:
    sync(sandbox_env)

    code, report = reconcile(sandbox_env)

    assert code == 0
    assert (report["checked"], report["listed"], report["drift"]) == (APPROVALS, APPROVALS, [])


def test_changed_removed_and_added_behind_our_back_are_reported_exactly(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    sync(sandbox_env)
    done = drift_behind_our_back(sandbox_env, store)
    before = sandbox.last_seq()

    code, report = reconcile(sandbox_env)

    assert code == 1
    assert {d["target_id"]: d["kind"] for d in report["drift"]} == done
    changed = next(d for d in report["drift"] if d["kind"] == "different")
    assert changed["fields"]["status"] == {"expected": "PENDING", "found": "APPROVED"}
    assert changed["fields"]["open_tasks"]["found"] == ""
    assert (report["missing"], report["extra"], report["different"]) == (1, 1, 1)
    assert instance_writes(sandbox, before) == []  # a report writes nothing


def test_repair_fixes_each_with_one_write_and_a_second_repair_sends_nothing(
    sandbox_env, sandbox_worker, sandbox, store
) -> None:
    sync(sandbox_env)
    done = drift_behind_our_back(sandbox_env, store)
    before = sandbox.last_seq()

    code, report = reconcile(sandbox_env, "--repair")

    assert code == 0
    assert (report["repaired"], report["left"]) == (3, 0)
    assert sorted(instance_writes(sandbox, before)) == sorted(done)
    assert reconcile(sandbox_env)[1]["drift"] == []
    again = sandbox.last_seq()
    code, report = reconcile(sandbox_env, "--repair")
    assert (code, report["drift"]) == (0, [])
    assert instance_writes(sandbox, again) == []


def test_a_flow_whose_target_cannot_be_read_back_is_refused_at_load(
    sandbox_env, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "connectors.yaml", config / "connectors.yaml")
    flow = yaml.safe_load((ROOT / "config/flows/approvals_to_wecom.yaml").read_text("utf-8"))
    flow["reconcile"] = {"schedule": "0 3 * * *"}
    (config / "flows" / "approvals_to_wecom.yaml").write_text(yaml.safe_dump(flow), "utf-8")
    env = {**sandbox_env, "SYNC_CONFIG_DIR": str(config)}

    result = syncctl("check", env=env)

    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "reconcile" in line]
    assert len(lines) == 1, result.stderr
    assert "cannot read back stream messages" in lines[0]
    assert "Traceback" not in result.stderr


def test_reconcile_of_a_flow_whose_target_cannot_be_read_back_is_one_line(sandbox_env) -> None:
    result = syncctl("reconcile", "approvals_to_wecom", env=sandbox_env)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot be reconciled" in result.stderr
    assert "Traceback" not in result.stderr


# -- Beat: a nightly-style schedule, and the drift alert --------------------------------------
@pytest.fixture
def beat_env(sandbox_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The flow enabled, reconciled every minute without repair; one drift alert rule."""
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "connectors.yaml", config / "connectors.yaml")
    flow = yaml.safe_load((ROOT / "config" / "flows" / f"{FLOW}.yaml").read_text("utf-8"))
    flow.update(
        enabled=True,
        trigger={"interval_s": 3600},
        reconcile={"schedule": "* * * * *", "repair": False},
    )
    (config / "flows" / f"{FLOW}.yaml").write_text(yaml.safe_dump(flow), "utf-8")
    alerts = {
        "evaluate_every_s": 5,
        "destinations": {"ops": {"group": {"connector": "sandbox_feishu", "chat_id": OPS_GROUP}}},
        "rules": {"drift": {"kind": "reconciliation_drift", "notify": ["ops"]}},
    }
    (config / "alerts.yaml").write_text(yaml.safe_dump(alerts), "utf-8")
    return {**sandbox_env, "SYNC_CONFIG_DIR": str(config), "SYNC_DATA_DIR": str(tmp_path / "data")}


@contextmanager
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    out = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-l", "INFO"]
    cmd += ["-s", str(tmp_path / "celerybeat-schedule")]
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield
    finally:
        stop(proc)
        out.close()


def posted(sandbox: SandboxClient, title: str) -> list[dict[str, Any]]:
    return [
        e["body"]
        for e in sandbox.ledger("feishu")
        if e["body"].get("receive_id") == OPS_GROUP and title in str(e["body"].get("content"))
    ]


def test_beats_reconcile_raises_one_drift_alert_resolved_after_repair(
    beat_env, sandbox, store, tmp_path: Path
) -> None:
    from tests.e2e.spine import start_worker

    worker = start_worker(beat_env, tmp_path / "worker.log")
    try:
        sync(beat_env)
        drift_behind_our_back(beat_env, store)
        with beat(beat_env, tmp_path):
            firing = f"[FIRING] drift: {FLOW}"
            wait_for(lambda: posted(sandbox, firing), 180, 1.0, "the drift alert")
            code, report = reconcile(beat_env, "--repair")
            assert (code, report["left"]) == (0, 0)
            resolved = f"[RESOLVED] drift: {FLOW}"
            wait_for(lambda: posted(sandbox, resolved), 120, 1.0, "its resolution")
        assert len(posted(sandbox, firing)) == 1
        assert len(posted(sandbox, resolved)) == 1
    finally:
        stop(worker)
