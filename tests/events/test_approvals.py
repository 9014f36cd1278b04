"""approval_changed events, handled against the real sandbox, PostgreSQL and Redis: the
record is re-read from the OA and synced through the pull's own stages and effect keys, so a
late, repeated or out-of-order delivery converges on the OA's state and nothing is sent twice,
by the event or by the scheduled pull that backs it up.
"""

from __future__ import annotations

from sync_pipeline.connectors.base import ReadsOne
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.events.approvals import wanting
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.state import cursors, deadletters, idmap, pages, runs
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.status import flow_statuses
from tests.conftest import next_second
from tests.events.approval_scene import (
    OA,
    WECOM_FLOW,
    approval_changed,
    deliver,
    entries,
    new_approval,
    outcome,
    record,
    wecom_id,
    wecom_sends,
)


def link(rt: Runtime, request_id: str) -> idmap.Link:
    """What the WeCom flow's id map holds for a request."""
    with rt.engine.connect() as conn:
        found = idmap.lookup(conn, ("oa", "approvals"), ("wecom", "messages"), [request_id])
    return found[request_id]


def pulled(rt: Runtime, run_id: int | None, request_id: str) -> bool:
    """Whether the run's pages hold the request (else a test of the pull proves nothing)."""
    assert run_id is not None
    with rt.engine.connect() as conn:
        stored = [pages.get(conn, page_id) for page_id in pages.page_ids(conn, run_id)]
    return any(r.source_id == request_id for page in stored for r in page.records)


def oa_version(rt: Runtime, request_id: str) -> str:
    source = rt.connector(OA)
    assert isinstance(source, ReadsOne)
    now = source.read_one("approvals", request_id)
    assert now is not None
    return now.version


# -- one event ----------------------------------------------------------------------------------
def test_an_approval_event_sends_each_approver_their_card(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])

    status = deliver(rt, approval_changed(request_id))

    assert status is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]
    assert len(entries(sandbox, "feishu", title)) == 1


def test_each_flow_taking_the_oas_webhooks_gets_a_webhook_run_that_moves_no_cursor(
    rt, sandbox
) -> None:
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"])

    deliver(rt, approval_changed(request_id))

    flows = [f.name for f in wanting(rt, OA)]
    assert WECOM_FLOW in flows
    with rt.engine.connect() as conn:
        for flow in flows:
            run = runs.latest(conn, flow, webhook=True)
            assert run is not None
            assert (run.trigger, run.status, run.fence) == (
                "webhook",
                runs.RunStatus.SUCCEEDED,
                None,
            )
            assert (run.counts["pulled"], run.counts["written"]) == (1, 1)
            assert cursors.get(conn, flow).cursor is None


def test_status_shows_the_last_event_beside_the_last_pull(rt, sandbox) -> None:
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"])
    steps.run_inline(rt, WECOM_FLOW, "schedule")

    deliver(rt, approval_changed(request_id))

    shown = {s.flow: s for s in flow_statuses(rt.engine, rt.config)}[WECOM_FLOW]
    assert shown.last_run is not None
    assert shown.last_run.trigger == "schedule"
    assert shown.last_event is not None
    assert shown.last_event.trigger == "webhook"
    assert shown.cursor == shown.last_run.cursor_after


def test_an_event_from_a_source_no_flow_takes_webhooks_from_is_ignored(rt, sandbox) -> None:
    event = InboundEvent("sandbox_agora", "agora", "e-1", EventKind.APPROVAL_CHANGED, "", {})

    status = deliver(rt, event)

    assert status is EventStatus.IGNORED
    assert "sandbox_agora" in (outcome(rt, event).error or "")


def test_an_unmapped_approver_becomes_a_dead_letter_with_its_reason(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["1"])  # the admin has no IM account

    deliver(rt, approval_changed(request_id))

    with rt.engine.connect() as conn:
        letters = deadletters.open_letters(conn, WECOM_FLOW)
    assert [(d.source_id, d.reason) for d in letters] == [
        (request_id, "no wecom user for OA user 1")
    ]
    assert wecom_sends(sandbox, title) == []


# -- repeated and out-of-order deliveries -----------------------------------------------------
def test_the_same_delivery_twice_is_recorded_once(rt, sandbox) -> None:
    request_id, _ = new_approval(sandbox, "E00010", ["E00011"])
    event = approval_changed(request_id)

    first, second = record(rt, event), record(rt, event)

    assert first is not None
    assert second is None


