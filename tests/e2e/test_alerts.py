"""Issue 12, point 5, done when: a vendor down for longer than the threshold raises one alert
in the ops group and one resolved message after it recovers. A real worker and Beat, Redis,
PostgreSQL and the sandbox, whose OA refuses connections (its `down` fault) for a while."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.state import alerts as rows
from sync_pipeline.state.alerts import Alert, AlertState
from sync_pipeline.state.db import engine_for
from tests.conftest import ROOT, wait_for
from tests.e2e.spine import start_worker, stop

OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # the seed-7 sandbox's first team group
FLOW = "approvals_to_feishu"
EVERY_S = 5  # evaluate_every_s
FOR_S = 15  # the OA must be down this long before the alert fires
FIRING = "[FIRING] oa_down: oa"
RESOLVED = "[RESOLVED] oa_down: oa"
DEADLINE_S = 180


@pytest.fixture
def alerts_env(sandbox_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The shipped connectors, one flow pulling the OA every 10 s, and one alert rule: the
    OA's breaker open for FOR_S, told to the ops group."""
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "config" / "connectors.yaml", config / "connectors.yaml")
    flow = yaml.safe_load((ROOT / "config" / "flows" / f"{FLOW}.yaml").read_text("utf-8"))
    flow["trigger"] = {"interval_s": 10}
    (config / "flows" / f"{FLOW}.yaml").write_text(yaml.safe_dump(flow), "utf-8")
    alerts: dict[str, Any] = {
        "evaluate_every_s": EVERY_S,
        "destinations": {"ops": {"group": {"connector": "sandbox_feishu", "chat_id": OPS_GROUP}}},
        "rules": {
            "oa_down": {"kind": "vendor_down", "vendors": ["oa"], "for_s": FOR_S, "notify": ["ops"]}
        },
    }
    (config / "alerts.yaml").write_text(yaml.safe_dump(alerts), "utf-8")
    return {**sandbox_env, "SYNC_CONFIG_DIR": str(config), "SYNC_DATA_DIR": str(tmp_path / "data")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    """A small seeded sandbox (the ops group is its first team group): the pulls after the
    OA is back have a few approvals to sync, not the spine's hundreds."""
    with seeded_sandbox(tmp_path / "sandbox", seed=7, approvals=5, checkin_days=1) as client:
        yield client


@contextmanager
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """Celery Beat with the test's config: the flow's pulls and the alert evaluation."""
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


def oa_alert(env: dict[str, str]) -> Alert | None:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        found = [a for a in rows.listed(conn, everything=True) if a.rule == "oa_down"]
    return found[0] if found else None


def test_given_the_oa_down_past_the_threshold_then_one_alert_and_one_resolution_in_the_ops_group(
    alerts_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path
) -> None:
    sandbox.fault("oa", "down")  # before the first pull, which Beat sends at once
    worker = start_worker(alerts_env, tmp_path / "worker.log")
    try:
        with beat(alerts_env, tmp_path):
            wait_for(lambda: posted(sandbox, FIRING), DEADLINE_S, interval_s=1, what="the alert")
            fired = oa_alert(alerts_env)
            assert fired is not None

            sandbox.clear_faults("oa")
            wait_for(lambda: posted(sandbox, RESOLVED), DEADLINE_S, interval_s=1, what="resolution")
            resolved = oa_alert(alerts_env)
            assert resolved is not None
            wait_for(
                lambda: evaluated_since(alerts_env, resolved.since) > 2 * EVERY_S,
                DEADLINE_S,
                interval_s=1,
                what="two more evaluations after the resolution",
            )
    finally:
        sandbox.clear_faults("oa")
        stop(worker)

    assert len(posted(sandbox, FIRING)) == 1
    assert len(posted(sandbox, RESOLVED)) == 1
    final = oa_alert(alerts_env)
    assert final is not None
    assert (final.state, final.epoch) == (AlertState.RESOLVED, 1)
    assert (final.notified_firing, final.notified_resolved) == (True, True)
    assert final.since > fired.since


def evaluated_since(env: dict[str, str], moment: datetime) -> float:
    """Seconds from `moment` to the alert's last evaluation."""
    alert = oa_alert(env)
    if alert is None or alert.evaluated_at is None:
        return 0.0
    return (alert.evaluated_at - moment).total_seconds()
