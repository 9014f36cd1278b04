"""Inbound events are held by leases, not by locks (issue 11, point 4), against the real
sandbox, PostgreSQL and Redis: a task claims its event with a lease committed before any vendor
call; a lease that runs out unfinished (its holder crashed) is taken over by the next task or
re-sent by `sweep_expired`, and the effect keys keep the event's effects from doubling; a long
batch renews its lease; and a holder whose lease was taken over records nothing over the new
holder's outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

import pytest
import sqlalchemy as sa

from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.events import Outcome, approvals
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import InboundEvent
from sync_pipeline.state import inbound
from sync_pipeline.state.inbound import EventStatus
from tests.conftest import wait_for
from tests.events.approval_scene import (
    approval_changed,
    new_approval,
    record,
    wecom_id,
    wecom_sends,
)

APPLICANT, APPROVER = "E00010", "E00011"
SHORT_LEASE_S = 1.0
BatchHandler = Callable[[Runtime, Sequence[InboundEvent]], Sequence[Outcome]]


class WorkerKilled(BaseException):
    """The worker dies (SIGKILL, the OOM killer): nothing after this point runs."""


@pytest.fixture
def short_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases of a second, so that a test sees one run out."""
    monkeypatch.setattr(events, "LEASE_S", SHORT_LEASE_S)


FirstTry = Callable[[BatchHandler, Runtime, Sequence[InboundEvent]], Sequence[Outcome]]


def first_handled_by(monkeypatch: pytest.MonkeyPatch, first: FirstTry) -> None:
    """The first batch of approval events is handled by `first` (given the real handler, to
    call or not); every later one by the real handler."""
    real = approvals.handle_batch
    calls: list[int] = []

    def handle_batch(rt: Runtime, batch: Sequence[InboundEvent]) -> Sequence[Outcome]:
        calls.append(len(batch))
        if len(calls) == 1:
            return first(real, rt, batch)
        return real(rt, batch)

    monkeypatch.setattr(approvals, "handle_batch", handle_batch)


def one_event(rt: Runtime, sandbox) -> tuple[int, str]:
    """(row id, title) of one recorded approval event, as the webhook service leaves it."""
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    row = record(rt, approval_changed(request_id))
    assert row is not None
    return row, title


def stored(rt: Runtime, row: int) -> inbound.StoredEvent:
    with rt.engine.connect() as conn:
        found = inbound.get(conn, row)
    assert found is not None
    return found


def db_now(rt: Runtime) -> datetime:
    with rt.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.now())).scalar_one()


def lease_ran_out(rt: Runtime, row: int) -> None:
    """Wait (on PostgreSQL's clock, the leases' own) until the row's lease has run out."""
    until = stored(rt, row).lease_until
    assert until is not None
    wait_for(lambda: db_now(rt) > until, 10 * SHORT_LEASE_S, interval_s=0.05, what="the lease")


def killed_after_the_vendor_calls(
    real: BatchHandler, rt: Runtime, batch: Sequence[InboundEvent]
) -> Sequence[Outcome]:
    real(rt, batch)  # the card is sent and its effect recorded...
    raise WorkerKilled  # ...and the worker dies before the event's outcome is recorded


# -- a claim is a lease, committed before the vendors are called ----------------------------------
def test_a_claimed_event_is_leased_to_its_task_until_it_is_finished(
    rt, sandbox, monkeypatch
) -> None:
    row, _ = one_event(rt, sandbox)
    seen: list[inbound.StoredEvent] = []

    def look(real: BatchHandler, rt: Runtime, batch: Sequence[InboundEvent]) -> Sequence[Outcome]:
        seen.append(stored(rt, row))  # read on another connection: the claim is committed
        return real(rt, batch)

    first_handled_by(monkeypatch, look)

    status = events.handle(rt, row)

    assert status is EventStatus.DONE
    [during] = seen
    assert during.owner is not None
    assert during.lease_until is not None
    assert during.lease_until > db_now(rt)
    after = stored(rt, row)
    assert (after.owner, after.lease_until) == (during.owner, None)


def test_a_task_whose_event_is_leased_to_a_live_task_leaves_it_alone(
    rt, sandbox, monkeypatch
) -> None:
    row, title = one_event(rt, sandbox)
    first_handled_by(monkeypatch, killed_after_the_vendor_calls)
    with pytest.raises(WorkerKilled):
        events.handle(rt, row)

    status = events.handle(rt, row)  # the redelivered task, before the lease ran out

    assert status is EventStatus.QUEUED
    assert stored(rt, row).attempts == 0
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


def test_a_task_of_several_events_leaves_the_one_another_task_holds_to_that_task(
    rt, sandbox
) -> None:
    first, first_title = one_event(rt, sandbox)
    held, held_title = one_event(rt, sandbox)
    other = inbound.Lease("another task", events.LEASE_S)
    with rt.engine.begin() as conn:
        assert inbound.claim_batch(conn, held, other, batchable=[], limit=1)
    resent: list[int] = []

    events.handle_all(rt, [first, held], resend=lambda row, wait: resent.append(row))

    assert stored(rt, first).status is EventStatus.DONE
    after = stored(rt, held)
    assert (after.status, after.owner, after.attempts) == (EventStatus.QUEUED, "another task", 0)
    assert resent == []
    assert wecom_sends(sandbox, first_title) == [("card", wecom_id(APPROVER))]
    assert wecom_sends(sandbox, held_title) == []


