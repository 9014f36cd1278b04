"""A page's steps (pipeline/steps.py): the plan step leaves a page with effects to make for its
write step, and marks a page with nothing to write done itself, so a no-change page needs no
write step (workers/tasks.py sends none)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import pages, runs
from sync_pipeline.state.schema import flow_cursors
from tests.conftest import wait_for

FLOW = "approvals_to_wecom"
SEED, APPROVALS = 7, 10


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(tmp_path / "sandbox", seed=SEED, approvals=APPROVALS) as client:
        yield client


def pulled(rt: Runtime) -> tuple[int, list[int]]:
    """A run that read its pages and stored them, none planned yet."""
    run_id = steps.start_run(rt, FLOW, "schedule")
    assert run_id is not None
    stored: list[int] = []
    steps.pull(rt, run_id, stored.append)
    assert stored
    return run_id, stored


def page(rt: Runtime, page_id: int) -> pages.StoredPage:
    with rt.engine.connect() as conn:
        return pages.get(conn, page_id)


def run_of(rt: Runtime, run_id: int) -> runs.Run:
    with rt.engine.connect() as conn:
        found = runs.get(conn, run_id)
    assert found is not None
    return found


def test_a_page_with_effects_to_make_is_left_planned_for_its_write_step(rt) -> None:
    _, [page_id, *_] = pulled(rt)

    status = steps.plan(rt, page_id)

    assert status is pages.PageStatus.PLANNED
    assert page(rt, page_id).status is pages.PageStatus.PLANNED


def test_a_page_with_nothing_to_write_is_done_by_its_plan_step(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    run_id, page_ids = pulled(rt)  # the same approvals again: nothing changed
    read = sum(len(page(rt, page_id).records) for page_id in page_ids)

    statuses = [steps.plan(rt, page_id) for page_id in page_ids]

    assert statuses == [pages.PageStatus.DONE] * len(page_ids)
    assert {page(rt, page_id).status for page_id in page_ids} == {pages.PageStatus.DONE}
    assert steps.commit(rt, run_id) is True
    finished = run_of(rt, run_id)
    assert finished.status is runs.RunStatus.SUCCEEDED
    assert finished.counts["written"] == 0
    assert finished.counts["skipped"] == read


def test_a_page_planned_again_answers_its_status_and_plans_nothing_twice(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    _, [page_id, *_] = pulled(rt)
    steps.plan(rt, page_id)
    counted = run_of(rt, page(rt, page_id).run_id).counts

    again = steps.plan(rt, page_id)  # a redelivered plan task

    assert again is pages.PageStatus.DONE
    assert run_of(rt, page(rt, page_id).run_id).counts == counted


def test_a_page_ended_by_its_plan_step_while_the_run_commits_waits_its_turn_without_deadlock(
    rt,
) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    run_id, [page_id, *_] = pulled(rt)
    failed: list[BaseException] = []
    with rt.engine.connect() as holder, holder.begin():  # the flow's cursor row, held a while
        holder.execute(
            sa.select(flow_cursors.c.fence).where(flow_cursors.c.flow == FLOW).with_for_update()
        )
        pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        committing = in_thread(lambda: steps.commit(rt, run_id), failed)
        wait_for(lambda: blocked_by(rt, pid) == 1, 30, 0.05, what="the commit waiting")
        planning = in_thread(lambda: steps.plan(rt, page_id), failed)
        wait_for(lambda: blocked_by(rt, pid) == 2, 30, 0.05, what="the plan waiting")
    committing.join(60)
    planning.join(60)

    assert failed == []
    assert page(rt, page_id).status in (pages.PageStatus.DONE, pages.PageStatus.COMMITTED)


def in_thread(step: Callable[[], Any], failed: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - the test asserts there is none
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def blocked_by(rt: Runtime, pid: int) -> int:
    """How many sessions wait, directly or behind another waiter, for the session `pid`."""
    waiting = sa.text(
        "WITH RECURSIVE blocked(pid) AS ("
        " SELECT pid FROM pg_stat_activity WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"
        " UNION SELECT a.pid FROM pg_stat_activity a JOIN blocked b"
        " ON b.pid = ANY(pg_blocking_pids(a.pid))"
        ") SELECT count(*) FROM blocked"
    )
    with rt.engine.connect() as conn:
        return int(conn.execute(waiting, {"pid": pid}).scalar_one())
