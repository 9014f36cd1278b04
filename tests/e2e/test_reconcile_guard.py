"""Issue 12, point 3 (robustness), end to end: `syncctl reconcile` refuses a second run of a
flow while one runs, and a repair of a paused flow, each in one line naming what to do; a
reconciliation whose worker is SIGKILLed is re-driven by the sweeper and finishes, never
left running. A real worker, Redis, PostgreSQL and the sandbox."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.state import controls, reconciles
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.reconciles import Reconcile, ReconcileStatus
from sync_pipeline.state.schema import reconciles as table
from tests.conftest import ROOT, syncctl, wait_for
from tests.e2e.spine import start_worker, stop

pytestmark = pytest.mark.slow

FLOW = "approvals_to_feishu_approval_center"


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


def rows(env: dict[str, str]) -> list[Reconcile]:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            ids = conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars().all()
            found = [reconciles.get(conn, int(i)) for i in ids]
    finally:
        engine.dispose()
    return [r for r in found if r is not None]


def test_a_second_reconcile_while_one_runs_is_refused_in_one_line_naming_it(sandbox_env) -> None:
    engine = engine_for(sandbox_env["DATABASE_URL"])
    with engine.begin() as conn:
        running = reconciles.start(conn, FLOW, "alice", repair=False)
    engine.dispose()

    result = syncctl("reconcile", FLOW, env=sandbox_env)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"reconcile #{running.id} of {FLOW} (asked by alice" in result.stderr
    assert [r.id for r in rows(sandbox_env)] == [running.id]  # nothing new recorded


def test_a_repair_of_a_paused_flow_is_refused_with_the_resume_command(sandbox_env) -> None:
    engine = engine_for(sandbox_env["DATABASE_URL"])
    with engine.begin() as conn:
        controls.set_paused(conn, FLOW, True, "alice", "vendor maintenance")
    engine.dispose()

    result = syncctl("reconcile", FLOW, "--repair", env=sandbox_env)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "is paused" in result.stderr
    assert f"syncctl flow resume {FLOW}" in result.stderr
    assert rows(sandbox_env) == []


def test_a_reconcile_whose_worker_is_killed_is_re_driven_by_the_sweeper(
    sandbox_env, sandbox, tmp_path: Path
) -> None:
    sandbox.fault("feishu", "latency", params={"ms": 4000})  # a window to kill it in
    worker = start_worker(sandbox_env, tmp_path / "worker.log")
    asked = subprocess.Popen(
        [str(Path(sys.executable).parent / "syncctl"), "reconcile", FLOW, "--json"],
        env=sandbox_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held = wait_for(
            lambda: (
                [r for r in rows(sandbox_env) if r.status is ReconcileStatus.RUNNING]
                and _owner(sandbox_env)
            ),
            120,
            0.2,
            "a worker at the reconcile",
        )
        stop(worker, signal.SIGKILL)
        sandbox.clear_faults("feishu")
        assert rows(sandbox_env)[0].status is ReconcileStatus.RUNNING
        worker = start_worker(sandbox_env, tmp_path / "worker2.log")
        wait_for(lambda: _lapsed(sandbox_env), 120, 1.0, f"the lease of {held} to run out")
        sweep = [sys.executable, "-m", "celery", "-A", "workers.app", "call", "admin.sweep_work"]
        subprocess.run(sweep, env=sandbox_env, check=True, cwd=ROOT, capture_output=True)

        wait_for(
            lambda: rows(sandbox_env)[0].status is ReconcileStatus.SUCCEEDED,
            120,
            0.5,
            "the reconcile re-driven to its end",
        )
        out, err = asked.communicate(timeout=120)
        assert asked.returncode == 0, out + err
        assert len(rows(sandbox_env)) == 1
        swept = f"reconcile {rows(sandbox_env)[0].id} of {FLOW}: its worker ("
        assert swept in (tmp_path / "worker2.log").read_text("utf-8", "replace")
    finally:
        if asked.poll() is None:
            asked.kill()
        stop(worker)


def _owner(env: dict[str, str]) -> str | None:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            found: str | None = conn.execute(sa.select(table.c.owner)).scalar()
    finally:
        engine.dispose()
    return found


def _lapsed(env: dict[str, str]) -> bool:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            late = table.c.lease_until < sa.func.now()
            return bool(conn.execute(sa.select(sa.exists().where(late))).scalar())
    finally:
        engine.dispose()
