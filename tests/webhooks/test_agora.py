"""Agora Chat message callbacks from the sandbox's emulator into the webhook service."""

from __future__ import annotations


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
