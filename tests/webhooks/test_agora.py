"""Agora Chat message callbacks from the sandbox's emulator into the webhook service."""

from __future__ import annotations

import json

from tests.webhooks.conftest import capture


def test_a_group_message_is_recorded_with_its_mentions_and_flags(sandbox, service) -> None:
    from sync_pipeline.sandbox.agora import _group_id

    group = _group_id(7, "g1")
    sent = sandbox.press(
        "agora",
        {
            "kind": "message",
            "from": "e00002",
            "to": group,
            "chat_type": "groupchat",
            "msg": "Ship it on Friday #decision",
            "ext": {"em_at_list": ["e00003"]},
        },
    )

    assert sent["delivered"] == [200]
    [row] = service.wait_rows("agora", 1)
    assert row.event.event_id == sent["callId"]
    data = row.event.data
    assert (data["message_id"], data["sender"], data["chat_id"], data["chat_type"]) == (
        sent["msg_id"],
        "e00002",
        group,
        "group",
    )
    assert (data["mentions"], data["flags"]) == (["e00003"], ["decision"])
    assert service.wait_enqueued(1) == 1


def test_a_card_press_sent_as_a_custom_message_is_a_card_action(sandbox, service) -> None:
    sandbox.press(
        "agora",
        {
            "kind": "message",
            "from": "e00002",
            "to": "e00001",
            "type": "custom",
            "body": {
                "customEvent": "card_action",
                "customExts": {"action": "reject", "source_id": "R000042", "comment": "no"},
            },
        },
    )

    [row] = service.wait_rows("agora", 1)
    assert row.event.kind.value == "card_action"
    assert row.event.data == {
        "user_id": "e00002",
        "action": "reject",
        "source_id": "R000042",
        "comment": "no",
        "card": {},
    }


def test_our_own_message_reported_back_is_acknowledged_and_not_recorded(
    sandbox, service, recorder
) -> None:
    # The sandbox reports client messages only; the callback of a notification our connector
    # sent differs from a user's in its sender, the app's administrator, which the signature
    # (callId, secret, timestamp) does not cover.
    message = {"kind": "message", "from": "e00002", "to": "e00003", "msg": "deadline #important"}
    genuine = capture(sandbox, service, recorder, "agora", lambda: sandbox.press("agora", message))
    echo = {**json.loads(genuine.body), "from": "admin"}

    answer = genuine.send(service.endpoint("agora"), body=json.dumps(echo).encode())

    assert answer.status_code == 200
    assert service.rows("agora") == []
    assert (service.enqueued(), service.refusals("agora")) == (0, {})


def test_a_message_carrying_our_effect_key_is_ours_whoever_sent_it(sandbox, service) -> None:
    sent = sandbox.press(
        "agora",
        {
            "kind": "message",
            "from": "e00002",
            "to": "e00003",
            "msg": "Your request: Approved. #important",
            "ext": {"sync_effect_key": "approvals_to_agora:R000042:approved:e00003"},
        },
    )

    assert sent["delivered"] == [200]
    assert service.rows("agora") == []
    assert service.enqueued() == 0
