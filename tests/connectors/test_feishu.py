"""The Feishu connector against the Feishu emulator: tokens, cards, limits, directory, the
approval record's shape (the conformance suite holds what every connector must do)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.feishu import FeishuConnector, feishu_uuid
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.errors import (
    ConfigError,
)
from sync_pipeline.records import (
    Notification,
    ReadWindow,
    WriteOp,
    WriteRequest,
    WriteStatus,
    iso_utc,
)
from tests.connectors.conftest import SEED, connector_config, seeded
from tests.rendering import feishu_markdown, is_plain, visible

SEND = "POST /open-apis/im/v1/messages"
PATCH = "PATCH /open-apis/im/v1/messages/:message_id"
TOKEN_API = "auth/v3/tenant_access_token"
APPROVALS = 90


@pytest.fixture
def feishu(serve, store: SandboxStore) -> FeishuEmulator:
    return seeded(serve, FeishuEmulator, store, approvals=APPROVALS)


@pytest.fixture
def connect(feishu: FeishuEmulator, ctx: ConnectorContext) -> Callable[[], FeishuConnector]:
    """A new connector instance (a new worker process, say) sharing this test's Redis."""
    creds = feishu.credentials()
    codes = [a["approval_code"] for a in feishu.store.list("feishu", "approval")]
    config = connector_config(
        Vendor.FEISHU,
        feishu,
        {"app_id": creds["app_id"], "app_secret": creds["app_secret"]},
        {"approval_codes": codes},
    )
    return lambda: FeishuConnector(config, ctx)


@pytest.fixture
def connector(connect: Callable[[], FeishuConnector]) -> FeishuConnector:
    return connect()


def open_id(store: SandboxStore, employee_no: str) -> str:
    return str(store.list("feishu", "user", equals={"employee_no": employee_no})[0]["open_id"])


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
    return [e.body for e in store.ledger("feishu") if e.endpoint == SEND]


def buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for e in card["elements"] if e["tag"] == "action" for a in e["actions"]]


# -- tokens ----------------------------------------------------------------------------------
def test_given_two_connectors_on_one_redis_the_token_is_fetched_once(connect, store) -> None:
    first, second = connect(), connect()

    first.write("messages", card_request(open_id(store, "E00002"), "k1"))
    second.write("messages", card_request(open_id(store, "E00003"), "k2"))

    assert first.client.call_counts()[TOKEN_API] == 1
    assert TOKEN_API not in second.client.call_counts()
    assert len(sends(store)) == 2


def test_given_a_wrong_app_secret_the_write_fails_as_a_config_error(feishu, ctx, store) -> None:
    creds = feishu.credentials()
    config = connector_config(
        Vendor.FEISHU, feishu, {"app_id": creds["app_id"], "app_secret": "not-the-secret"}
    )

    with pytest.raises(ConfigError) as caught:
        FeishuConnector(config, ctx).write("messages", card_request(open_id(store, "E00002")))

    assert caught.value.problems[0][0] == "test_feishu.credentials"
    assert "not-the-secret" not in str(caught.value)


# -- messages --------------------------------------------------------------------------------
def test_a_card_lands_once_with_the_vendor_fields(connector, store) -> None:
    to = open_id(store, "E00002")
    request = card_request(to)

    result = connector.write("messages", request)

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert result.target_id == sent["message_id"]
    assert sent["receive_id_type"] == "open_id"
    assert sent["receive_id"] == to
    assert sent["msg_type"] == "interactive"
    assert sent["uuid"] == feishu_uuid(request.effect_key)
    assert len(sent["uuid"]) <= 50
    card = json.loads(sent["content"])
    assert card["config"]["update_multi"] is True
    assert card["header"]["title"]["content"] == "Leave request #8812"
    assert [(b.get("url"), b.get("value")) for b in buttons(card)] == [
        ("https://oa.example/req/8812", None),
        (None, {"action": "approve", "source_id": "8812"}),
        (None, {"action": "reject", "source_id": "8812"}),
    ]


def test_a_message_is_sent_as_a_post_of_text_and_its_link(connector, store) -> None:
    content = {"text": "Approved.", "url": "https://oa.example/r/1"}
    request = WriteRequest(
        "k-msg",
        "8812",
        WriteOp.CREATE,
        Notification.from_json(
            {"kind": "message", "to": open_id(store, "E00004"), "content": content}
        ),
    )

    result = connector.write("messages", request)

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert sent["msg_type"] == "post"
    assert json.loads(sent["content"]) == {
        "zh_cn": {
            "content": [
                [{"tag": "text", "text": "Approved."}],
                [{"tag": "a", "href": "https://oa.example/r/1", "text": "https://oa.example/r/1"}],
            ]
        }
    }


