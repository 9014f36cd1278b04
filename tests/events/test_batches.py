"""Micro-batches of approval events, against the real sandbox, PostgreSQL and Redis: a task
handles the queued approval events of its connector together, each exactly as it would alone
(one effect each, dead letters and failures kept to their own event), and the tasks of the
events it took find them handled and do nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.server import FAULT_CACHE_S
from sync_pipeline.errors import RateLimited
from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import deadletters, inbound, runs
from sync_pipeline.state.inbound import EventStatus
from tests.events.approval_scene import (
    WECOM_FLOW,
    approval_changed,
    new_approval,
    record,
    wecom_id,
    wecom_sends,
)


def queue(rt: Runtime, request_ids: list[str]) -> list[int]:
    """One recorded approval event per request, as the webhook service leaves them."""
    rows = [record(rt, approval_changed(request_id)) for request_id in request_ids]
    assert all(row is not None for row in rows)
    return [row for row in rows if row is not None]


def stored(rt: Runtime, row: int) -> inbound.StoredEvent:
    with rt.engine.connect() as conn:
        found = inbound.get(conn, row)
    assert found is not None
    return found


@contextmanager
def wecom_rate_limited(sandbox: Any) -> Iterator[None]:
    """WeCom answers every call with its rate-limit error until the block ends."""
    sandbox.fault("wecom", "ratelimit")
    try:
        yield
    finally:
        sandbox.clear_faults("wecom")
        time.sleep(2 * FAULT_CACHE_S)  # the emulator's fault cache forgets it


def approvals(
    sandbox: Any, count: int, approvers: list[str] | None = None
) -> list[tuple[str, str]]:
    return [new_approval(sandbox, "E00010", approvers or ["E00011"]) for _ in range(count)]


def test_queued_events_handled_by_one_task_make_exactly_one_effect_each(rt, sandbox) -> None:
    made = approvals(sandbox, 3)
    rows = queue(rt, [request_id for request_id, _ in made])

    status = events.handle(rt, rows[0])

    assert status is EventStatus.DONE
    assert [stored(rt, row).status for row in rows] == [EventStatus.DONE] * 3
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_batch_is_one_webhook_run_per_flow(rt, sandbox) -> None:
    rows = queue(rt, [request_id for request_id, _ in approvals(sandbox, 3)])

    events.handle(rt, rows[0])

    with rt.engine.connect() as conn:
        run = runs.latest(conn, WECOM_FLOW, webhook=True)
    assert run is not None
    assert (run.status, run.counts["pulled"], run.counts["written"]) == (
        runs.RunStatus.SUCCEEDED,
        3,
        3,
    )


def test_the_redelivered_task_of_a_batched_event_does_nothing(rt, sandbox) -> None:
    made = approvals(sandbox, 2)
    rows = queue(rt, [request_id for request_id, _ in made])
    events.handle(rt, rows[0])

    again = events.handle(rt, rows[1])

    assert again is EventStatus.DONE
    assert stored(rt, rows[1]).attempts == 1
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_two_events_about_one_approval_in_a_batch_send_one_card(rt, sandbox) -> None:
    [(request_id, title)] = approvals(sandbox, 1)
    rows = queue(rt, [request_id, request_id])

    events.handle(rt, rows[0])

    assert [stored(rt, row).status for row in rows] == [EventStatus.DONE] * 2
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_batch_dead_letters_an_unmapped_approver_and_handles_the_rest(rt, sandbox) -> None:
    unmapped, title_unmapped = new_approval(sandbox, "E00010", ["1"])  # the admin: no IM account
    fine = approvals(sandbox, 2)
    rows = queue(rt, [fine[0][0], unmapped, fine[1][0]])

    events.handle(rt, rows[0])

    assert [stored(rt, row).status for row in rows] == [EventStatus.DONE] * 3
    with rt.engine.connect() as conn:
        letters = deadletters.open_letters(conn, WECOM_FLOW)
    assert [d.source_id for d in letters] == [unmapped]
    assert wecom_sends(sandbox, title_unmapped) == []
    for _, title in fine:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_an_event_whose_record_cannot_be_read_fails_alone_and_the_rest_are_handled(
    rt, sandbox
) -> None:
    fine = approvals(sandbox, 2)
    rows = queue(rt, [fine[0][0], " ", fine[1][0]])  # the OA refuses a blank request id

    status = events.handle(rt, rows[0])

    assert status is EventStatus.DONE
    bad = stored(rt, rows[1])
    assert bad.status is EventStatus.FAILED
    assert "PARAM_ERROR" in (bad.error or "")
    assert stored(rt, rows[2]).status is EventStatus.DONE
    for _, title in fine:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_failed_event_of_a_batch_is_replayable(rt, sandbox) -> None:
    [(request_id, title)] = approvals(sandbox, 1)
    rows = queue(rt, [request_id])
    with rt.engine.begin() as conn:  # a failed try, as if the vendor had refused it then
        inbound.finish(conn, rows[0], EventStatus.FAILED, "VendorRejected")
        inbound.requeue(conn, rows)

    status = events.handle(rt, rows[0])

    assert status is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_an_event_in_another_tasks_batch_is_left_to_that_batch(rt, sandbox) -> None:
    [(request_id, title)] = approvals(sandbox, 1)
    [row] = queue(rt, [request_id])

    with rt.engine.begin() as conn:  # another task holds it, at work on it now
        assert inbound.claim(conn, row, inbound.Lease("another task", 600)) is not None

    status = events.handle(rt, row)

    assert status is EventStatus.QUEUED
    assert stored(rt, row).attempts == 0
    assert wecom_sends(sandbox, title) == []


def test_a_task_whose_event_another_task_holds_takes_none_of_the_events_beside_it(
    rt, sandbox
) -> None:
    made = approvals(sandbox, 2)
    rows = queue(rt, [request_id for request_id, _ in made])
    with rt.engine.begin() as conn:  # another task holds the first, at work on it now
        assert inbound.claim(conn, rows[0], inbound.Lease("another task", 600)) is not None

    status = events.handle(rt, rows[0])

    assert status is EventStatus.QUEUED
    assert stored(rt, rows[1]).owner is None  # free for its own task
    assert wecom_sends(sandbox, made[1][1]) == []


def test_an_event_tried_before_waits_for_its_own_retry(rt, sandbox) -> None:
    made = approvals(sandbox, 2)
    rows = queue(rt, [request_id for request_id, _ in made])
    with rt.engine.begin() as conn:
        inbound.start_attempt(conn, rows[1])  # it failed once: its task retries after a wait

    events.handle(rt, rows[0])

    assert stored(rt, rows[1]).status is EventStatus.QUEUED
    assert wecom_sends(sandbox, made[1][1]) == []


def test_a_transient_error_leaves_the_batch_queued_and_sends_the_others_back(rt, sandbox) -> None:
    made = approvals(sandbox, 2)
    rows = queue(rt, [request_id for request_id, _ in made])
    resent: list[tuple[int, float]] = []
    with wecom_rate_limited(sandbox), pytest.raises(RateLimited):
        events.handle(rt, rows[0], resend=lambda row, wait: resent.append((row, wait)))

    assert [stored(rt, row).status for row in rows] == [EventStatus.QUEUED] * 2
    assert [row for row, _ in resent] == [rows[1]]
    assert resent[0][1] > 0
    assert [events.handle(rt, row) for row in rows] == [EventStatus.DONE] * 2
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_batch_takes_no_more_than_its_limit(rt, sandbox, monkeypatch) -> None:
    monkeypatch.setattr(events, "BATCH_LIMIT", 2)
    rows = queue(rt, [request_id for request_id, _ in approvals(sandbox, 3)])

    events.handle(rt, rows[0])

    assert [stored(rt, row).status for row in rows] == [
        EventStatus.DONE,
        EventStatus.DONE,
        EventStatus.QUEUED,
    ]


# -- events that arrived together, sent in one task (events.handle_all) -----------------------
def test_events_sent_in_one_task_are_each_handled_once(rt, sandbox, monkeypatch) -> None:
    monkeypatch.setattr(events, "BATCH_LIMIT", 1)  # no batch: each row through its own turn
    made = approvals(sandbox, 3)
    rows = queue(rt, [request_id for request_id, _ in made])

    events.handle_all(rt, rows, resend=lambda row, wait: pytest.fail(f"{row} resent"))

    assert [stored(rt, row).status for row in rows] == [EventStatus.DONE] * 3
    assert [stored(rt, row).attempts for row in rows] == [1] * 3
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_failing_event_in_a_task_of_several_stops_only_itself(rt, sandbox, monkeypatch) -> None:
    monkeypatch.setattr(events, "BATCH_LIMIT", 1)
    fine = approvals(sandbox, 2)
    rows = queue(rt, [fine[0][0], " ", fine[1][0]])  # the OA refuses a blank request id

    events.handle_all(rt, rows, resend=lambda row, wait: pytest.fail(f"{row} resent"))

    assert [stored(rt, row).status for row in rows] == [
        EventStatus.DONE,
        EventStatus.FAILED,
        EventStatus.DONE,
    ]
    for _, title in fine:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_transient_error_in_a_task_of_several_sends_each_row_back_alone(rt, sandbox) -> None:
    made = approvals(sandbox, 2)
    rows = queue(rt, [request_id for request_id, _ in made])
    resent: list[tuple[int, float]] = []
    with wecom_rate_limited(sandbox):
        events.handle_all(rt, rows, resend=lambda row, wait: resent.append((row, wait)))

    assert [stored(rt, row).status for row in rows] == [EventStatus.QUEUED] * 2
    assert sorted(row for row, _ in resent) == rows
    assert all(wait > 0 for _, wait in resent)
    assert [events.handle(rt, row) for row in rows] == [EventStatus.DONE] * 2
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_a_row_that_does_not_exist_in_a_task_of_several_is_skipped(rt, sandbox) -> None:
    [(request_id, title)] = approvals(sandbox, 1)
    [row] = queue(rt, [request_id])

    events.handle_all(rt, [row + 1000, row], resend=lambda r, wait: pytest.fail(f"{r} resent"))

    assert stored(rt, row).status is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]
