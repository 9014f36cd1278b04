"""The Agora Chat connector against the Agora emulator: app tokens, custom-message cards,
recall-and-resend updates, limits, rejections (the conformance suite holds what every connector
must do, Agora's lack of a dedupe handle included)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.agora import AgoraConnector, message_target
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.devtools.sandbox.agora import AgoraEmulator
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.http import RetryPolicy
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteStatus
from tests.connectors.conftest import SEED, connector_config, seeded

SEND = "POST /messages/users"
RECALL = "POST /messages/msg_recall"
APPROVER = "e00002"  # the emulator's username for employee E00002


@pytest.fixture
def agora(serve, store: SandboxStore) -> AgoraEmulator:
    return seeded(serve, AgoraEmulator, store, approvals=0)


@pytest.fixture
def connect(agora: AgoraEmulator, ctx: ConnectorContext) -> Callable[[], AgoraConnector]:
    """A new connector instance (a new worker process, say) sharing this test's Redis."""
    creds = agora.credentials()
    config = connector_config(
        Vendor.AGORA,
        agora,
        {"app_id": creds["app_id"], "app_certificate": creds["app_certificate"]},
        {
            "org_name": creds["org_name"],
            "app_name": creds["app_name"],
            "employee_no_from_username": "upper",
        },
    )
    return lambda: AgoraConnector(config, ctx)


@pytest.fixture
def connector(connect: Callable[[], AgoraConnector]) -> AgoraConnector:
    return connect()


def card_request(to: str = APPROVER, key: str = "k-card", status: str = "pending") -> WriteRequest:
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
                    "text": "Approval needed: Leave request #8812",
                    "url": "https://oa.example/req/8812",
                    "status": status,
                    "status_label": status.capitalize(),
                },
            }
        ),
    )


def sends(store: SandboxStore) -> list[dict[str, Any]]:
    return [e.body for e in store.ledger("agora") if e.endpoint == SEND]


def tokens_seen(store: SandboxStore) -> int:
    """Distinct app tokens the emulator has accepted so far."""
    (count,) = (
        store.conn().execute("SELECT count(*) FROM tokens WHERE platform = 'agora'").fetchone()
    )
    return int(count)


# -- tokens ----------------------------------------------------------------------------------
def test_given_two_connectors_on_one_redis_one_app_token_is_built_and_shared(
    connect, store
) -> None:
    first, second = connect(), connect()

    first.write("messages", card_request(key="k1"))
    second.write("messages", card_request("e00003", key="k2"))

    assert tokens_seen(store) == 1
    assert len(sends(store)) == 2


# -- messages --------------------------------------------------------------------------------
def test_a_card_lands_once_as_a_custom_message_with_our_effect_key(connector, store) -> None:
    request = card_request()

    result = connector.write("messages", request)

    (sent,) = sends(store)
    assert result.status is WriteStatus.DONE
    assert result.target_id == message_target(APPROVER, sent["msg_ids"][APPROVER])
    assert (sent["from"], sent["to"], sent["type"]) == ("admin", [APPROVER], "custom")
    assert sent["ext"] == {"sync_effect_key": request.effect_key}
    assert sent["body"]["customEvent"] == "approval_card"
    exts = sent["body"]["customExts"]
    assert all(isinstance(v, str) for v in exts.values())
    assert exts["title"] == "Leave request #8812"
    assert exts["url"] == "https://oa.example/req/8812"
    assert [b["action"] for b in json.loads(exts["buttons"])] == ["approve", "reject"]


def test_a_message_is_sent_as_text_with_its_link(connector, store) -> None:
    request = WriteRequest(
        "k-msg",
        "8812",
        WriteOp.CREATE,
        Notification.from_json(
            {
                "kind": "message",
                "to": "e00004",
                "content": {"text": "Approved.", "url": "https://x"},
            }
        ),
    )

    connector.write("messages", request)

    (sent,) = sends(store)
    assert sent["type"] == "txt"
    assert sent["body"] == {"msg": "Approved.\nhttps://x"}


def test_update_card_recalls_the_card_and_sends_its_successor(connector, store) -> None:
    sent = connector.write("messages", card_request())
    update = WriteRequest(
        "k-update",
        "8812",
        WriteOp.UPDATE,
        Notification.from_json(
            {
                **card_request(status="approved").notification.to_json(),
                "kind": "update_card",
                "to": None,
            }
        ),
        target_id=sent.target_id,
    )

    result = connector.write("messages", update)

    old_msg_id = sent.target_id.split("/")[1]
    (recall,) = [e.body for e in store.ledger("agora") if e.endpoint == RECALL]
    assert (recall["msg_id"], recall["to"]) == (old_msg_id, APPROVER)
    assert store.get("agora", "message", old_msg_id)["_recalled"] is True
    successor = sends(store)[-1]
    assert successor["body"]["customExts"]["replaces"] == old_msg_id
    assert successor["body"]["customExts"]["status_label"] == "Approved"
    assert "buttons" not in successor["body"]["customExts"]
    assert result.status is WriteStatus.DONE
    assert result.target_id == message_target(APPROVER, successor["msg_ids"][APPROVER])
    assert result.extra == {"replaced": old_msg_id, "recalled": "yes"}


def test_given_a_bad_recipient_the_write_is_rejected_without_a_call(connector, store) -> None:
    result = connector.write("messages", card_request("Not A User!"))

    assert result.status is WriteStatus.REJECTED
    assert sends(store) == []


def test_given_content_over_the_size_limit_the_message_is_cut_to_fit(connector, store) -> None:
    big = {"kind": "message", "to": APPROVER, "content": {"text": "x" * 6000}}  # > 5 KB

    result = connector.write(
        "messages", WriteRequest("k-big", "8812", WriteOp.CREATE, Notification.from_json(big))
    )

    assert result.status is WriteStatus.DONE
    (sent,) = sends(store)
    assert sent["body"]["msg"] == "x" * 4093 + "…"  # 4096 bytes, ellipsis included


def test_given_a_rate_limit_answer_the_client_waits_and_sends(connector, store) -> None:
    store.set_setting("agora", "rate_limit_scale", "0.01")  # one message a second

    results = [connector.write("messages", card_request(key=k)) for k in ("k1", "k2")]

    assert [r.status for r in results] == [WriteStatus.DONE, WriteStatus.DONE]
    assert len(sends(store)) == 2
    assert connector.client.call_counts()["messages/users"] == 3  # one 429, then its retry


# -- directory -------------------------------------------------------------------------------
def test_list_users_returns_every_person_with_their_employee_number(connector) -> None:
    connector.client.retry_policy = RetryPolicy(max_attempts=1)

    users = connector.list_users()

    assert sorted(u.employee_no for u in users) == sorted(p.employee_no for p in World(SEED).people)


# Paging to the end, cursor order, error classes (codes, waits, faults), token refresh and
# writes idempotent under their key: tests/connectors/test_conformance.py, for every vendor.
