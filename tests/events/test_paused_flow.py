"""A paused flow's webhook events wait, queued, spending no try, and are handled once the flow
is resumed (state/controls.py, errors.FlowPaused): nothing is lost while it is paused."""

from __future__ import annotations

from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import controls, inbound
from sync_pipeline.state.inbound import EventStatus
from tests.events.approval_scene import (
    WECOM_FLOW,
    approval_changed,
    new_approval,
    record,
    wecom_id,
    wecom_sends,
)


def set_paused(rt: Runtime, paused: bool) -> None:
    with rt.engine.begin() as conn:
        assert controls.set_paused(conn, WECOM_FLOW, paused, "operator", "maintenance")


def stored(rt: Runtime, row_id: int) -> inbound.StoredEvent:
    with rt.engine.connect() as conn:
        found = inbound.get(conn, row_id)
    assert found is not None
    return found


def test_an_event_of_a_paused_flow_waits_queued_spending_no_try(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    set_paused(rt, True)
    row = record(rt, approval_changed(request_id))
    assert row is not None
    resent: list[tuple[int, float]] = []

    status = events.handle(rt, row, resend=lambda row_id, wait: resent.append((row_id, wait)))

    assert status is EventStatus.QUEUED
    assert [row_id for row_id, _ in resent] == [row]
    assert resent[0][1] > 0  # looked at again later, not at once
    assert stored(rt, row).attempts == 0
    assert wecom_sends(sandbox, title) == []


def test_a_waiting_event_is_handled_once_its_flow_is_resumed(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    set_paused(rt, True)
    row = record(rt, approval_changed(request_id))
    assert row is not None
    events.handle(rt, row, resend=lambda row_id, wait: None)
    set_paused(rt, False)

    status = events.handle(rt, row, resend=lambda row_id, wait: None)

    assert status is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]
