"""A page's steps (pipeline/steps.py): the plan step leaves a page with effects to make for its
write step, and marks a page with nothing to write done itself, so a no-change page needs no
write step (workers/tasks.py sends none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import pages, runs
from tests.conftest import wait_for
from tests.integration.sessions import blocked_by, holding_cursor_row, in_thread

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
    with holding_cursor_row(rt, FLOW) as pid:  # held a while
        committing = in_thread(lambda: steps.commit(rt, run_id), failed)
        wait_for(lambda: blocked_by(rt, pid) == 1, 30, 0.05, what="the commit waiting")
        planning = in_thread(lambda: steps.plan(rt, page_id), failed)
        wait_for(lambda: blocked_by(rt, pid) == 2, 30, 0.05, what="the plan waiting")
    committing.join(60)
    planning.join(60)

    assert failed == []
    assert page(rt, page_id).status in (pages.PageStatus.DONE, pages.PageStatus.COMMITTED)
