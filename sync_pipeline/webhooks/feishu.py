"""Feishu / Lark event subscription: url_verification, card actions, messages, approvals.

Contract (platform-apis.md §3.2): with an Encrypt Key set (we require one) the body is
`{"encrypt": ...}`, AES-256-CBC with key sha256(encrypt_key), and signed:
`X-Lark-Signature = sha256_hex(X-Lark-Request-Timestamp + X-Lark-Request-Nonce + encrypt_key +
raw body)`. The plaintext's token (`header.token` in v2 events, `token` in v1 and in
url_verification) must equal the Verification Token. `url_verification` is answered
`{"challenge": ...}` within 1 s; the official SDK answers it before checking a signature, so an
unsigned one is accepted once it decrypts and its token matches. Everything else is acked with
HTTP 200 `{}` (card actions within 3 s); the card is updated later, by the worker, with the
callback's token.

Decoded: `card.action.trigger` (v2) -> card_action, the button value being `{"action",
"source_id"}` as connectors/feishu.py writes it and the comment an input's value;
`im.message.receive_v1` (v2) -> message; `approval_instance` and `approval_task` (v1, whose
`uuid` is the event id) -> approval_changed. User ids are open_ids, as our directory's.

A message's `mentions` are the people it mentions: a mention of an app (our own bot, which
users @-mention to reach it in a group, or another bot) is left out, as no one to give a todo
to. Feishu's mention entries are {key, id{union_id, user_id, open_id}, name, tenant_key}
(lark-oapi `im/v1/model/mention_event.py`), with nothing that names an app (the header's
app_id never appears in them); an app's mention carries an open_id but neither a union_id nor a
user_id, which every person has (union_id needs no permission). Feishu does not deliver the
app's own messages back (`sender_type` is "user" only, im.message.receive_v1), so there is no
echo of ours to drop here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import feishu as feishu_buttons
from sync_pipeline.connectors.feishu import INSTANCE_STATUS
from sync_pipeline.errors import Refused
from sync_pipeline.records import ChatType, InboundEvent
from sync_pipeline.webhooks import feishu_approval
from sync_pipeline.webhooks.delivery import (
    FOREIGN_BUTTON,
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    approval_changed,
    card_action,
    chat_message,
    json_object,
    json_value,
    required,
    unhandled,
)
from sync_pipeline.webhooks.verify import (
    check_window,
    feishu_decrypt,
    feishu_signature,
    forged,
    malformed,
    same,
    undecryptable,
)

OK = Answer.json({})
CHAT_TYPES = {"p2p": ChatType.DIRECT, "group": ChatType.GROUP}
MENTION_KEY = re.compile(r"@_user_\d+")  # a mention's placeholder in the text, as Feishu writes it


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    if feishu_approval.is_quick_approval(incoming):  # the approval center's own callback
        return feishu_approval.receive(endpoint, incoming)
    encrypt_key = endpoint.secret("encrypt_key")
    headers = incoming.headers
    signature = headers.get("x-lark-signature", "")
    timestamp = headers.get("x-lark-request-timestamp", "")
    nonce = headers.get("x-lark-request-nonce", "")
    sent: float | None = None
    if signature:
        expected = feishu_signature(timestamp, nonce, encrypt_key, incoming.body)
        if not same(signature, expected):
            raise forged("X-Lark-Signature does not match")
        sent = check_window(timestamp, incoming.now, endpoint.window)
    body = json_object(incoming.body)
    encrypt = body.get("encrypt")
    payload = (
        json_object(feishu_decrypt(encrypt_key, encrypt)) if isinstance(encrypt, str) else body
    )
    if not same(_token(payload), endpoint.secret("verification_token")):
        raise undecryptable("the token is not our Verification Token")
    if payload.get("type") == "url_verification":
        return Accepted(Answer.json({"challenge": str(payload.get("challenge", ""))}))
    if sent is None:
        raise forged("X-Lark-Signature is missing")
    event = decode(endpoint.connector, payload)
    key = f"{timestamp}:{nonce}:{signature}"
    return Accepted(OK, event, replay_key=key, valid_until=sent + endpoint.window)


def _token(payload: Mapping[str, Any]) -> str:
    header = payload.get("header")
    token = header.get("token") if isinstance(header, Mapping) else payload.get("token")
    return str(token or "")


def decode(connector: str, payload: Mapping[str, Any]) -> InboundEvent | None:
    """One decrypted event, v2 (`schema: "2.0"`) or v1 (`type: "event_callback"`)."""
    event = payload.get("event")
    if not isinstance(event, Mapping):
        return None
    header = payload.get("header")
    if payload.get("schema") == "2.0" and isinstance(header, Mapping):
        event_type = header.get("event_type")
        if event_type == "card.action.trigger":
            return _card_action(connector, header, event)
        if event_type == "im.message.receive_v1":
            return _message(connector, header, event)
        return None
    if payload.get("type") == "event_callback" and event.get("type") in (
        "approval_instance",
        "approval_task",
    ):
        return _approval(connector, payload, event)
    return None


def _card_action(
    connector: str, header: Mapping[str, Any], event: Mapping[str, Any]
) -> InboundEvent:
    (event_id, created) = required(header, "event_id", "create_time")
    operator = _mapping(event.get("operator"))
    action = _mapping(event.get("action"))
    value = feishu_buttons.parse(action.get("value"))
    if value is None:
        return unhandled(connector, "feishu", event_id, created, reason=FOREIGN_BUTTON)
    form = _mapping(action.get("form_value"))
    comment = action.get("input_value") or form.get("comment") or ""
    context = _mapping(event.get("context"))
    return card_action(
        connector,
        "feishu",
        event_id,
        created,
        user_id=str(operator.get("open_id", "")),
        value=value,
        comment=str(comment),
        card={
            "open_message_id": str(context.get("open_message_id", "")),
            "open_chat_id": str(context.get("open_chat_id", "")),
            "token": str(event.get("token", "")),
        },
    )


def _message(connector: str, header: Mapping[str, Any], event: Mapping[str, Any]) -> InboundEvent:
    (event_id,) = required(header, "event_id")
    message = _mapping(event.get("message"))
    message_id, chat_id, created = required(message, "message_id", "chat_id", "create_time")
    sender = _mapping(_mapping(event.get("sender")).get("sender_id"))
    mentions = [_mapping(m) for m in _list(message.get("mentions")) if isinstance(m, Mapping)]
    text = _text(message, mentions)
    return chat_message(
        connector,
        "feishu",
        event_id,
        created,
        message_id=message_id,
        sender=str(sender.get("open_id", "")),
        chat_id=chat_id,
        chat_type=CHAT_TYPES.get(str(message.get("chat_type")), ChatType.GROUP),
        text=text,
        mentions=[person for m in mentions if (person := _person(m))],
    )


def _person(mention: Mapping[str, Any]) -> str:
    """The open_id of a mentioned person; "" for an app, which has no union_id or user_id."""
    ids = _mapping(mention.get("id"))
    if not (ids.get("union_id") or ids.get("user_id")):
        return ""
    return str(ids.get("open_id") or "")


def _text(message: Mapping[str, Any], mentions: list[Mapping[str, Any]]) -> str:
    """A text message's text, its `@_user_N` placeholders replaced by `@name` in one pass
    (one replace per mention would cost mentions x text, and turn `@_user_10` into the name of
    `@_user_1` and a 0); other message types (images, files, rich posts) have no text for the
    rules."""
    if message.get("message_type") != "text":
        return ""
    try:
        content = json_value(str(message.get("content", "")))
    except Refused:
        return ""
    text = str(content.get("text", "")) if isinstance(content, Mapping) else ""
    names = {str(m.get("key", "")): f"@{m.get('name', '')}" for m in mentions}
    return MENTION_KEY.sub(lambda key: names.get(key.group(), key.group()), text).strip()


def _approval(connector: str, payload: Mapping[str, Any], event: Mapping[str, Any]) -> InboundEvent:
    (event_id,) = required(payload, "uuid")
    (instance,) = required(event, "instance_code")
    raw = str(event.get("status", ""))
    at = event.get("operate_time") or payload.get("ts")
    if not at:
        raise malformed("the event has neither operate_time nor ts")
    if event.get("type") == "approval_instance":
        status: str | None = INSTANCE_STATUS.get(raw, raw.lower() or None)
        version = f"{at}:{raw}"
    else:  # approval_task: one task moved; the instance's status is not said
        status, version = None, f"task {event.get('task_id', '')}:{raw}:{at}"
    return approval_changed(
        connector, "feishu", event_id, at, source_id=instance, status=status, version=version
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
