"""A declarative (`vendor: rest`) connector's change webhook, as its description says.

The description's `webhook:` (config/declarative.py) names the signature header, the
timestamp header and the signed message (a template over `timestamp` and the raw `body`), the
HMAC algorithm and encoding, and what each delivery means: a changed record of a stream, its
id and the delivery's own id. A delivery of no declared type is acknowledged and not handled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from sync_pipeline.config.declarative import WebhookEventSpec, WebhookSpec
from sync_pipeline.webhooks.delivery import (
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    approval_changed,
    json_object,
)
from sync_pipeline.webhooks.verify import check_window, forged, malformed, same

OK = Answer.json({"received": True})


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    spec = endpoint.declarative
    if spec is None:  # load_endpoints gives every rest endpoint its description's webhook
        raise malformed("this connector's description declares no webhook")
    timestamp = incoming.headers.get(spec.timestamp_header.lower(), "")
    signature = incoming.headers.get(spec.signature_header.lower(), "")
    if not timestamp or not signature:
        raise forged(f"{spec.timestamp_header} or {spec.signature_header} is missing")
    expected = signature_of(spec, endpoint.secret(spec.secret), timestamp, incoming.body)
    presented = signature.lower() if spec.encoding == "hex" else signature
    if not same(presented, expected):
        raise forged(f"{spec.signature_header} does not match")
    sent = check_window(timestamp, incoming.now, endpoint.window)
    payload = json_object(incoming.body)
    event = next((e for e in spec.events if _is(e, payload)), None)
    decoded = None
    if event is not None:
        event_id, source_id = event.event_id.first(payload), event.source_id.first(payload)
        if event_id in (None, "") or source_id in (None, ""):
            raise malformed(f"expected {event.event_id.source} and {event.source_id.source}")
        decoded = approval_changed(
            endpoint.connector,
            endpoint.vendor.value,
            str(event_id),
            timestamp,
            source_id=str(source_id),
            status=_text(event.status.first(payload) if event.status else None),
            version=_text(event.version.first(payload) if event.version else None),
        )
    return Accepted(OK, decoded, replay_key=presented, valid_until=sent + endpoint.window)


def signature_of(spec: WebhookSpec, secret: str, timestamp: str, body: bytes) -> str:
    """HMAC(secret, message) in the declared encoding (hex lower case, or base64)."""
    message = spec.message.render(
        {"timestamp": timestamp, "body": body.decode("utf-8", "surrogateescape")}
    ).encode("utf-8", "surrogateescape")
    digest = hmac.new(secret.encode(), message, getattr(hashlib, spec.algorithm)).digest()
    return digest.hex() if spec.encoding == "hex" else base64.b64encode(digest).decode()


def _is(event: WebhookEventSpec, payload: dict[str, Any]) -> bool:
    if event.type_path is None:
        return True
    value = event.type_path.first(payload)
    return isinstance(value, str) and value.startswith(event.type_prefix)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
