"""Feishu's quick-approval callback: an approver pressed Approve or Reject on one of our tasks
in Feishu's approval center (connectors/feishu_approval_center.py made it).

Contract (open.feishu.cn "三方快捷审批回调"; the sandbox's feishu module docstring): Feishu
POSTs to the definition's `action_callback_url` the body {action_type APPROVE | REJECT,
action_context, user_id, approval_code, instance_id, task_id, reason, token}; with an
`action_callback_key` it is `{"encrypt": ...}`, AES-256-CBC with key sha256(key), as events
are. There is no signature header and no timestamp, so what proves the sender is the
ciphertext (only Feishu and we hold the key) and the token inside it. Our definition's token
and key are the app's Verification Token and Encrypt Key, the secrets this connector's
webhook already has. We require the encryption: a plaintext callback would rest on the token
alone, which the connector never sends unencrypted.

The URL is this connector's webhook with `?callback=quick_approval` (feishu.py routes it
here). Decoded as a card_action, so events/cards.py judges and applies it like a card press:
user_id the approver's open_id (from the task's action_context: Feishu names the presser by
user_id, which our directory does not hold, and only lets a task's own approver act on it),
action approve | reject, source_id the OA request, comment the reason, card the instance's
handles. A press has no event id of its own; (instance, task, action) is one, since a task
is decided once. Answered `{"code": 0, "msg": "success"}` at once (Feishu waits 10 s at most;
the answer it expects is unconfirmed beyond HTTP 200).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import ButtonValue
from sync_pipeline.connectors.buttons import feishu_approval as quick
from sync_pipeline.records import InboundEvent
from sync_pipeline.webhooks.delivery import (
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    card_action,
    json_object,
    required,
)
from sync_pipeline.webhooks.verify import feishu_decrypt, forged, same, undecryptable

QUERY = ("callback", "quick_approval")  # ?callback=quick_approval on the webhook URL
OK = Answer.json({"code": 0, "msg": "success"})


def is_quick_approval(incoming: Incoming) -> bool:
    return incoming.query.get(QUERY[0]) == QUERY[1]


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    body = json_object(incoming.body)
    encrypt = body.get("encrypt")
    if not isinstance(encrypt, str):
        raise forged("a quick-approval callback must be encrypted with our key")
    payload = json_object(feishu_decrypt(endpoint.secret("encrypt_key"), encrypt))
    if not same(str(payload.get("token") or ""), endpoint.secret("verification_token")):
        raise undecryptable("the token is not our callback token")
    return Accepted(OK, decode(endpoint.connector, payload, incoming.now))


def decode(connector: str, payload: Mapping[str, Any], now: float) -> InboundEvent | None:
    """A decrypted callback; None for an action we offer no decision for (a custom key)."""
    decision = quick.decision(payload.get("action_type"))
    if decision is None:
        return None
    instance_id, task_id = required(payload, "instance_id", "task_id")
    context = quick.parse(payload.get("action_context"))
    value = ButtonValue(decision, context.source_id or instance_id)
    return card_action(
        connector,
        "feishu",
        f"quick_approval:{instance_id}:{task_id}:{payload['action_type']}",
        int(now),
        user_id=context.open_id,
        value=value,
        comment=str(payload.get("reason") or ""),
        card={
            "approval_code": str(payload.get("approval_code") or ""),
            "instance_id": instance_id,
            "task_id": task_id,
            "feishu_user_id": str(payload.get("user_id") or ""),
        },
    )
