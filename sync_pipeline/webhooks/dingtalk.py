"""DingTalk (钉钉) HTTP event subscription: check_url, approvals, card button callbacks.

Contract (platform-apis.md §2.2): `POST ?msg_signature&timestamp&nonce` (also spelt
`signature` and `timeStamp`; the timestamp is in milliseconds) with body `{"encrypt": ...}`,
WXBizMsgCrypt-encrypted with the owner key (the app's appKey for an internal app) as the trailing
id. The signature covers the `encrypt` text. Every event, `check_url` included, is answered with
`{msg_signature, timeStamp, nonce, encrypt}` where `encrypt` = Encrypt("success"), within 1.5 s;
DingTalk checks that answer, not only the status.

Decoded: `bpms_instance_change` and `bpms_task_change` -> approval_changed; a card button
callback (`type: actionCallback` with `outTrackId` and `content` = JSON of cardPrivateData
{actionIds, params}; DingTalk sends it over Stream mode, the sandbox relays the same payload
through the subscription) -> card_action. The card template's buttons carry `params.action`
and `params.source_id` (connectors/dingtalk.py `_card_data` gives the card its source_id); the
first action id stands in for a missing `params.action`.

DingTalk events carry no event id: the id is built from what identifies the change (instance,
task, type, result, time) or the press (card, user, content), so a retry of the same event,
however it is signed, has the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import dingtalk as dingtalk_buttons
from sync_pipeline.connectors.dingtalk import RESULT_STATUS
from sync_pipeline.records import InboundEvent
from sync_pipeline.webhooks.delivery import (
    FOREIGN_BUTTON,
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    approval_changed,
    card_action,
    json_object,
    required,
    unhandled,
)
from sync_pipeline.webhooks.verify import WXCrypt, check_window, forged, malformed

INSTANCE_STATUS = {"start": "pending", "terminate": "revoked"}  # "finish": by its result


def crypto(endpoint: Endpoint) -> WXCrypt:
    return WXCrypt(
        endpoint.secret("token"), endpoint.secret("aes_key"), endpoint.secret("owner_key")
    )


def success(endpoint: Endpoint, now: float) -> Answer:
    """The encrypted "success" DingTalk expects; the reference SDK stamps it in seconds."""
    sealed = crypto(endpoint).seal("success", str(int(now)))
    return Answer.json(
        {
            "msg_signature": sealed.msg_signature,
            "timeStamp": sealed.timestamp,
            "nonce": sealed.nonce,
            "encrypt": sealed.encrypt,
        }
    )


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    query = incoming.query
    signature = query.get("msg_signature") or query.get("signature") or ""
    timestamp = query.get("timestamp") or query.get("timeStamp") or ""
    nonce = query.get("nonce", "")
    if not (signature and timestamp and nonce):
        raise forged("msg_signature, timestamp or nonce is missing")
    encrypt = json_object(incoming.body).get("encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise malformed("the body has no encrypt")
    receiver = crypto(endpoint)
    receiver.check(signature, timestamp, nonce, encrypt)
    sent = check_window(timestamp, incoming.now, endpoint.window)
    event = decode(endpoint.connector, json_object(receiver.decrypt(encrypt)), sent)
    key = f"{timestamp}:{nonce}:{signature}"
    answer = success(endpoint, incoming.now)
    return Accepted(answer, event, replay_key=key, valid_until=sent + endpoint.window)


def decode(connector: str, event: Mapping[str, Any], sent_at: float) -> InboundEvent | None:
    """One decrypted event; None for check_url and what we do not handle."""
    if event.get("type") == "actionCallback" and event.get("outTrackId"):
        return _card_action(connector, event, sent_at)
    kind = event.get("EventType")
    if kind == "bpms_instance_change":
        return _instance_change(connector, event)
    if kind == "bpms_task_change":
        return _task_change(connector, event)
    return None


def _instance_change(connector: str, event: Mapping[str, Any]) -> InboundEvent:
    instance, change = required(event, "processInstanceId", "type")
    result = str(event.get("result", ""))
    status = INSTANCE_STATUS.get(change) or RESULT_STATUS.get(result)
    at = event.get("finishTime") or event.get("createTime") or ""
    return _approval(
        connector, "bpms_instance_change", instance, status, at, f"{change}|{result}|{at}"
    )


def _task_change(connector: str, event: Mapping[str, Any]) -> InboundEvent:
    """A task started or finished: the instance moved, its status is not said."""
    instance, change = required(event, "processInstanceId", "type")
    task = str(event.get("taskId", ""))
    result = str(event.get("result", ""))
    at = event.get("finishTime") or event.get("createTime") or ""
    version = f"task {task}|{change}|{result}|{at}"
    return _approval(connector, "bpms_task_change", instance, None, at, version)


def _approval(
    connector: str, event_type: str, instance: str, status: str | None, at: Any, version: str
) -> InboundEvent:
    if at in (None, ""):
        raise malformed("the event has neither finishTime nor createTime")
    return approval_changed(
        connector,
        "dingtalk",
        f"{event_type}:{instance}:{version}",
        at,
        source_id=instance,
        status=status,
        version=version,
    )


def _card_action(connector: str, event: Mapping[str, Any], sent_at: float) -> InboundEvent:
    track, user, content = required(event, "outTrackId", "userId", "content")
    private = json_object(content).get("cardPrivateData") or {}
    params = private.get("params") if isinstance(private, Mapping) else None
    params = params if isinstance(params, Mapping) else {}
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    event_id = f"card:{track}:{user}:{digest}"
    value = dingtalk_buttons.parse(private)
    if value is None:
        return unhandled(connector, "dingtalk", event_id, sent_at, reason=FOREIGN_BUTTON)
    return card_action(
        connector,
        "dingtalk",
        event_id,
        sent_at,
        user_id=user,
        value=value,
        comment=str(params.get("comment", "")),
        card={"out_track_id": track},
    )
