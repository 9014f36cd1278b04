"""The typed values that cross Celery and the database come back equal from their JSON, and
JSON stored before they were typed still reads."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.records import (
    ApprovalChange,
    CardAction,
    ChatType,
    InboundMessage,
    Notification,
    NotifyKind,
    WriteOp,
    WriteRequest,
)

ids = st.text(min_size=1, max_size=20)
json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
contents = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        json_leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=5,
    ),
    max_size=5,
)
notifications = st.builds(
    Notification,
    kind=st.sampled_from(NotifyKind),
    to=st.none() | ids,
    content=contents,
    response_code=st.none() | ids,
)
handles = st.dictionaries(st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10))
approval_changes = st.builds(ApprovalChange, ids, st.none() | ids, st.none() | ids)
card_actions = st.builds(
    CardAction, ids, st.sampled_from(["approve", "reject"]), ids, st.text(max_size=20), handles
)
messages = st.builds(
    InboundMessage,
    message_id=ids,
    sender=st.text(max_size=20),
    chat_id=st.text(max_size=20),
    chat_type=st.sampled_from(ChatType),
    text=st.text(max_size=40),
    flags=st.lists(ids, max_size=3).map(tuple),
    mentions=st.lists(ids, max_size=3).map(tuple),
    sent_at=st.just("2026-03-02T09:30:00Z"),
)
requests = st.builds(
    WriteRequest,
    effect_key=ids,
    source_id=ids,
    op=st.sampled_from(WriteOp),
    notification=notifications,
    target_id=st.none() | ids,
)


@given(notifications)
def test_a_notification_comes_back_equal_from_its_json(note: Notification) -> None:
    assert Notification.from_json(json.loads(json.dumps(note.to_json()))) == note


@given(requests)
def test_a_write_request_comes_back_equal_from_its_json(request: WriteRequest) -> None:
    assert WriteRequest.from_json(json.loads(json.dumps(request.to_json()))) == request


def test_a_planned_write_stored_before_notifications_were_typed_still_reads() -> None:
    stored = {
        "effect_key": "9f" * 32,
        "source_id": "R000001",
        "op": "update",
        "payload": {
            "kind": "update_card",
            "to": "",
            "content": {"status": "approved", "status_label": "Approved by Li"},
            "response_code": "rc-1",
        },
        "target_id": "msg-7",
    }

    request = WriteRequest.from_json(stored)

    assert request.notification == Notification(
        NotifyKind.UPDATE_CARD,
        to=None,
        content={"status": "approved", "status_label": "Approved by Li"},
        response_code="rc-1",
    )
    assert (request.op, request.target_id) == (WriteOp.UPDATE, "msg-7")


def test_a_notification_is_stored_in_the_shape_stored_before_it_was_typed() -> None:
    note = Notification(NotifyKind.MESSAGE, "zhangsan", {"text": "Approved."})

    assert note.to_json() == {"kind": "message", "to": "zhangsan", "content": {"text": "Approved."}}


@given(approval_changes)
def test_an_approval_change_comes_back_equal_from_its_json(change: ApprovalChange) -> None:
    assert ApprovalChange.from_json(json.loads(json.dumps(change.to_json()))) == change


@given(card_actions)
def test_a_card_action_comes_back_equal_from_its_json(action: CardAction) -> None:
    assert CardAction.from_json(json.loads(json.dumps(action.to_json()))) == action


@given(messages)
def test_an_inbound_message_comes_back_equal_from_its_json(message: InboundMessage) -> None:
    assert InboundMessage.from_json(json.loads(json.dumps(message.to_json()))) == message


def test_a_card_action_keeps_only_the_handles_the_vendor_gave() -> None:
    stored = {
        "user_id": "zhangsan",
        "action": "approve",
        "source_id": "R000042",
        "comment": "",
        "card": {"response_code": "", "task_id": "t-1"},  # WeCom sends no code at times
    }

    assert CardAction.from_json(stored).card == {"task_id": "t-1"}