def test_given_a_message_with_an_at_all_it_is_one_text_element(connector, store) -> None:
    text = '<at user_id="all"></at> [Approve](http://evil.example) **now**'
    request = WriteRequest(
        "k-msg",
        "8812",
        WriteOp.CREATE,
        Notification.from_json(
            {"kind": "message", "to": open_id(store, "E00004"), "content": {"text": text}}
        ),
    )

    connector.write("messages", request)

    (sent,) = sends(store)
    assert json.loads(sent["content"])["zh_cn"]["content"] == [[{"tag": "text", "text": text}]]


def test_update_card_changes_the_sent_card_in_place(connector, store) -> None:
    sent = connector.write("messages", card_request(open_id(store, "E00002")))
    decided = card_request("", key="k-update", status="approved")
    update = WriteRequest(
        "k-update",
        "8812",
        WriteOp.UPDATE,
        Notification.from_json(
            {**decided.notification.to_json(), "kind": "update_card", "to": None}
        ),
        target_id=sent.target_id,
    )

    result = connector.write("messages", update)

    assert result.status is WriteStatus.DONE
    assert result.target_id == sent.target_id
    assert [e.body["message_id"] for e in store.ledger("feishu") if e.endpoint == PATCH] == [
        sent.target_id
    ]
    card = json.loads(store.get("feishu", "message", sent.target_id)["body"]["content"])
    assert card["header"]["template"] == "green"
    assert all("value" not in b for b in buttons(card))  # decided: nothing left to press
    assert len(sends(store)) == 1


EVIL = "[Approve now](http://evil.example) <at id=all></at>"


def test_given_a_title_with_a_link_and_an_at_all_the_card_shows_it_as_text(connector, store):
    request = card_request(open_id(store, "E00002"))
    content = {**request.notification.content, "title": EVIL, "text": f"{EVIL}: waiting"}
    evil = replace(request, notification=replace(request.notification, content=content))

    connector.write("messages", evil)

    (sent,) = sends(store)
    card = json.loads(sent["content"])
    assert card["header"]["title"]["content"] == EVIL  # plain_text: shown as it is
    [markdown, *_] = feishu_markdown(card)
    assert is_plain(markdown)
    assert visible(markdown) == f"{EVIL}: waiting"


def test_given_an_unknown_recipient_the_write_is_rejected_not_raised(connector, store) -> None:
    result = connector.write("messages", card_request("ou_nobody"))

    assert result.status is WriteStatus.REJECTED
    assert "230013" in result.reason
    assert sends(store) == []


def test_given_a_rate_limit_answer_the_client_waits_the_reset_and_sends(connector, store) -> None:
    store.set_setting("feishu", "rate_limit_scale", "0.02")  # one message a second
    to = open_id(store, "E00002")

    results = [connector.write("messages", card_request(to, key)) for key in ("k1", "k2")]

    assert [r.status for r in results] == [WriteStatus.DONE, WriteStatus.DONE]
    assert len(sends(store)) == 2
    assert connector.client.call_counts()["im/v1/messages"] == 3  # one 429, then its retry


# -- directory -------------------------------------------------------------------------------
def test_list_users_returns_every_person_with_their_employee_number(connector) -> None:
    world = World(SEED)

    users = connector.list_users()

    assert sorted(u.employee_no for u in users) == sorted(p.employee_no for p in world.people)
    assert all(u.user_id.startswith("ou_") for u in users)
    by_no = {u.employee_no: u for u in users}
    for person in world.people:
        assert (by_no[person.employee_no].email, by_no[person.employee_no].mobile) == (
            person.email,
            person.mobile,
        )


# -- approvals -------------------------------------------------------------------------------
def window(since_ms: int, until_ms: int) -> ReadWindow:
    def iso(ms: int) -> str:
        return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))

    return ReadWindow(iso(since_ms), iso(until_ms))


def test_an_approval_record_has_the_canonical_shape(connector, store) -> None:
    store.set_setting("feishu", "rate_limit_scale", "0")

    page = connector.read_page("approvals", window(EPOCH_MS, EPOCH_MS + 301 * DAY_MS), None, 50)

    statuses = {r.payload["status"] for r in page.records}
    assert statuses <= {"pending", "approved", "rejected", "revoked"}
    pending = [r for r in page.records if r.payload["status"] == "pending"]
    assert pending
    assert all(r.payload["current_approvers"][0].startswith("ou_") for r in pending)
    assert all(r.payload["applicant"].startswith("ou_") for r in page.records)
    assert all(r.cursor_value == r.payload["created_at"] for r in page.records)
    assert page.calls >= len(page.records)


# Paging to the end, cursor order, error classes (codes, waits, faults), token refresh and
# writes idempotent under their key: tests/connectors/test_conformance.py, for every vendor.
