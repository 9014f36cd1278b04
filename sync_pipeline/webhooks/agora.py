"""Agora Chat post-delivery message callbacks: messages, and card presses sent as messages.

Contract (platform-apis.md §6): POST JSON `{callId, eventType: "chat" | "chat_offline",
timestamp (ms), chat_type: "chat" | "groupchat", group_id?, from, to, msg_id, payload{ext,
bodies[]}, security, ...}` with `security = md5_hex(callId + secret + timestamp)`. Any HTTP 200
is success; a failure is re-sent once.

What is signed is callId and timestamp, not the body: whoever holds one genuine callback can
send its envelope again around a body of their own. So the timestamp window holds as for the
other vendors (`window_s`, 300 s by default: older is `stale`); the same signed pair inside it
is a replay whatever body it carries (app.py's Redis memory); and every callId we acknowledge
is kept in PostgreSQL, the callbacks we do nothing for included (an `unhandled` event, recorded
as ignored), so a callId once answered is never taken again, not even after Redis lost its
memory. What remains open is a body swapped before the genuine callback reaches us, inside
the window; Agora's REST API has no read of one message to confirm it against (README,
"Webhooks").

Agora Chat has no interactive card (connectors/agora.py sends a card as a custom message whose
`customExts.buttons` lists `{label, action, source_id}`). Pressing a button is the client
sending a custom message back: `customEvent: "card_action"` with `customExts` `{action,
source_id, [comment], [card_msg_id]}` -> card_action. A text message -> message, with mentions
from `ext.em_at_list` (Agora's @ convention) and flags from hashtags in the text. Everything
else is unhandled: `chat_offline` (a message repeated for an offline recipient), other events
(logins, recalls, groups) and other message types.

Our own messages come back too: the post-delivery callback covers messages sent through the
REST API as well as from client SDKs (docs.agora.io "Set up HTTP callbacks"; the pre-delivery
one covers clients only), so it also reports the notifications and cards our connector sends.
Those echoes are unhandled (DESIGN.md section 6), or a notification that names a keyword would
reach the message flows as a message from "admin". A message is ours when it is `from` the
app's administrator, as which the connector sends unless told otherwise (its `sender` option),
or when its ext carries our effect key, which every message the connector sends does, whatever
its `sender`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.agora import DEFAULT_SENDER, EFFECT_KEY_EXT
from sync_pipeline.connectors.buttons import agora as agora_buttons
from sync_pipeline.records import ChatType, InboundEvent
from sync_pipeline.webhooks.delivery import (
    FOREIGN_BUTTON,
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    card_action,
    chat_message,
    json_object,
    required,
    unhandled,
)
from sync_pipeline.webhooks.verify import agora_security, check_window, forged, same

OK = Answer.json({})
CARD_ACTION_EVENT = "card_action"


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    callback = json_object(incoming.body)  # the signature travels inside the body
    call_id, timestamp, security = (
        str(callback.get(key) or "") for key in ("callId", "timestamp", "security")
    )
    if not (call_id and timestamp and security):
        raise forged("callId, timestamp or security is missing")
    if not same(security.lower(), agora_security(call_id, endpoint.secret("secret"), timestamp)):
        raise forged("security does not match")
    sent = check_window(timestamp, incoming.now, endpoint.window)
    event = decode(endpoint.connector, callback)
    # The signed part is (callId, timestamp): that pair again, whatever the body, is a replay.
    return Accepted(OK, event, replay_key=security.lower(), valid_until=sent + endpoint.window)


def decode(connector: str, callback: Mapping[str, Any]) -> InboundEvent:
    """One verified callback: a message or a card press, or an unhandled event saying why
    nothing is done for it (our own messages, offline copies, other events and types)."""
    if callback.get("eventType") == "chat_offline":
        return _unhandled(connector, callback, "an offline copy of a message")
    if callback.get("eventType") != "chat":
        return _unhandled(connector, callback, "not a message")
    payload = callback.get("payload")
    bodies = payload.get("bodies") if isinstance(payload, Mapping) else None
    body = bodies[0] if isinstance(bodies, list) and bodies else None
    if not isinstance(body, Mapping):
        return _unhandled(connector, callback, "a message without a body")
    ext = payload.get("ext") if isinstance(payload, Mapping) else None
    ext = ext if isinstance(ext, Mapping) else {}
    if callback.get("from") == DEFAULT_SENDER or EFFECT_KEY_EXT in ext:
        return _unhandled(connector, callback, "our own message, reported back")
    if body.get("type") == "custom" and body.get("customEvent") == CARD_ACTION_EVENT:
        return _card_action(connector, callback, _custom_exts(body))
    if body.get("type") == "txt":
        return _message(connector, callback, str(body.get("msg", "")), ext)
    return _unhandled(connector, callback, "a message type we do not handle")


def _unhandled(connector: str, callback: Mapping[str, Any], reason: str) -> InboundEvent:
    """Kept (as ignored) under its callId, which no other body may then use."""
    call_id, timestamp = required(callback, "callId", "timestamp")
    return unhandled(connector, "agora", call_id, timestamp, reason=reason)


def _custom_exts(body: Mapping[str, Any]) -> dict[str, str]:
    """customExts as one map: callbacks carry it as `v2:customExts` and as a list of maps."""
    exts = body.get("v2:customExts")
    if isinstance(exts, Mapping):
        return {str(k): str(v) for k, v in exts.items()}
    merged: dict[str, str] = {}
    items = body.get("customExts")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            merged.update({str(k): str(v) for k, v in item.items()})
    return merged


def _card_action(
    connector: str, callback: Mapping[str, Any], exts: Mapping[str, str]
) -> InboundEvent:
    call_id, sender, timestamp = required(callback, "callId", "from", "timestamp")
    value = agora_buttons.parse(exts)
    if value is None:
        return _unhandled(connector, callback, FOREIGN_BUTTON)
    card = {"card_msg_id": exts["card_msg_id"]} if exts.get("card_msg_id") else {}
    return card_action(
        connector,
        "agora",
        call_id,
        timestamp,
        user_id=sender,
        value=value,
        comment=exts.get("comment", ""),
        card=card,
    )


def _message(
    connector: str, callback: Mapping[str, Any], text: str, ext: Mapping[str, Any]
) -> InboundEvent:
    call_id, sender, msg_id, timestamp = required(callback, "callId", "from", "msg_id", "timestamp")
    group = callback.get("chat_type") == "groupchat"
    mentions = ext.get("em_at_list")
    return chat_message(
        connector,
        "agora",
        call_id,
        timestamp,
        message_id=msg_id,
        sender=sender,
        chat_id=str(callback.get("group_id") or "") if group else "",
        chat_type=ChatType.GROUP if group else ChatType.DIRECT,
        text=text,
        mentions=[str(m) for m in mentions] if isinstance(mentions, list) else [],
    )
