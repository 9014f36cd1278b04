"""Approving from the IM card, handled against the real sandbox, PostgreSQL and Redis: a
current approver's press decides the request in the OA as that approver, once, and every card
of the request is updated in place; any other press changes nothing and gets the presser one
clear message. For WeCom, DingTalk and Feishu cards.
"""

from __future__ import annotations

import json

from sync_pipeline.connectors.base import ReadsOne
from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.pipeline import directory, events, steps
from sync_pipeline.pipeline.events import cards
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state.inbound import EventStatus
from tests.conftest import next_second
from tests.events.approval_scene import (
    DINGTALK_FLOW,
    OA,
    approval_changed,
    card_action,
    deliver,
    dingtalk_card,
    dingtalk_id,
    dingtalk_updates,
    feishu_card,
    feishu_patches,
    name,
    new_approval,
    oa_actions,
    oa_id,
    oa_remarks,
    outcome,
    press_wecom,
    record,
    switched,
    wecom_card,
    wecom_card_send,
    wecom_id,
    wecom_texts,
    wecom_updates,
)
from tests.rendering import feishu_markdown, is_plain, shape, visible

APPLICANT, FIRST, SECOND, OTHER = "E00010", "E00011", "E00012", "E00013"
CENTER_FLOW = "approvals_to_feishu_approval_center"


def carded(rt: Runtime, sandbox: SandboxClient, approvers: list[str]) -> tuple[str, str]:
    """A pending request whose approval webhook sent its first approver a card."""
    request_id, title = new_approval(sandbox, APPLICANT, approvers)
    deliver(rt, approval_changed(request_id))
    return request_id, title


def press(sandbox: SandboxClient, request_id: str, title: str, who: str, action: str = "approve"):
    """`who` presses a button of the WeCom card they got for the request."""
    card = wecom_card(sandbox, title, wecom_id(who))
    return press_wecom(sandbox, str(card["task_id"]), wecom_id(who), f"{action}:{request_id}")


def oa_status(rt: Runtime, request_id: str) -> str:
    source = rt.connector(OA)
    assert isinstance(source, ReadsOne)
    now = source.read_one("approvals", request_id)
    assert now is not None
    return str(now.payload["status"])


# -- a current approver's press -----------------------------------------------------------------
def test_an_approvers_press_approves_in_the_oa_as_that_approver(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])

    status = deliver(rt, press(sandbox, request_id, title, FIRST))

    assert status is EventStatus.DONE
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    assert oa_status(rt, request_id) == "approved"


def test_a_reject_press_rejects_in_the_oa(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])

    deliver(rt, press(sandbox, request_id, title, FIRST, "reject"))

    assert oa_actions(sandbox, request_id) == [("reject", oa_id(FIRST))]
    assert oa_status(rt, request_id) == "rejected"


