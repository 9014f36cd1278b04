"""A disabled flow is never run by what its operator did not ask for: not by a pull (a Beat
started before it was disabled still sends them), not by a webhook event, not by a press on
a card it sent while it was enabled. Only `syncctl run FLOW --even-if-disabled` runs it."""

from __future__ import annotations

import sqlalchemy as sa

from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import runs
from tests.events.approval_scene import (
    WECOM_FLOW,
    approval_changed,
    deliver,
    new_approval,
    oa_actions,
    outcome,
    press_wecom,
    switched,
    wecom_card,
    wecom_id,
    wecom_sends,
)

APPLICANT, APPROVER = "E00020", "E00021"


def runs_of(rt: Runtime, flow: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(runs.c.flow == flow)).scalar())


def test_given_a_disabled_flow_a_pull_opens_no_run(rt) -> None:
    off = switched(rt, WECOM_FLOW, enabled=False)

    assert steps.start_run(off, WECOM_FLOW, "schedule", request_id="t1") is None
    assert runs_of(off, WECOM_FLOW) == 0


def test_given_even_if_disabled_a_pull_of_a_disabled_flow_opens_a_run(rt) -> None:
    off = switched(rt, WECOM_FLOW, enabled=False)

    run_id = steps.start_run(off, WECOM_FLOW, "manual", request_id="t1", even_if_disabled=True)

    assert run_id is not None
    assert runs_of(off, WECOM_FLOW) == 1


def test_given_a_disabled_flow_its_approval_webhook_does_not_run_it(rt, sandbox) -> None:
    off = switched(rt, WECOM_FLOW, enabled=False)
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])

    deliver(off, approval_changed(request_id))

    assert runs_of(off, WECOM_FLOW) == 0
    assert wecom_sends(sandbox, title) == []


def test_given_a_card_sent_before_its_flow_was_disabled_a_press_changes_nothing(
    rt, sandbox
) -> None:
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    deliver(rt, approval_changed(request_id))  # the card, while the flow was enabled
    card = wecom_card(sandbox, title, wecom_id(APPROVER))
    off = switched(rt, WECOM_FLOW, enabled=False)

    press = press_wecom(sandbox, str(card["task_id"]), wecom_id(APPROVER), f"approve:{request_id}")
    status = deliver(off, press)

    assert status is EventStatus.IGNORED
    assert outcome(off, press).error == f"{WECOM_FLOW} is disabled: the press changes nothing"
    assert oa_actions(sandbox, request_id) == []
