"""Cards of requests decided elsewhere (issue 10, point 8), against the real sandbox,
PostgreSQL and Redis: when a request is approved, rejected or withdrawn in the OA's own web
page, every card we sent for it stops asking for a decision. It is updated in place where
the IM lets us do that on our own (WeCom with the unspent response_code its send returned,
for 72 h; DingTalk by outTrackId; Feishu for 14 days), and otherwise its recipient gets one
message naming who decided, how and when. Each once, however often the decision is seen.
"""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state.schema import effects
from tests.conftest import next_second
from tests.events.approval_scene import (
    DINGTALK_FLOW,
    WECOM_FLOW,
    approval_changed,
    deliver,
    dingtalk_id,
    name,
    new_approval,
    oa_id,
    press_wecom,
    wecom_card,
    wecom_id,
    wecom_texts,
    wecom_updates,
)
from tests.events.test_cards import dingtalk_card, dingtalk_updates, feishu_card, feishu_patches

APPLICANT, APPROVER = "E00010", "E00011"
CARD_CODE_TTL = timedelta(hours=72)


def carded(rt: Runtime, sandbox: SandboxClient) -> tuple[str, str, str]:
    """(request id, title, response_code of the card's send): a pending request whose
    approval webhook sent its approver a WeCom card."""
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    deliver(rt, approval_changed(request_id))
    return request_id, title, card_code(rt, request_id)


def card_code(rt: Runtime, request_id: str) -> str:
    with rt.engine.connect() as conn:
        detail = conn.execute(
            sa.select(effects.c.detail).where(
                effects.c.flow == WECOM_FLOW,
                effects.c.source_id == request_id,
                effects.c.kind == "card",
            )
        ).scalar_one()
    return str(detail["response_code"])


def decided_in_the_oa(
    rt: Runtime, sandbox: SandboxClient, request_id: str, action: str, by: str
) -> None:
    """Someone acts in the OA's own web page, and the OA's change webhook reaches us."""
    sandbox.transition(request_id, action, by=oa_id(by))
    deliver(rt, approval_changed(request_id, status="decided"))


def aged(rt: Runtime, request_id: str, by: timedelta) -> None:
    """The cards of a request were sent `by` ago."""
    with rt.engine.begin() as conn:
        conn.execute(
            effects.update()
            .where(effects.c.source_id == request_id, effects.c.kind == "card")
            .values(created_at=effects.c.created_at - by)
        )


# -- WeCom ------------------------------------------------------------------------------------
def test_given_a_request_approved_in_the_oa_then_the_wecom_card_shows_it_in_place(
    rt, sandbox
) -> None:
    request_id, _, code = carded(rt, sandbox)

    decided_in_the_oa(rt, sandbox, request_id, "approve", by=APPROVER)

    [update] = wecom_updates(sandbox, {code})
    assert update["button"]["replace_name"] == f"Approved by {name(APPROVER)}"
    assert update["userids"] == [wecom_id(APPROVER)]


def test_given_a_request_withdrawn_in_the_oa_then_the_wecom_card_says_who_withdrew_it(
    rt, sandbox
) -> None:
    request_id, _, code = carded(rt, sandbox)

    decided_in_the_oa(rt, sandbox, request_id, "revoke", by=APPLICANT)

    [update] = wecom_updates(sandbox, {code})
    assert update["button"]["replace_name"] == f"Withdrawn by {name(APPLICANT)}"


def test_given_the_cards_code_expired_then_its_recipient_gets_one_message_instead(
    rt, sandbox
) -> None:
    request_id, title, code = carded(rt, sandbox)
    aged(rt, request_id, CARD_CODE_TTL)
    mark = sandbox.last_seq()

    decided_in_the_oa(rt, sandbox, request_id, "reject", by=APPROVER)

    assert wecom_updates(sandbox, {code}) == []
    [text] = wecom_texts(sandbox, wecom_id(APPROVER), mark)
    assert text.startswith(f'"{title}" was rejected by you at ')
    assert text.endswith("Nothing is waiting for you any more.")


def test_given_the_decision_is_seen_again_then_nothing_more_is_sent(rt, sandbox) -> None:
    request_id, _, code = carded(rt, sandbox)
    decided_in_the_oa(rt, sandbox, request_id, "approve", by=APPROVER)
    mark = sandbox.last_seq()

    deliver(rt, approval_changed(request_id, status="approved"))  # delivered again
    next_second()
    steps.run_inline(rt, WECOM_FLOW, "schedule")  # and pulled

    assert len(wecom_updates(sandbox, {code})) == 1
    assert wecom_texts(sandbox, wecom_id(APPROVER), mark) == []


def test_given_a_press_decided_it_then_the_oas_webhook_updates_no_card_again(rt, sandbox) -> None:
    request_id, title, code = carded(rt, sandbox)
    card = wecom_card(sandbox, title, wecom_id(APPROVER))
    pressed = press_wecom(
        sandbox, str(card["task_id"]), wecom_id(APPROVER), f"approve:{request_id}"
    )
    deliver(rt, pressed)
    mark = sandbox.last_seq()

    deliver(rt, approval_changed(request_id, status="approved"))  # the OA tells of the press

    assert wecom_updates(sandbox, {code}) == []  # the press's own code updated the card
    assert len(wecom_updates(sandbox, {pressed.data["card"]["response_code"]})) == 1
    assert wecom_texts(sandbox, wecom_id(APPROVER), mark) == []


# -- DingTalk and Feishu ------------------------------------------------------------------------
def test_given_a_request_approved_in_the_oa_then_the_next_pull_updates_the_dingtalk_card(
    rt, sandbox
) -> None:
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    next_second()
    steps.run_inline(rt, DINGTALK_FLOW, "schedule")  # a pull-only flow: no webhook
    track = dingtalk_card(sandbox, title, dingtalk_id(APPROVER))
    sandbox.transition(request_id, "approve", by=oa_id(APPROVER))
    next_second()

    steps.run_inline(rt, DINGTALK_FLOW, "schedule")

    [params] = dingtalk_updates(sandbox, track)
    assert params["status_label"] == f"Approved by {name(APPROVER)}"
    assert params["can_decide"] == "false"


def test_given_a_request_rejected_in_the_oa_then_the_feishu_card_is_patched(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    deliver(rt, approval_changed(request_id))
    message_id, _ = feishu_card(sandbox, title)

    decided_in_the_oa(rt, sandbox, request_id, "reject", by=APPROVER)

    [card] = feishu_patches(sandbox, message_id)
    shown = json.dumps(card, ensure_ascii=False)
    assert f"Rejected by {name(APPROVER)}" in shown
    assert '"value"' not in shown  # no Approve / Reject buttons any more