def test_two_deliveries_of_one_change_send_one_card(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    deliver(rt, approval_changed(request_id))

    again = deliver(rt, approval_changed(request_id))

    assert again is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]
    assert len(entries(sandbox, "feishu", title)) == 1


def test_a_redelivered_task_finds_the_event_handled_and_does_nothing(rt, sandbox) -> None:
    from sync_pipeline.pipeline import events

    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    row = record(rt, approval_changed(request_id))
    assert row is not None
    events.handle(rt, row)

    again = events.handle(rt, row)

    assert again is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_events_out_of_order_converge_on_the_oas_final_state(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    created = approval_changed(request_id, "pending")
    sandbox.transition(request_id, "approve", by="E00011")
    approved = approval_changed(request_id, "approved")

    deliver(rt, approved)
    deliver(rt, created)  # late: the request is approved by now

    assert wecom_sends(sandbox, title) == [("message", wecom_id("E00010"))]
    assert link(rt, request_id).source_version == oa_version(rt, request_id)
    assert (link(rt, request_id).payload or {})["status"] == "approved"


# -- a slow pull racing a webhook ----------------------------------------------------------
def test_a_page_read_before_a_webhook_is_superseded_and_sends_nothing_stale(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    next_second()
    run_id = steps.start_run(rt, WECOM_FLOW, "schedule")
    assert run_id is not None
    page_ids: list[int] = []
    steps.pull(rt, run_id, page_ids.append)  # reads the request while it is pending
    assert pulled(rt, run_id, request_id)
    sandbox.transition(request_id, "approve", by="E00011")
    deliver(rt, approval_changed(request_id, "approved"))

    for page_id in page_ids:  # the slow pull goes on with what it read
        steps.plan(rt, page_id)
        steps.write(rt, page_id)
        steps.commit(rt, run_id)

    assert wecom_sends(sandbox, title) == [("message", wecom_id("E00010"))]
    assert link(rt, request_id).source_version == oa_version(rt, request_id)


def test_a_page_planned_before_a_webhook_never_moves_the_id_map_back(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    next_second()
    run_id = steps.start_run(rt, WECOM_FLOW, "schedule")
    assert run_id is not None
    page_ids: list[int] = []
    steps.pull(rt, run_id, page_ids.append)
    assert pulled(rt, run_id, request_id)
    for page_id in page_ids:
        steps.plan(rt, page_id)  # plans the card of the pending request
    sandbox.transition(request_id, "approve", by="E00011")
    deliver(rt, approval_changed(request_id, "approved"))

    for page_id in page_ids:
        steps.write(rt, page_id)
        steps.commit(rt, run_id)

    held = link(rt, request_id)
    assert held.source_version == oa_version(rt, request_id)
    assert (held.payload or {})["status"] == "approved"
    assert wecom_sends(sandbox, title) == [  # planned before the webhook, so still sent
        ("message", wecom_id("E00010")),
        ("card", wecom_id("E00011")),
    ]


# -- real time and the schedule together ------------------------------------------------------
def test_an_approval_notified_by_its_webhook_is_not_notified_again_by_the_pull(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    deliver(rt, approval_changed(request_id))
    next_second()

    run_id = steps.run_inline(rt, WECOM_FLOW, "schedule")

    assert pulled(rt, run_id, request_id)
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_an_approval_whose_webhook_was_lost_is_caught_by_the_next_pull(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    next_second()

    run_id = steps.run_inline(rt, WECOM_FLOW, "schedule")

    assert pulled(rt, run_id, request_id)
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]
    deliver(rt, approval_changed(request_id))  # the event turns up after all: nothing new
    assert wecom_sends(sandbox, title) == [("card", wecom_id("E00011"))]


def test_an_approval_decided_in_the_oa_and_synced_by_webhook_is_not_resent_by_the_pull(
    rt, sandbox
) -> None:
    request_id, title = new_approval(sandbox, "E00010", ["E00011"])
    deliver(rt, approval_changed(request_id))
    sandbox.transition(request_id, "approve", by="E00011")
    deliver(rt, approval_changed(request_id, "approved"))
    next_second()

    run_id = steps.run_inline(rt, WECOM_FLOW, "schedule")

    assert pulled(rt, run_id, request_id)
    assert wecom_sends(sandbox, title) == [
        ("card", wecom_id("E00011")),
        ("message", wecom_id("E00010")),
    ]