def test_given_a_reject_press_the_event_says_it_rejected(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    pressed = press(sandbox, request_id, title, FIRST, "reject")

    deliver(rt, pressed)

    assert f"rejected as OA user {oa_id(FIRST)}" in str(outcome(rt, pressed).error)


def test_the_pressed_card_is_updated_in_place_to_show_who_decided(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    pressed = press(sandbox, request_id, title, FIRST)

    deliver(rt, pressed)

    updates = wecom_updates(sandbox, {pressed.data["card"]["response_code"]})
    assert [u["button"]["replace_name"] for u in updates] == [f"Approved by {name(FIRST)}"]


def test_every_card_of_the_request_shows_the_final_decision(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST, SECOND])
    deliver(rt, press(sandbox, request_id, title, FIRST))  # on to the second approver
    deliver(rt, approval_changed(request_id))  # ... who gets a card
    first_code = str(wecom_card_send(sandbox, title, FIRST)["response_code"])
    second = press(sandbox, request_id, title, SECOND)

    deliver(rt, second)

    assert oa_actions(sandbox, request_id) == [
        ("approve", oa_id(FIRST)),
        ("approve", oa_id(SECOND)),
    ]
    codes = {first_code, second.data["card"]["response_code"]}  # FIRST's card: its send's code
    shown = sorted(u["button"]["replace_name"] for u in wecom_updates(sandbox, codes))
    assert shown == [f"Approved by {name(SECOND)}"] * 2


# -- presses that change nothing -----------------------------------------------------------------
def test_a_double_press_acts_once_and_tells_the_presser(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    deliver(rt, press(sandbox, request_id, title, FIRST))
    mark = sandbox.last_seq()

    deliver(rt, press(sandbox, request_id, title, FIRST))

    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    [text] = wecom_texts(sandbox, wecom_id(FIRST), mark)
    assert "you already approved this request" in text
    assert title in text


def test_a_press_delivered_twice_acts_once_and_says_nothing(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    pressed = press(sandbox, request_id, title, FIRST)
    mark = sandbox.last_seq()

    deliver(rt, pressed)
    again = record(rt, pressed)

    assert again is None
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    assert wecom_texts(sandbox, wecom_id(FIRST), mark) == []


def test_a_press_handled_again_after_a_lost_task_acts_once_and_says_nothing(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    pressed = press(sandbox, request_id, title, FIRST)
    mark = sandbox.last_seq()
    cards.handle(rt, pressed)

    cards.handle(rt, pressed)  # the task ran again, as after a worker lost its ack

    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    assert len(wecom_updates(sandbox, {pressed.data["card"]["response_code"]})) == 1
    assert wecom_texts(sandbox, wecom_id(FIRST), mark) == []


def test_a_press_by_someone_who_is_not_an_approver_changes_nothing(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    task_id = str(wecom_card(sandbox, title, wecom_id(FIRST))["task_id"])
    mark = sandbox.last_seq()
    forwarded = card_action(  # the card reached someone else, who pressed it
        "sandbox_wecom", "wecom", wecom_id(OTHER), "approve", request_id, {"task_id": task_id}
    )

    deliver(rt, forwarded)

    assert oa_actions(sandbox, request_id) == []
    assert oa_status(rt, request_id) == "pending"
    [text] = wecom_texts(sandbox, wecom_id(OTHER), mark)
    assert "you are not an approver of this request" in text


def test_a_press_after_the_request_was_approved_in_the_oa_changes_nothing(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    sandbox.transition(request_id, "approve", by=FIRST)  # in the OA's own pages
    mark = sandbox.last_seq()

    deliver(rt, press(sandbox, request_id, title, FIRST))

    assert oa_actions(sandbox, request_id) == []
    [text] = wecom_texts(sandbox, wecom_id(FIRST), mark)
    assert f"this request was already approved by {name(FIRST)} at" in text


def test_a_press_after_the_applicant_withdrew_the_request_changes_nothing(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    sandbox.transition(request_id, "revoke", by=APPLICANT)
    mark = sandbox.last_seq()

    deliver(rt, press(sandbox, request_id, title, FIRST, "reject"))

    assert oa_actions(sandbox, request_id) == []
    [text] = wecom_texts(sandbox, wecom_id(FIRST), mark)
    assert f"this request was already withdrawn by {name(APPLICANT)} at" in text


def test_a_press_on_a_card_we_never_sent_is_ignored(rt, sandbox) -> None:
    request_id, _ = new_approval(sandbox, APPLICANT, [FIRST])  # no card went out
    stray = card_action(
        "sandbox_wecom", "wecom", wecom_id(FIRST), "approve", request_id, {"task_id": "nope"}
    )

    status = deliver(rt, stray)

    assert status is EventStatus.IGNORED
    assert oa_actions(sandbox, request_id) == []


# -- Feishu and DingTalk cards ----------------------------------------------------------------
def test_a_feishu_press_decides_with_its_comment_and_patches_the_card(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    message_id, open_id = feishu_card(sandbox, title)
    pressed = card_action(
        "sandbox_feishu",
        "feishu",
        open_id,
        "reject",
        request_id,
        {"open_message_id": message_id, "token": "c-0"},
        comment="Not this week",
    )

    deliver(rt, pressed)

    assert oa_actions(sandbox, request_id) == [("reject", oa_id(FIRST))]
    assert oa_remarks(sandbox, request_id) == ["Not this week"]
    [card] = feishu_patches(sandbox, message_id)
    shown = json.dumps(card, ensure_ascii=False)
    assert f"Rejected by {name(FIRST)}: Not this week" in shown
    assert '"value"' not in shown  # no Approve / Reject buttons any more


def test_given_a_comment_with_markup_the_updated_card_shows_it_as_text(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    message_id, open_id = feishu_card(sandbox, title)
    comment = "**Approved** by [the CEO](http://evil.example) <at id=all></at>\n# Pay now"
    pressed = card_action(
        "sandbox_feishu",
        "feishu",
        open_id,
        "reject",
        request_id,
        {"open_message_id": message_id, "token": "c-0"},
        comment=comment,
    )

    deliver(rt, pressed)

    assert oa_remarks(sandbox, request_id) == [comment]  # the OA keeps it as written
    [card] = feishu_patches(sandbox, message_id)
    [text, status] = feishu_markdown(card)
    assert is_plain(text)  # no link, mention, heading or emphasis of the comment's own
    assert visible(text) == f"Rejected by {name(FIRST)}: {comment}"
    assert shape(status) == shape("**Status**\nRejected")  # our bold label, nothing more


def test_a_dingtalk_press_decides_and_updates_the_card_by_its_out_track_id(rt, sandbox) -> None:
    request_id, title = new_approval(sandbox, APPLICANT, [FIRST])
    next_second()
    steps.run_inline(rt, DINGTALK_FLOW, "schedule")  # DingTalk cards come with the schedule
    track = dingtalk_card(sandbox, title, dingtalk_id(FIRST))
    pressed = card_action(
        "sandbox_dingtalk",
        "dingtalk",
        dingtalk_id(FIRST),
        "approve",
        request_id,
        {"out_track_id": track},
    )

    status = deliver(rt, pressed)

    assert status is EventStatus.DONE
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    [params] = dingtalk_updates(sandbox, track)
    assert params["status_label"] == f"Approved by {name(FIRST)}"
    assert params["can_decide"] == "false"


def test_a_quick_approval_in_feishus_approval_center_decides_in_the_oa(rt, sandbox) -> None:
    rt = switched(rt, CENTER_FLOW, enabled=True)  # it ships disabled
    request_id, title = new_approval(sandbox, APPLICANT, [FIRST])
    next_second()
    steps.run_inline(rt, CENTER_FLOW, "schedule")  # the instance, with FIRST's task
    with rt.engine.connect() as conn:
        users = directory.load_snapshot(conn, ["oa", "feishu"])
    open_id = users.map_user("oa", oa_id(FIRST), "feishu")
    assert open_id is not None
    mark = sandbox.last_seq()
    quick = card_action(  # as the webhook service decodes Feishu's quick-approval callback
        "sandbox_feishu",
        "feishu",
        open_id,
        "approve",
        request_id,
        {"instance_id": request_id, "task_id": f"{request_id}-{oa_id(FIRST)}"},
    )

    status = deliver(rt, quick)

    assert status is EventStatus.DONE
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
    assert [e for e in sandbox.ledger("feishu", since_seq=mark) if title in str(e["body"])] == []


def test_events_handle_runs_the_card_handler(rt, sandbox) -> None:
    request_id, title = carded(rt, sandbox, [FIRST])
    row = record(rt, press(sandbox, request_id, title, FIRST))
    assert row is not None

    assert events.handle(rt, row) is EventStatus.DONE
    assert oa_actions(sandbox, request_id) == [("approve", oa_id(FIRST))]
