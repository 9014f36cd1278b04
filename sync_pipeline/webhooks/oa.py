"""The OA's change webhook (Weaver E9, sandbox-documented extension; sandbox/oa/webhook.py).

On every approval change the OA POSTs JSON `{event: "request.<created|approved|rejected|
revoked|commented>", eventId, requestId, workflowId, status, nodeName, operatorId,
currentOperatorIds, lastOperateTime}` with headers `X-OA-Timestamp` (Unix seconds) and
`X-OA-Signature = hex(HMAC-SHA256(secret, timestamp + "." + raw body))`. Any 2xx is success.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.records import InboundEvent
from sync_pipeline.webhooks.delivery import (
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    approval_changed,
    json_object,
    required,
)
from sync_pipeline.webhooks.verify import check_window, forged, oa_signature, same

OK = Answer.json({"received": True})


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    timestamp = incoming.headers.get("x-oa-timestamp", "")
    signature = incoming.headers.get("x-oa-signature", "")
    if not timestamp or not signature:
        raise forged("X-OA-Timestamp or X-OA-Signature is missing")
    expected = oa_signature(endpoint.secret("secret"), timestamp, incoming.body)
    if not same(signature.lower(), expected):
        raise forged("X-OA-Signature does not match")
    sent = check_window(timestamp, incoming.now, endpoint.window)
    event = decode(endpoint.connector, json_object(incoming.body), timestamp)
    return Accepted(OK, event, replay_key=signature.lower(), valid_until=sent + endpoint.window)


def decode(connector: str, payload: Mapping[str, Any], timestamp: str) -> InboundEvent | None:
    """`request.*` changes -> approval_changed; anything else is not ours to handle."""
    if not str(payload.get("event", "")).startswith("request."):
        return None
    event_id, request_id = required(payload, "eventId", "requestId")
    return approval_changed(
        connector,
        "oa",
        event_id,
        timestamp,
        source_id=request_id,
        status=payload.get("status"),
        version=payload.get("lastOperateTime"),
    )