# -- a lease that runs out unfinished is taken over ---------------------------------------------
def test_an_expired_lease_is_taken_over_by_the_next_task_and_the_event_handled_once(
    rt, sandbox, monkeypatch, short_leases
) -> None:
    row, title = one_event(rt, sandbox)
    first_handled_by(monkeypatch, killed_after_the_vendor_calls)
    with pytest.raises(WorkerKilled):
        events.handle(rt, row)
    lease_ran_out(rt, row)

    status = events.handle(rt, row)

    assert status is EventStatus.DONE
    assert (stored(rt, row).status, stored(rt, row).attempts) == (EventStatus.DONE, 1)
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


def test_the_sweep_resends_the_events_whose_lease_ran_out_and_no_others(
    rt, sandbox, monkeypatch, short_leases
) -> None:
    crashed, title = one_event(rt, sandbox)
    first_handled_by(monkeypatch, killed_after_the_vendor_calls)
    with pytest.raises(WorkerKilled):
        events.handle(rt, crashed)
    lease_ran_out(rt, crashed)
    held, _ = one_event(rt, sandbox)
    with rt.engine.begin() as conn:  # a live task is at work on it
        assert inbound.claim(conn, held, inbound.Lease("a live task", 600)) is not None
    one_event(rt, sandbox)  # never claimed: its own task is on its way
    resent: list[tuple[int, float]] = []

    count = events.sweep_expired(rt, lambda row, wait: resent.append((row, wait)))

    assert count == 1
    assert resent == [(crashed, 0.0)]
    assert events.handle(rt, crashed) is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


def test_an_event_the_sweep_resent_is_not_resent_by_the_next_sweep_while_its_task_waits(
    rt, sandbox, monkeypatch, short_leases
) -> None:
    row, _ = one_event(rt, sandbox)
    first_handled_by(monkeypatch, killed_after_the_vendor_calls)
    with pytest.raises(WorkerKilled):
        events.handle(rt, row)
    lease_ran_out(rt, row)
    resent: list[int] = []
    events.sweep_expired(rt, lambda r, wait: resent.append(r))

    again = events.sweep_expired(rt, lambda r, wait: resent.append(r))

    assert again == 0
    assert resent == [row]


# -- a long batch renews its lease ---------------------------------------------------------------
def test_a_task_at_work_longer_than_its_lease_renews_it_and_keeps_its_event(
    rt, sandbox, monkeypatch, short_leases
) -> None:
    row, title = one_event(rt, sandbox)
    others: list[EventStatus] = []

    def long(real: BatchHandler, rt: Runtime, batch: Sequence[InboundEvent]) -> Sequence[Outcome]:
        claimed_until = stored(rt, row).lease_until
        assert claimed_until is not None
        wait_for(
            lambda: db_now(rt) > claimed_until and stored(rt, row).lease_until > db_now(rt),
            10 * SHORT_LEASE_S,
            interval_s=0.05,
            what="the first lease over, and renewed",
        )
        others.append(events.handle(rt, row))  # another task for the row, meanwhile
        return real(rt, batch)

    first_handled_by(monkeypatch, long)

    status = events.handle(rt, row)

    assert status is EventStatus.DONE
    assert others == [EventStatus.QUEUED]
    assert stored(rt, row).attempts == 1
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


# -- a holder that lost its lease ----------------------------------------------------------------
def test_a_holder_whose_lease_was_taken_over_does_not_overwrite_the_new_holders_outcome(
    rt, sandbox, monkeypatch, short_leases
) -> None:
    monkeypatch.setattr(events, "RENEWALS_PER_LEASE", 0.01)  # its renewals stall (a frozen VM)
    row, title = one_event(rt, sandbox)
    at_work, taken_over = threading.Event(), threading.Event()

    def stale(real: BatchHandler, rt: Runtime, batch: Sequence[InboundEvent]) -> Sequence[Outcome]:
        at_work.set()
        assert taken_over.wait(30), "the new holder did not finish"
        return [RuntimeError("the stale holder's failure")] * len(batch)

    statuses: list[EventStatus] = []
    first_handled_by(monkeypatch, stale)
    stale_task = threading.Thread(target=lambda: statuses.append(events.handle(rt, row)))
    stale_task.start()
    try:
        assert at_work.wait(30), "the first holder did not start"
        lease_ran_out(rt, row)
        new_holder = events.handle(rt, row)
    finally:
        taken_over.set()
        stale_task.join(timeout=30)

    assert new_holder is EventStatus.DONE
    assert statuses == [EventStatus.DONE]  # the stale holder reports the row as it stands
    after = stored(rt, row)
    assert (after.status, after.attempts) == (EventStatus.DONE, 1)
    assert "stale holder" not in (after.error or "")
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]
