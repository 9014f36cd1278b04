"""The WeCom connector against the WeCom emulator: a shared token, cards, directory, the
approval record's shape (the conformance suite holds what every connector must do)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.wecom import (
    WeComConnector,
    task_id_for,
)
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.wecom import WeComEmulator, userid_for
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.records import (
    Notification,
    ReadWindow,
    WriteOp,
    WriteRequest,
    WriteStatus,
    iso_utc,
)
from tests.connectors.conftest import SEED, connector_config

SEND = "message/send"
TOKEN_API = "gettoken"
APPROVALS = 120


@pytest.fixture
def wecom(serve, store: SandboxStore) -> WeComEmulator:
    emulator = serve(WeComEmulator, store)
    assert isinstance(emulator, WeComEmulator)
    emulator.seed(World(SEED), approvals=APPROVALS, checkin_days=0)
    # Callback cards need the app's callback URL set (else 43012); nothing is called back here.
    store.set_setting("wecom", "callback_url", "http://127.0.0.1:9/wecom/callback")
    return emulator


@pytest.fixture
def connect(wecom: WeComEmulator, ctx: ConnectorContext) -> Callable[[], WeComConnector]:
    creds = wecom.credentials()
    config = connector_config(
        Vendor.WECOM,
        wecom,
        {"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        {"agentid": creds["agentid"]},
    )
    return lambda: WeComConnector(config, ctx)


@pytest.fixture
def connector(connect: Callable[[], WeComConnector]) -> WeComConnector:
    return connect()


def member(number: int) -> str:
    return userid_for(World(SEED).person(f"E{number:05d}"))


def card_request(to: str, key: str = "k-card", status: str = "pending") -> WriteRequest:
    return WriteRequest(
        effect_key=key,
        source_id="8812",
        op=WriteOp.CREATE,
        notification=Notification.from_json(
            {
                "kind": "card",
                "to": to,
                "content": {
                    "title": "Leave request #8812",
                    "text": "Leave request #8812: waiting for your decision",
                    "url": "https://oa.example/req/8812",
                    "status": status,
                    "status_label": status.capitalize(),
                },
            }
        ),
    )


def sends(store: SandboxStore) -> list[dict[str, Any]]:
    return [e.body for e in store.ledger("wecom") if e.endpoint == SEND]


# -- tokens ----------------------------------------------------------------------------------
def test_given_two_connectors_on_one_redis_the_token_is_fetched_once(connect, store) -> None:
    first, second = connect(), connect()

    first.write("messages", card_request(member(2), "k1"))
    second.write("messages", card_request(member(3), "k2"))

    assert first.client.call_counts()[TOKEN_API] == 1
    assert TOKEN_API not in second.client.call_counts()
    assert len(sends(store)) == 2


# -- messages --------------------------------------------------------------------------------
def test_a_card_lands_once_with_the_template_card_fields(connector, store) -> None:
    to = member(2)
    request = card_request(to)

    result = connector.write("messages", request)

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert result.target_id == sent["msgid"]
    assert result.extra["response_code"] == sent["response_code"]
    assert sent["touser"] == to
    assert sent["msgtype"] == "template_card"
    card = sent["template_card"]
    assert card["card_type"] == "button_interaction"
    assert card["task_id"] == task_id_for(request.effect_key) == result.extra["task_id"]
    assert len(card["task_id"].encode()) <= 128
    assert card["main_title"]["title"] == "Leave request #8812"
    assert card["sub_title_text"] == "Leave request #8812: waiting for your decision"
    assert card["horizontal_content_list"] == [{"keyname": "Status", "value": "Pending"}]
    assert [b.get("key") for b in card["button_list"]] == ["approve:8812", "reject:8812", None]
    assert card["button_list"][2]["url"] == "https://oa.example/req/8812"
    assert card["card_action"] == {"type": 1, "url": "https://oa.example/req/8812"}


def test_a_message_is_sent_as_text_with_its_link(connector, store) -> None:
    request = WriteRequest(
        "k-msg",
        "8812",
        WriteOp.CREATE,
        Notification.from_json(
            {
                "kind": "message",
                "to": member(4),
                "content": {"text": "Your request: Approved.", "url": "https://oa.example/r/1"},
            }
        ),
    )

    result = connector.write("messages", request)

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert sent["msgtype"] == "text"
    assert sent["text"] == {"content": "Your request: Approved.\nhttps://oa.example/r/1"}
    assert sent["agentid"] == int(connector.agentid)


def test_a_decided_card_has_no_buttons_to_press(connector, store) -> None:
    result = connector.write("messages", card_request(member(2), status="approved"))

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert sent["template_card"]["card_type"] == "text_notice"
    assert "button_list" not in sent["template_card"]


def test_given_an_unknown_recipient_the_write_is_rejected_not_raised(connector, store) -> None:
    result = connector.write("messages", card_request("nobody.here"))

    assert result.status is WriteStatus.REJECTED
    assert "81013" in result.reason  # WeCom: "user & party & tag all invalid"
    assert sends(store) == []


def test_update_card_without_a_response_code_is_rejected_with_the_reason(connector) -> None:
    update = WriteRequest(
        "k-update",
        "8812",
        WriteOp.UPDATE,
        Notification.from_json(
            {"kind": "update_card", "to": None, "content": {"status": "approved"}}
        ),
        target_id="msg-1",
    )

    result = connector.write("messages", update)

    assert result.status is WriteStatus.REJECTED
    assert "response_code" in result.reason


def test_update_card_with_a_response_code_replaces_the_buttons(connector, store) -> None:
    to = member(2)
    sent = connector.write("messages", card_request(to))
    update = WriteRequest(
        "k-update",
        "8812",
        WriteOp.UPDATE,
        Notification.from_json(
            {
                "kind": "update_card",
                "to": to,
                "content": {"status": "approved", "status_label": "Approved"},
                "response_code": sent.extra["response_code"],
            }
        ),
        target_id=sent.target_id,
    )

    result = connector.write("messages", update)

    assert result.status is WriteStatus.DONE
    assert result.target_id == sent.target_id
    card = store.get("wecom", "card", sent.extra["task_id"])
    assert card is not None
    assert card["replace_name"] == "Approved"


# -- directory -------------------------------------------------------------------------------
def test_list_users_returns_every_person_with_their_employee_number(connector) -> None:
    world = World(SEED)

    users = connector.list_users()

    by_no = {u.employee_no: u for u in users}
    assert sorted(by_no) == sorted(p.employee_no for p in world.people)
    for person in world.people:
        user = by_no[person.employee_no]
        assert user.user_id == userid_for(person)
        assert user.email == person.email
        assert user.name == person.name


# -- approvals -------------------------------------------------------------------------------
def window(since_day: int, until_day: int) -> ReadWindow:
    def iso(day: int) -> str:
        return iso_utc(datetime.fromtimestamp((EPOCH_MS + day * DAY_MS) / 1000, UTC))

    return ReadWindow(iso(since_day), iso(until_day))


def test_an_approval_record_has_the_canonical_shape(connector, store) -> None:
    store.set_setting("wecom", "rate_limit_scale", "0")

    page = connector.read_page("approvals", window(0, 31), None, 40)

    assert page.records
    for record in page.records:
        assert record.payload["status"] in {"pending", "approved", "rejected", "revoked"}
        assert record.cursor_value == record.payload["created_at"]
        assert record.payload["updated_at"] >= record.payload["created_at"]
        assert record.payload["form"]
        if record.payload["status"] == "pending":
            assert len(record.payload["current_approvers"]) == 1
        else:
            assert record.payload["current_approvers"] == []
    assert page.calls == 1 + len(page.records)


# Paging to the end, cursor order, error classes (codes, waits, faults), token refresh and
# writes idempotent under their key: tests/connectors/test_conformance.py, for every vendor.
