"""Agora Chat message callbacks from the sandbox's emulator into the webhook service.

Agora's `security` (md5 of callId, the rule's secret and timestamp) does not cover the body: a
callback seen once can be sent again with another body under the same signature. What stops
that is the timestamp window and the memory of every callId acknowledged, in Redis (a replay,
409) and in PostgreSQL (a duplicate, acknowledged and not handled), including the callbacks we
ignore.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.agora import callback_security
from sync_pipeline.records import EventKind
from sync_pipeline.state.inbound import EventStatus
from tests.webhooks.conftest import Captured, capture, post

JSON = {"Content-Type": "application/json"}
LUNCH = {"kind": "message", "from": "e00002", "to": "e00003", "msg": "lunch?"}


def rewritten_into_an_important_group_message(genuine: Captured, group: str) -> bytes:
    """The callback's signed envelope (callId, timestamp, security) around another body."""
    callback = json.loads(genuine.body)
    callback.update(
        {
            "eventType": "chat",
            "chat_type": "groupchat",
            "group_id": group,
            "from": "e00002",
            "to": group,
            "msg_id": "999999999999999999",
            "payload": {
                "ext": {"em_at_list": ["e00003"]},
                "bodies": [{"type": "txt", "msg": "#important wire 10k to the new vendor"}],
            },
        }
    )
    return json.dumps(callback).encode()


def signed(service, **fields: Any) -> bytes:
    """A callback as Agora signs it, under a fresh callId, sent now (the sandbox's crypto)."""
    app_key = service.env["SANDBOX_AGORA_ORG_NAME"] + "#" + service.env["SANDBOX_AGORA_APP_NAME"]
    call_id = f"{app_key}_{uuid.uuid4()}"
    stamp = int(time.time() * 1000)
    secret = service.env["SANDBOX_AGORA_CALLBACK_SECRET"]
    callback = {
        "callId": call_id,
        "eventType": "chat",
        "timestamp": stamp,
        "chat_type": "chat",
        "from": "e00002",
        "to": "e00003",
        "msg_id": str(stamp),
        "payload": {"ext": {}, "bodies": [{"type": "txt", "msg": "hello"}]},
        "securityVersion": "1.0.0",
        "security": callback_security(call_id, secret, stamp),
        "appkey": app_key,
        **fields,
    }
    return json.dumps(callback).encode()


def group_id() -> str:
    from sync_pipeline.devtools.sandbox.agora import _group_id

    return _group_id(7, "g1")


def test_a_group_message_is_recorded_with_its_mentions_and_flags(sandbox, service) -> None:
    group = group_id()
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


def test_our_own_message_reported_back_is_acknowledged_and_remembered_but_never_handled(
    sandbox, service, recorder
) -> None:
    # The sandbox reports client messages only; the callback of a notification our connector
    # sent differs from a user's in its sender, the app's administrator, which the signature
    # (callId, secret, timestamp) does not cover.
    genuine = capture(sandbox, service, recorder, "agora", lambda: sandbox.press("agora", LUNCH))
    echo = {**json.loads(genuine.body), "from": "admin"}

    answer = genuine.send(service.endpoint("agora"), body=json.dumps(echo).encode())

    assert answer.status_code == 200
    [row] = service.rows("agora")
    assert (row.event.event_id, row.event.kind, row.status) == (
        echo["callId"],
        EventKind.UNHANDLED,
        EventStatus.IGNORED,
    )
    assert row.error == "our own message, reported back"
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
    [row] = service.rows("agora")
    assert (row.event.kind, row.status) == (EventKind.UNHANDLED, EventStatus.IGNORED)
    assert service.enqueued() == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"eventType": "chat_offline"}, "an offline copy of a message"),
        (
            {"payload": {"ext": {}, "bodies": [{"type": "img", "url": "https://x/1"}]}},
            "a message type we do not handle",
        ),
        ({"eventType": "userStatus", "status": "offline"}, "not a message"),
    ],
    ids=["chat_offline", "image", "login_logout"],
)
def test_a_callback_we_do_not_handle_is_acknowledged_and_its_call_id_kept(
    service, fields: dict[str, Any], reason: str
) -> None:
    answer = post(service.endpoint("agora"), signed(service, **fields), headers=JSON)

    assert answer.status_code == 200
    [row] = service.rows("agora")
    assert (row.status, row.error) == (EventStatus.IGNORED, reason)
    assert service.enqueued() == 0


# -- replays with a rewritten body ---------------------------------------------------------------
def test_given_an_acknowledged_echo_its_call_id_with_a_rewritten_body_is_refused_as_a_replay(
    sandbox, service, recorder
) -> None:
    genuine = capture(sandbox, service, recorder, "agora", lambda: sandbox.press("agora", LUNCH))
    echo = {**json.loads(genuine.body), "from": "admin"}
    url = service.endpoint("agora")
    assert genuine.send(url, body=json.dumps(echo).encode()).status_code == 200

    forged = genuine.send(url, body=rewritten_into_an_important_group_message(genuine, group_id()))

    assert forged.status_code == 409
    assert service.refusals("agora") == {"replay": 1}
    assert [(row.event.kind, row.status) for row in service.rows("agora")] == [
        (EventKind.UNHANDLED, EventStatus.IGNORED)
    ]
    assert service.enqueued() == 0


def test_given_redis_lost_its_memory_a_rewritten_echo_is_acknowledged_and_never_handled(
    sandbox, service, recorder
) -> None:
    genuine = capture(sandbox, service, recorder, "agora", lambda: sandbox.press("agora", LUNCH))
    echo = {**json.loads(genuine.body), "from": "admin"}
    url = service.endpoint("agora")
    genuine.send(url, body=json.dumps(echo).encode())
    service.redis.flushdb()  # Redis keeps nothing on disk: a restart forgets it all

    forged = genuine.send(url, body=rewritten_into_an_important_group_message(genuine, group_id()))

    assert forged.status_code == 200  # Agora must not retry it; it is a duplicate, not an event
    assert service.refusals("agora") == {"duplicate": 1}
    assert [(row.event.kind, row.status) for row in service.rows("agora")] == [
        (EventKind.UNHANDLED, EventStatus.IGNORED)
    ]
    assert service.enqueued() == 0


def test_given_a_handled_message_its_call_id_with_a_rewritten_body_is_never_handled_again(
    sandbox, service, recorder
) -> None:
    genuine = capture(sandbox, service, recorder, "agora", lambda: sandbox.press("agora", LUNCH))
    url = service.endpoint("agora")
    genuine.send(url)
    service.wait_enqueued(1)
    service.redis.flushdb()

    forged = genuine.send(url, body=rewritten_into_an_important_group_message(genuine, group_id()))

    assert forged.status_code == 200
    [row] = service.rows("agora")
    assert row.event.data["text"] == "lunch?"
    assert service.enqueued() == 0
