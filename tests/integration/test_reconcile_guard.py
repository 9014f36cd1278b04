"""Issue 12, point 3: a reconciliation is never run twice at once, never repairs a paused
flow, and is never left running for good when its worker dies (state/reconciles.py,
pipeline/sweeper.py). In this process, on a real PostgreSQL and the sandbox; `now` is moved
past a lease instead of waiting for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.errors import ReconcilePaused, ReconcileRunning
from sync_pipeline.pipeline import leases, reconcile, sweeper
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import controls, idmap, reconciles
from sync_pipeline.state import leases as lease_rows
from sync_pipeline.state.leases import Leased
from sync_pipeline.state.reconciles import ReconcileStatus
from sync_pipeline.state.requests import WorkRequest
from sync_pipeline.state.schema import reconciles as table

FLOW = "approvals_to_feishu_approval_center"
DEAD = "gone-host:4242:a-task-of-a-killed-worker"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(tmp_path / "sandbox", seed=7, approvals=4) as client:
        yield client


@dataclass
class Inline:
    """Sends a reconciliation again as the worker's task does: under its lease, here."""

    rt: Runtime
    sent: list[int] = field(default_factory=list)

    def reconcile(self, flow: str, reconcile_id: int) -> None:
        self.sent.append(reconcile_id)
        with leases.held(self.rt, Leased.RECONCILE, reconcile_id, "inline") as mine:
            assert mine
            reconcile.run_reconcile(self.rt, reconcile_id)

    def pull(self, flow: str, run_id: int) -> None:
        raise AssertionError("no pull to send again here")

    def page(self, flow: str, run_id: int, page_id: int, status: str) -> None:
        raise AssertionError("no page to send again here")

    def commit(self, flow: str, run_id: int) -> None:
        raise AssertionError("no run to commit here")

    def request(self, request: WorkRequest) -> None:
        raise AssertionError("no work request here")

    def resync(self, flow: str, resync_id: int) -> None:
        raise AssertionError("no resync here")


def begin(rt: Runtime, *, repair: bool = False) -> int:
    return reconcile.start(rt, FLOW, "tester", repair=repair).id


def status(rt: Runtime, reconcile_id: int) -> ReconcileStatus:
    with rt.engine.connect() as conn:
        found = reconciles.get(conn, reconcile_id)
    assert found is not None
    return found.status


def db_now(rt: Runtime) -> datetime:
    with rt.engine.connect() as conn:
        return idmap.clock(conn)


def test_a_second_reconcile_of_a_running_flow_is_refused_naming_the_first(rt) -> None:
    first = begin(rt)

    with pytest.raises(ReconcileRunning) as refused:
        begin(rt)

    assert f"reconcile #{first} of {FLOW}" in str(refused.value)
    assert "asked by tester" in str(refused.value)


def test_the_next_reconcile_may_start_once_the_first_has_finished(rt) -> None:
    first = begin(rt)
    reconcile.run_reconcile(rt, first)

    second = begin(rt)

    assert (status(rt, first), second > first) == (ReconcileStatus.SUCCEEDED, True)


def test_a_repair_of_a_paused_flow_is_refused_with_the_command_that_resumes_it(rt) -> None:
    with rt.engine.begin() as conn:
        controls.set_paused(conn, FLOW, True, "tester")
    asked = begin(rt, repair=True)

    with pytest.raises(ReconcilePaused) as refused:
        reconcile.run_reconcile(rt, asked)

    assert f"syncctl flow resume {FLOW}" in str(refused.value)


def test_a_report_of_a_paused_flow_still_runs(rt) -> None:
    with rt.engine.begin() as conn:
        controls.set_paused(conn, FLOW, True, "tester")

    done = reconcile.run_reconcile(rt, begin(rt))

    assert done.status is ReconcileStatus.SUCCEEDED


def test_a_reconcile_whose_worker_died_is_sent_again_once_its_lease_ran_out(rt) -> None:
    asked = begin(rt)
    with rt.engine.begin() as conn:  # the worker at it is SIGKILLed holding its lease
        assert lease_rows.take(conn, Leased.RECONCILE, asked, DEAD, leases.LEASE_S)
    inline = Inline(rt)

    early = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S / 2))
    late = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S + 1))
    again = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S + 1))

    assert (early.reconciles, late.reconciles, again.reconciles) == (0, 1, 0)
    assert (inline.sent, status(rt, asked)) == ([asked], ReconcileStatus.SUCCEEDED)


def test_a_reconcile_whose_task_was_lost_is_sent_again_once_it_stood_still(rt) -> None:
    asked = begin(rt)
    inline = Inline(rt)
    later = db_now(rt) + timedelta(seconds=sweeper.STILL_S + 1)

    early = sweeper.sweep(rt, inline, now=db_now(rt))
    late = sweeper.sweep(rt, inline, now=later)

    assert (early.reconciles, late.reconciles) == (0, 1)
    assert status(rt, asked) is ReconcileStatus.SUCCEEDED


def test_the_database_itself_refuses_two_running_reconciles_of_a_flow(rt) -> None:
    begin(rt)

    with pytest.raises(sa.exc.IntegrityError), rt.engine.begin() as conn:
        conn.execute(table.insert().values(flow=FLOW, requested_by="bypass"))
