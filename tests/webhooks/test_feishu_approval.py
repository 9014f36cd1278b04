"""Feishu's quick-approval callback, from the sandbox's approval center into the webhook
service: decoded as a card_action naming the approver by open_id, recorded once; a callback
not encrypted with our key, or without our token, is refused and counted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.feishu import FeishuOptions
from sync_pipeline.connectors.feishu_approval_center import ApprovalCenterOptions
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.devtools.sandbox.feishu import encrypt_event
from sync_pipeline.http import make_session
from sync_pipeline.records import EventKind, Notification, WriteOp, WriteRequest
from sync_pipeline.webhooks.feishu_approval import decode
from tests.webhooks.conftest import CONFIG_DIR, Service, im_user, post

INSTANCE = "R000077"


@pytest.fixture
def center(service: Service) -> Iterator[Connector]:
    """Our Feishu connector, its approval center's callback URL at this test's service."""
    config = load_config(CONFIG_DIR, service.env).connectors["sandbox_feishu"]
    url = f"{service.endpoint('feishu')}?callback=quick_approval"
    options = FeishuOptions(approval_center=ApprovalCenterOptions("oa", action_callback_url=url))
    client = redis.Redis.from_url(service.settings.urls()[0])
    session = make_session()
    yield make_connector(replace(config, options=options), ConnectorContext(client, None, session))
    session.close()
    client.close()


def mirror(center: Connector, applicant: str, approver: str) -> None:
    """A pending approval in the approval center, as the pipeline syncs it."""
    content = {
        "title": f"Leave {INSTANCE}",
        "status": "pending",
        "url": f"https://oa.example/r/{INSTANCE}",
        "node": "n1",
        "applicant": applicant,
        "approvers": [approver],
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-01T08:00:00Z",
    }
    request = WriteRequest(
        "test:center",
        INSTANCE,
        WriteOp.CREATE,
        Notification.from_json({"kind": "approval_center", "content": content}),
    )
    result = center.write("approval_center", request)
    assert result.status.value == "done", result.reason


def press(sandbox, action: str = "approve", reason: str = "") -> dict[str, Any]:
    result: dict[str, Any] = sandbox.press(
        "feishu",
        {"kind": "quick_approval", "instance_id": INSTANCE, "action": action, "reason": reason},
    )
    return result


def test_a_quick_approval_is_recorded_as_the_approvers_card_action(
    sandbox, service, connectors, center
) -> None:
    applicant, approver = (
        im_user(connectors["feishu"], "E00004"),
        im_user(connectors["feishu"], "E00005"),
    )
    mirror(center, applicant, approver)

    pressed = press(sandbox, "reject", reason="over budget")

    assert pressed["accepted"] is True
    [row] = service.wait_rows("feishu", 1)
    event = row.event
    assert event.kind is EventKind.CARD_ACTION
    assert event.event_id == f"quick_approval:{INSTANCE}:n1/{approver}:REJECT"
    assert {k: event.data[k] for k in ("user_id", "action", "source_id", "comment")} == {
        "user_id": approver,
        "action": "reject",
        "source_id": INSTANCE,
        "comment": "over budget",
    }
    assert event.data["card"]["instance_id"] == INSTANCE
    assert service.wait_enqueued(1) == 1


def test_the_same_press_delivered_twice_is_recorded_once(
    sandbox, service, connectors, center
) -> None:
    applicant, approver = (
        im_user(connectors["feishu"], "E00004"),
        im_user(connectors["feishu"], "E00005"),
    )
    mirror(center, applicant, approver)
    sandbox.fault("feishu", "duplicate_webhook", rate=1.0)

    pressed = press(sandbox)

    assert pressed["delivered"] == [200, 200]
    assert len(service.wait_rows("feishu", 1)) == 1
    assert service.refusals("feishu").get("duplicate") == 1


def test_a_callback_encrypted_with_another_key_is_refused_and_counted(sandbox, service) -> None:
    plain = json.dumps({"action_type": "APPROVE", "instance_id": "x", "task_id": "t"}).encode()
    body = json.dumps({"encrypt": encrypt_event("not-our-key", plain)}).encode()

    answer = post(f"{service.endpoint('feishu')}?callback=quick_approval", body)

    assert answer.status_code == 403
    assert service.refusals("feishu") == {"bad_signature": 1}
    assert service.rows("feishu") == []


def test_a_plaintext_callback_is_refused_even_with_our_token(sandbox, service) -> None:
    token = service.env["SANDBOX_FEISHU_VERIFICATION_TOKEN"]
    body = json.dumps(
        {"action_type": "APPROVE", "instance_id": "x", "task_id": "t", "token": token}
    ).encode()

    answer = post(f"{service.endpoint('feishu')}?callback=quick_approval", body)

    assert answer.status_code == 401
    assert service.rows("feishu") == []


def test_a_callback_with_the_wrong_token_is_refused(sandbox, service) -> None:
    key = service.env["SANDBOX_FEISHU_ENCRYPT_KEY"]
    plain = json.dumps(
        {"action_type": "APPROVE", "instance_id": "x", "task_id": "t", "token": "guess"}
    ).encode()

    answer = post(
        f"{service.endpoint('feishu')}?callback=quick_approval",
        json.dumps({"encrypt": encrypt_event(key, plain)}).encode(),
    )

    assert answer.status_code == 403
    assert service.rows("feishu") == []


def test_an_action_that_decides_nothing_decodes_to_no_event() -> None:
    payload = {"action_type": "TRANSFER", "instance_id": "x", "task_id": "t"}

    assert decode("sandbox_feishu", payload, 1_700_000_000) is None


def test_without_an_action_context_the_instance_id_names_the_request() -> None:
    payload = {"action_type": "APPROVE", "instance_id": "R1", "task_id": "t", "user_id": "u1"}

    event = decode("sandbox_feishu", payload, 1_700_000_000)

    assert event is not None
    assert (event.data["source_id"], event.data["user_id"]) == ("R1", "")
    assert event.data["card"]["feishu_user_id"] == "u1"
