"""WeCom callbacks from the sandbox's emulator into the webhook service, served for real."""

from __future__ import annotations

from tests.webhooks.conftest import im_user, send_card


def test_a_pressed_card_button_is_recorded_once_and_enqueued_once(
    sandbox, service, connectors
) -> None:
    wecom = connectors["wecom"]
    user = im_user(wecom, "E00002")
    card = send_card(wecom, user, "R000042")

    pressed = sandbox.press(
        "wecom",
        {
            "kind": "button",
            "task_id": card.extra["task_id"],
            "userid": user,
            "key": "approve:R000042",
        },
    )

    assert pressed["delivered"] == [200]
    [row] = service.wait_rows("wecom", 1)
    assert row.event.kind.value == "card_action"
    assert row.event.data == {
        "user_id": user,
        "action": "approve",
        "source_id": "R000042",
        "comment": "",
        "card": {"response_code": pressed["response_code"], "task_id": card.extra["task_id"]},
    }
    assert service.wait_enqueued(1) == 1


def test_a_decided_approval_is_recorded_as_approval_changed(sandbox, service) -> None:
    from sync_pipeline.devtools.sandbox.wecom import sp_no_for
    from sync_pipeline.devtools.sandbox.world import World

    pending = next(a for a in World(7).approvals(20) if a.state == "pending")

    sandbox.press(
        "wecom", {"kind": "approval_change", "sp_no": sp_no_for(pending), "decision": "reject"}
    )

    [row] = service.wait_rows("wecom", 1)
    assert row.event.kind.value == "approval_changed"
    assert row.event.data["source_id"] == sp_no_for(pending)
    assert row.event.data["status"] == "rejected"
    assert service.wait_enqueued(1) == 1


def test_a_text_message_to_the_app_is_recorded_as_a_message(sandbox, service, connectors) -> None:
    user = im_user(connectors["wecom"], "E00003")

    sandbox.press(
        "wecom", {"kind": "message", "userid": user, "content": "Budget agreed #Decision"}
    )

    [row] = service.wait_rows("wecom", 1)
    assert row.event.kind.value == "message"
    data = row.event.data
    assert (data["sender"], data["chat_type"], data["text"]) == (
        user,
        "direct",
        "Budget agreed #Decision",
    )
    assert data["flags"] == ["decision"]


def test_the_url_verification_is_answered_with_the_decrypted_echostr(sandbox, service) -> None:
    result = sandbox.press("wecom", {"kind": "verify_url"})

    assert result["ok"] is True
    assert service.rows("wecom") == []
    assert service.enqueued() == 0
