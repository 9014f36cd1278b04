"""A paused flow (state/controls.py): its pulls are turned away, its events wait queued, its
resync stops at its checkpoint; resumed, each goes on where it was. And the cursor an operator
sets (`syncctl cursor set`) fences out the pull that held the flow before."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.errors import FlowPaused, StaleFence, Transient
from sync_pipeline.pipeline import resync, steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import controls, cursors, requests, resyncs, runs
from sync_pipeline.state.requests import RequestKind, RequestStatus
from sync_pipeline.state.resyncs import ResyncStatus
from tests.e2e.spine import expected_wecom_messages, wecom_sends_in

FLOW = "approvals_to_wecom"
SEED, APPROVALS = 7, 10


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(tmp_path / "sandbox", seed=SEED, approvals=APPROVALS) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


def pause(rt: Runtime, reason: str = "vendor maintenance") -> None:
    with rt.engine.begin() as conn:
        assert controls.set_paused(conn, FLOW, True, "operator", reason)


def resume(rt: Runtime) -> None:
    with rt.engine.begin() as conn:
        assert controls.set_paused(conn, FLOW, False, "operator")


def sends(sandbox: SandboxClient) -> collections.Counter[tuple[str, str, int]]:
    return collections.Counter(wecom_sends_in(sandbox.ledger("wecom")))


# -- pause and resume --------------------------------------------------------------------------
def test_a_paused_flows_scheduled_pull_is_turned_away(rt, sandbox) -> None:
    pause(rt)

    assert steps.start_run(rt, FLOW, "schedule") is None
    assert sends(sandbox) == collections.Counter()


def test_a_paused_flows_manual_run_request_is_turned_away_not_sent_again(rt) -> None:
    task = requests.Task("pull.start", "pull", (FLOW, "manual", False))
    with rt.engine.begin() as conn:
        request = requests.record(conn, RequestKind.RUN, FLOW, task)
    pause(rt)

    assert steps.start_run(rt, FLOW, "manual", request_id=request.task_id) is None
    with rt.engine.connect() as conn:
        found = requests.get(conn, request.id)
    assert found is not None
    assert found.status is RequestStatus.TURNED_AWAY


def test_a_resumed_flow_is_pulled_again(rt, sandbox) -> None:
    pause(rt)
    resume(rt)

    assert steps.run_inline(rt, FLOW, "schedule") is not None
    assert sends(sandbox) == expected_wecom_messages(World(SEED), APPROVALS)


def test_a_paused_flows_event_waits_spending_no_try(rt) -> None:
    pause(rt)
    source = rt.connector(rt.flow(FLOW).source.connector)
    window = steps.read_window(rt.flow(FLOW), None, datetime.now(UTC))
    records = source.read_page(rt.flow(FLOW).source.stream, window, None, 5).records

    with pytest.raises(FlowPaused) as raised:
        steps.sync_records(rt, FLOW, records, steps.read_clock(rt))

    assert isinstance(raised.value, Transient)
    assert not raised.value.spends_retries
    with rt.engine.connect() as conn:
        assert runs.totals(conn, FLOW).runs == 0  # no event run opened


def test_pausing_twice_changes_nothing_the_second_time(rt) -> None:
    pause(rt)

    with rt.engine.begin() as conn:
        again = controls.set_paused(conn, FLOW, True, "someone else", "again")
        found = controls.paused(conn, FLOW)

    assert again is False
    assert found is not None
    assert (found.by, found.reason) == ("operator", "vendor maintenance")


def test_a_paused_flows_resync_stops_at_its_checkpoint_and_goes_on_once_resumed(
    rt, sandbox
) -> None:
    with rt.engine.begin() as conn:
        asked = resyncs.start(conn, FLOW, None, "operator")
    assert asked is not None
    pause(rt)

    waiting = resync.run_resync(rt, asked.id, sleep=lambda _: None)
    resume(rt)
    done = resync.run_resync(rt, asked.id, sleep=lambda _: None)

    assert (waiting.status, waiting.counts.pages) == (ResyncStatus.RUNNING, 0)
    assert done.status is ResyncStatus.SUCCEEDED
    assert sends(sandbox) == expected_wecom_messages(World(SEED), APPROVALS)


# -- the cursor an operator sets ---------------------------------------------------------------
def test_a_cursor_set_is_a_run_in_the_history_with_who_and_the_values(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    with rt.engine.begin() as conn:
        before, fence = cursors.set_by_operator(conn, FLOW, "2020-01-01T00:00:00Z")
        run_id = runs.record_cursor_set(
            conn, FLOW, before.cursor, "2020-01-01T00:00:00Z", "alice", fence
        )

    with rt.engine.connect() as conn:
        run = runs.get(conn, run_id)
        state = cursors.get(conn, FLOW)
    assert run is not None
    assert (run.trigger, run.by, run.status) == ("cursor_set", "alice", runs.RunStatus.SUCCEEDED)
    assert (run.cursor_before, run.cursor_after) == (before.cursor, "2020-01-01T00:00:00Z")
    assert state.cursor == "2020-01-01T00:00:00Z"


def test_a_cursor_set_fences_out_the_pull_that_held_the_flow_before(rt) -> None:
    run_id = steps.start_run(rt, FLOW, "schedule")
    assert run_id is not None
    with rt.engine.begin() as conn:
        cursors.set_by_operator(conn, FLOW, None)

    with pytest.raises(StaleFence):
        steps.pull(rt, run_id, lambda page_id: None)


def test_a_cursor_set_back_makes_the_next_pull_read_from_there(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    with rt.engine.begin() as conn:
        cursors.set_by_operator(conn, FLOW, None)

    run_id = steps.run_inline(rt, FLOW, "schedule")

    assert run_id is not None
    with rt.engine.connect() as conn:
        run = runs.get(conn, run_id)
    assert run is not None
    assert run.cursor_before is None
    assert run.counts["pulled"] == APPROVALS
    assert run.counts["written"] == 0  # the id map knows every record: nothing sent again
