"""The one effect protocol (pipeline/effects.py), one test per branch, against the real
sandbox, PostgreSQL and Redis: a fresh key is made once; a done key is not made again; a key
whose answer was lost is resent only inside the vendor's dedupe window, else looked up at the
vendor (an OA decision: its sign log), else parked as unknown while the rest of its batch goes
on.

A lost answer is staged as it happens: the vendor is called (or not) outside the protocol, and
the key is left pending with its claim moved into the past, as a worker that died after the
call leaves it.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from sync_pipeline.connectors.base import Decision, DecisionRequest
from sync_pipeline.pipeline import effects as protocol
from sync_pipeline.pipeline.events import cards
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import (
    Notification,
    NotifyKind,
    Record,
    WriteOp,
    WriteRequest,
    WriteStatus,
)
from sync_pipeline.state import deadletters, effects, runs
from sync_pipeline.state.schema import effects as effects_table
from tests.events.approval_scene import (
    OA,
    WECOM_FLOW,
    approval_changed,
    deliver,
    new_approval,
    oa_actions,
    oa_id,
    press_wecom,
    wecom_card,
    wecom_id,
    wecom_sends,
)

APPLICANT, APPROVER, COLLEAGUE = "E00010", "E00011", "E00012"
LOST = timedelta(seconds=protocol.IN_FLIGHT_S + 1)  # the attempt that claimed it is gone
FOUR_HOURS = timedelta(hours=4, minutes=1)  # past WeCom's longest duplicate check


# -- the scene ------------------------------------------------------------------------------
def message(to: str) -> tuple[WriteRequest, str]:
    """A WeCom text message to `to` with a title of its own: (request, title)."""
    title = f"Protocol check {uuid.uuid4().hex[:10]}"
    payload = Notification(NotifyKind.MESSAGE, wecom_id(to), {"text": title})
    request = WriteRequest(uuid.uuid4().hex * 2, f"src-{title[-10:]}", WriteOp.CREATE, payload)
    return request, title


def run_of(rt: Runtime, flow: str) -> int:
    with rt.engine.begin() as conn:
        return runs.start_webhook(conn, flow, runs.WEBHOOK)


def lost_answer(rt: Runtime, key: str, system: str, flow: str, age: timedelta) -> None:
    """The key as an attempt that died after its call leaves it: pending, claimed `age` ago."""
    with rt.engine.begin() as conn:
        effects.claim(conn, flow, system, [key])
        conn.execute(
            effects_table.update()
            .where(effects_table.c.key == key)
            .values(created_at=sa.func.now() - age, updated_at=sa.func.now() - age)
        )


def status_of(rt: Runtime, key: str) -> effects.Effect:
    with rt.engine.connect() as conn:
        return effects.get(conn, [key])[key]


def decides(rt: Runtime) -> protocol.Decides:
    flow = rt.flow(WECOM_FLOW)
    source = rt.connector(flow.source.connector)
    return protocol.Decides(source, flow.source.stream, OA, "oa")  # type: ignore[arg-type]


def current(rt: Runtime, request_id: str) -> Record:
    source = rt.connector(OA)
    found = source.read_one("approvals", request_id)  # type: ignore[attr-defined]
    assert found is not None
    return found


def approval(rt: Runtime, sandbox) -> tuple[str, WriteRequest]:
    """A pending request at APPROVER, and the effect of APPROVER approving it there."""
    request_id, _ = new_approval(sandbox, APPLICANT, [APPROVER, COLLEAGUE])
    node = str(current(rt, request_id).payload["node"])
    decision = DecisionRequest(request_id, Decision.APPROVE, oa_id(APPROVER), node, "ok")
    return request_id, decision.request(uuid.uuid4().hex * 2)


# -- a fresh key, a done key --------------------------------------------------------------------
def test_given_a_fresh_key_then_the_effect_is_made_once_and_recorded_done(rt, sandbox) -> None:
    request, title = message(APPROVER)

    made = protocol.make_effects(rt, rt.flow(WECOM_FLOW), [request], run_of(rt, WECOM_FLOW))

    assert made.written == 1
    assert wecom_sends(sandbox, title) == [("message", wecom_id(APPROVER))]
    assert status_of(rt, request.effect_key).status is effects.EffectStatus.DONE


def test_given_a_done_key_then_the_effect_is_not_made_again(rt, sandbox) -> None:
    request, title = message(APPROVER)
    flow = rt.flow(WECOM_FLOW)
    protocol.make_effects(rt, flow, [request], run_of(rt, WECOM_FLOW))
    calls = sandbox.calls("wecom")

    settled = protocol.make(rt, flow.name, protocol.writes_of(rt, flow), [request])

    outcome = settled.outcomes[request.effect_key]
    assert (outcome.status, outcome.via) == (WriteStatus.DONE, protocol.Via.ALREADY)
    assert sandbox.calls("wecom") == calls
    assert wecom_sends(sandbox, title) == [("message", wecom_id(APPROVER))]


# -- a lost answer ------------------------------------------------------------------------------
def test_given_a_lost_answer_inside_the_vendors_dedupe_window_then_it_is_resent_once(
    rt, sandbox
) -> None:
    request, title = message(APPROVER)
    flow = rt.flow(WECOM_FLOW)
    writes = protocol.writes_of(rt, flow)
    writes.attempt(request)  # it reached WeCom; the answer never made it back
    lost_answer(rt, request.effect_key, "wecom", flow.name, LOST)

    settled = protocol.make(rt, flow.name, writes, [request], patient=True)

    outcome = settled.outcomes[request.effect_key]
    assert (outcome.status, outcome.via) == (WriteStatus.DONE, protocol.Via.SENT)
    assert wecom_sends(sandbox, title) == [("message", wecom_id(APPROVER))]  # WeCom deduped it
    assert status_of(rt, request.effect_key).status is effects.EffectStatus.DONE


def test_given_a_lost_decision_the_oa_made_then_it_is_recorded_done_without_a_call(
    rt, sandbox
) -> None:
    request_id, request = approval(rt, sandbox)
    decides(rt).attempt(request)  # the OA approved; the answer was lost
    lost_answer(rt, request.effect_key, "oa", WECOM_FLOW, LOST)

    settled = protocol.make(rt, WECOM_FLOW, decides(rt), [request], patient=True)

    outcome = settled.outcomes[request.effect_key]
    assert (outcome.status, outcome.via) == (WriteStatus.DONE, protocol.Via.FOUND)
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(APPROVER))]
    found = status_of(rt, request.effect_key)
    assert (found.status, found.vendor_ref) == (effects.EffectStatus.DONE, oa_id(APPROVER))


def test_given_a_lost_decision_the_oa_never_got_then_it_is_made_once(rt, sandbox) -> None:
    request_id, request = approval(rt, sandbox)
    lost_answer(rt, request.effect_key, "oa", WECOM_FLOW, LOST)  # it died before the call

    settled = protocol.make(rt, WECOM_FLOW, decides(rt), [request], patient=True)

    outcome = settled.outcomes[request.effect_key]
    assert (outcome.status, outcome.via) == (WriteStatus.DONE, protocol.Via.SENT)
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(APPROVER))]
    assert current(rt, request_id).payload["node"] != request.notification.content["node"]


def test_given_a_lost_decision_on_a_request_decided_by_someone_else_then_it_failed_unsent(
    rt, sandbox
) -> None:
    request_id, request = approval(rt, sandbox)
    sandbox.transition(request_id, "revoke", by=oa_id(APPLICANT))  # withdrawn meanwhile
    lost_answer(rt, request.effect_key, "oa", WECOM_FLOW, LOST)

    settled = protocol.make(rt, WECOM_FLOW, decides(rt), [request], patient=True)

    outcome = settled.outcomes[request.effect_key]
    assert (outcome.status, outcome.via) == (WriteStatus.REJECTED, protocol.Via.FOUND)
    assert oa_actions(sandbox, request_id) == []
    assert status_of(rt, request.effect_key).status is effects.EffectStatus.FAILED


def test_given_a_lost_answer_nothing_can_dedupe_or_show_then_it_is_parked_and_the_batch_goes_on(
    rt, sandbox
) -> None:
    lost, lost_title = message(APPROVER)
    fresh, fresh_title = message(COLLEAGUE)
    flow = rt.flow(WECOM_FLOW)
    lost_answer(rt, lost.effect_key, "wecom", flow.name, FOUR_HOURS)

    made = protocol.make_effects(rt, flow, [lost, fresh], run_of(rt, WECOM_FLOW))

    assert (made.written, made.dead) == (1, 1)
    assert status_of(rt, lost.effect_key).status is effects.EffectStatus.UNKNOWN
    assert wecom_sends(sandbox, lost_title) == []  # never resent blindly
    assert wecom_sends(sandbox, fresh_title) == [("message", wecom_id(COLLEAGUE))]
    with rt.engine.connect() as conn:
        [letter] = [
            d
            for d in deadletters.open_letters(conn, flow.name)
            if d.record.get("effect_key") == lost.effect_key
        ]
    assert "check the target" in letter.reason


def test_given_a_parked_key_then_it_is_not_made_and_blocks_nothing(rt, sandbox) -> None:
    parked, parked_title = message(APPROVER)
    fresh, fresh_title = message(COLLEAGUE)
    flow = rt.flow(WECOM_FLOW)
    with rt.engine.begin() as conn:
        effects.claim(conn, flow.name, "wecom", [parked.effect_key])
        effects.finish(conn, parked.effect_key, effects.EffectStatus.UNKNOWN, error="crash window")

    made = protocol.make_effects(rt, flow, [parked, fresh], run_of(rt, WECOM_FLOW), patient=True)

    assert made.written == 1
    assert wecom_sends(sandbox, parked_title) == []
    assert wecom_sends(sandbox, fresh_title) == [("message", wecom_id(COLLEAGUE))]


# -- a press whose decision lost its answer -------------------------------------------------
def test_given_a_press_whose_oa_answer_was_lost_then_handling_it_again_settles_from_the_oa(
    rt, sandbox
) -> None:
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    deliver(rt, approval_changed(request_id))
    card = wecom_card(sandbox, title, wecom_id(APPROVER))
    pressed = press_wecom(
        sandbox, str(card["task_id"]), wecom_id(APPROVER), f"approve:{request_id}"
    )
    cards.handle(rt, pressed)  # the OA approved it ...
    with rt.engine.begin() as conn:  # ... and the worker died before recording the answer
        conn.execute(
            effects_table.update()
            .where(effects_table.c.source_id == request_id, effects_table.c.kind == "oa_action")
            .values(status="pending", updated_at=sa.func.now() - LOST)
        )

    cards.handle(rt, pressed)  # the press, redelivered

    assert oa_actions(sandbox, request_id) == [("approve", oa_id(APPROVER))]
    with rt.engine.connect() as conn:
        [decided] = effects.tried_for_source(conn, WECOM_FLOW, request_id, "oa_action")
    assert (decided.status, decided.detail["event"]) == (
        effects.EffectStatus.DONE,
        pressed.event_id,
    )
