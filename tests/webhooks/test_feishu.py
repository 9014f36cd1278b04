"""Feishu event subscription from the sandbox's emulator into the webhook service."""

from __future__ import annotations

import requests

from tests.webhooks.conftest import im_user, send_card


def test_url_verification_is_answered_with_the_challenge(sandbox, service) -> None:
    result = sandbox.press("feishu", {"kind": "url_verification"})

    assert result["verified"] is True
    assert service.rows("feishu") == []


def test_a_pressed_card_button_is_recorded_once_and_enqueued_once(
    sandbox, service, connectors
) -> None:
    feishu = connectors["feishu"]
    user = im_user(feishu, "E00002")
    card = send_card(feishu, user, "R000042")

    pressed = sandbox.press(
        "feishu",
        {
            "kind": "card_action",
            "message_id": card.target_id,
            "user": user,
            "value": {"action": "reject", "source_id": "R000042"},
            "input_value": "missing receipt",
        },
    )

    assert pressed["delivered"] == [200]
    [row] = service.wait_rows("feishu", 1)
    assert row.event.event_id == pressed["event_id"]
    assert row.event.data == {
        "user_id": user,
        "action": "reject",
        "source_id": "R000042",
        "comment": "missing receipt",
        "card": {
            "open_message_id": card.target_id,
            "open_chat_id": row.event.data["card"]["open_chat_id"],
            "token": pressed["token"],
        },
    }
    assert service.wait_enqueued(1) == 1


def test_a_message_mentioning_people_is_recorded_with_their_open_ids(
    sandbox, service, connectors
) -> None:
    feishu = connectors["feishu"]
    mentioned = im_user(feishu, "E00003")

    sent = sandbox.press(
        "feishu", {"kind": "message", "user": "E00002", "mentions": ["E00003"], "text": "ok?"}
    )

    [row] = service.wait_rows("feishu", 1)
    data = row.event.data
    assert (data["message_id"], data["chat_type"], data["mentions"]) == (
        sent["message_id"],
        "direct",
        [mentioned],
    )
    assert data["sender"] == im_user(feishu, "E00002")
    assert data["text"].endswith("ok?")


def test_a_message_mentioning_the_bot_is_recorded_without_it(sandbox, service, connectors) -> None:
    mentioned = im_user(connectors["feishu"], "E00003")

    sandbox.press(
        "feishu",
        {"kind": "message", "user": "E00002", "mentions": ["bot", "E00003"], "text": "#important"},
    )

    [row] = service.wait_rows("feishu", 1)
    assert row.event.data["mentions"] == [mentioned]


def test_an_approval_instance_event_is_recorded_as_approval_changed(sandbox, service) -> None:
    from sync_pipeline.devtools.sandbox.feishu import _approval_code, _uuid_like
    from sync_pipeline.devtools.sandbox.world import World

    pending = next(a for a in World(7).approvals(20) if a.state == "pending")
    subscribe(sandbox, _approval_code(7, pending.template))
    instance = _uuid_like(7, "instance", pending.number)

    sent = sandbox.press("feishu", {"kind": "approval_instance", "instance_code": instance})

    [row] = service.wait_rows("feishu", 1)
    assert row.event.event_id == sent["uuid"]
    assert row.event.data["source_id"] == instance
    assert row.event.data["status"] == "pending"


def subscribe(sandbox, approval_code: str) -> None:
    """What a Feishu app does once before approval events flow (platform-apis.md §3.1)."""
    feishu = sandbox.info()["feishu"]
    creds = feishu["credentials"]
    token = requests.post(
        f"{feishu['base_url']}/open-apis/auth/v3/tenant_access_token/internal",
        json={"app_id": creds["app_id"], "app_secret": creds["app_secret"]},
        timeout=10,
    ).json()["tenant_access_token"]
    answer = requests.post(
        f"{feishu['base_url']}/open-apis/approval/v4/approvals/{approval_code}/subscribe",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert answer["code"] in (0, 1390007)  # subscribed now, or by an earlier test
