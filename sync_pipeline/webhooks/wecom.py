"""WeCom (企业微信) app callbacks: URL verification, card buttons, approvals, messages.

Contract (platform-apis.md §1.2): every request carries `msg_signature`, `timestamp` (Unix
seconds) and `nonce` in the query. `GET ...&echostr=` verifies the URL: answer the decrypted
echostr bare, within 1 s. `POST` carries `<xml><ToUserName/><AgentID/><Encrypt/></xml>`; the
signature covers the `Encrypt` text, so the outer XML is read first, and only that. Answer 200
with an empty body within 5 s, or WeCom retries 3 times.

Decoded: `template_card_event` (a button of a card we sent; its key is "approve:<source id>" /
"reject:<source id>", made and parsed by connectors/wecom.py) -> card_action; `sys_approval_change`
-> approval_changed; a text message to the app -> message. Events carry no id of their own:
the event id is FromUserName + CreateTime (WeCom's own advice) plus what tells two events of
one second apart (the card and button, or the approval and its state).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from sync_pipeline.connectors.buttons import wecom as wecom_buttons
from sync_pipeline.connectors.wecom import SP_STATUS
from sync_pipeline.records import ChatType, InboundEvent
from sync_pipeline.webhooks.delivery import (
    FOREIGN_BUTTON,
    MAX_DEPTH,
    Accepted,
    Answer,
    Endpoint,
    Incoming,
    approval_changed,
    card_action,
    chat_message,
    required,
    unhandled,
)
from sync_pipeline.webhooks.verify import WXCrypt, check_window, forged, malformed

OK = Answer()  # 200, empty body: "received, no passive reply"


def crypto(endpoint: Endpoint) -> WXCrypt:
    return WXCrypt(
        endpoint.secret("token"), endpoint.secret("encoding_aes_key"), endpoint.secret("receive_id")
    )


def receive(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    signature, timestamp, nonce = (
        incoming.query.get(name, "") for name in ("msg_signature", "timestamp", "nonce")
    )
    if not (signature and timestamp and nonce):
        raise forged("msg_signature, timestamp or nonce is missing")
    if incoming.method == "GET":
        return _verify_url(endpoint, incoming, signature, timestamp, nonce)
    encrypt = xml_fields(incoming.body).get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise malformed("the envelope has no Encrypt")
    receiver = crypto(endpoint)
    receiver.check(signature, timestamp, nonce, encrypt)
    sent = check_window(timestamp, incoming.now, endpoint.window)
    event = decode(endpoint.connector, receiver.decrypt(encrypt))
    key = f"{timestamp}:{nonce}:{signature}"
    return Accepted(OK, event, replay_key=key, valid_until=sent + endpoint.window)


def _verify_url(
    endpoint: Endpoint, incoming: Incoming, signature: str, timestamp: str, nonce: str
) -> Accepted:
    """The URL check: the signature covers echostr; answer its plaintext, nothing else."""
    echostr = incoming.query.get("echostr", "")
    if not echostr:
        raise malformed("echostr is missing")
    receiver = crypto(endpoint)
    receiver.check(signature, timestamp, nonce, echostr)
    check_window(timestamp, incoming.now, endpoint.window)
    return Accepted(Answer(200, receiver.decrypt(echostr).encode("utf-8")))


def decode(connector: str, xml: str) -> InboundEvent | None:
    """One decrypted callback message; None for what we do not handle."""
    msg = xml_fields(xml)
    msg_type = msg.get("MsgType")
    if msg_type == "event" and msg.get("Event") == "template_card_event":
        return _card_event(connector, msg)
    if msg_type == "event" and msg.get("Event") == "sys_approval_change":
        return _approval_change(connector, msg)
    if msg_type == "text":
        return _text_message(connector, msg)
    return None


def _card_event(connector: str, msg: Mapping[str, Any]) -> InboundEvent:
    user, created, task_id, key = required(msg, "FromUserName", "CreateTime", "TaskId", "EventKey")
    event_id = f"{user}:{created}:template_card_event:{task_id}:{key}"
    value = wecom_buttons.parse(key)
    if value is None:
        return unhandled(connector, "wecom", event_id, created, reason=FOREIGN_BUTTON)
    return card_action(
        connector,
        "wecom",
        event_id,
        created,
        user_id=user,
        value=value,
        comment="",  # button_interaction cards take no input
        card={"response_code": str(msg.get("ResponseCode", "")), "task_id": task_id},
    )


def _approval_change(connector: str, msg: Mapping[str, Any]) -> InboundEvent:
    user, created = required(msg, "FromUserName", "CreateTime")
    info = msg.get("ApprovalInfo")
    if not isinstance(info, Mapping):
        raise malformed("ApprovalInfo is missing")
    (sp_no,) = required(info, "SpNo")
    sp_status = _int(info.get("SpStatus"))
    decided = [
        _int(detail.get("SpTime"))
        for record in as_list(info.get("SpRecord"))
        for detail in as_list(record.get("Details") if isinstance(record, Mapping) else None)
        if isinstance(detail, Mapping)
    ]
    change = info.get("StatuChangeEvent", "")  # sic: WeCom's spelling
    version = f"{max(decided, default=0)}|{sp_status}|{change}"
    return approval_changed(
        connector,
        "wecom",
        f"{user}:{created}:sys_approval_change:{sp_no}:{version}",
        created,
        source_id=sp_no,
        status=SP_STATUS.get(sp_status),
        version=version,
    )


def _text_message(connector: str, msg: Mapping[str, Any]) -> InboundEvent:
    msg_id, user, created = required(msg, "MsgId", "FromUserName", "CreateTime")
    return chat_message(
        connector,
        "wecom",
        msg_id,
        created,
        message_id=msg_id,
        sender=user,
        chat_id="",  # a message to the app: WeCom names no conversation
        chat_type=ChatType.DIRECT,
        text=str(msg.get("Content", "")),
        mentions=[],
    )


MAX_XML_ELEMENTS = 1000  # a callback has a few dozen; a sys_approval_change a few hundred


def xml_fields(xml: str | bytes) -> dict[str, Any]:
    """WeCom's XML as a dict: text elements as strings, nested ones as dicts, a repeated tag
    as a list; or a malformed delivery. Bounded before it grows: a DTD or an entity is refused
    as the parser meets it (defusedxml: WeCom sends none, and entities are how XML bombs
    work), and so is an element deeper than MAX_DEPTH or past MAX_XML_ELEMENTS, as the pull
    parser reaches it, 16 kB at a time; each element is dropped once read."""
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    events = SafeElementTree.iterparse(io.BytesIO(data), ("start", "end"), forbid_dtd=True)
    open_elements: list[dict[str, list[Any]]] = [{}]  # per open element: its children by tag
    started = 0
    try:
        for event, element in events:
            if event == "start":
                started += 1
                if len(open_elements) > MAX_DEPTH or started > MAX_XML_ELEMENTS:
                    raise malformed(f"the XML nests deeper than {MAX_DEPTH} or is too large")
                open_elements.append({})
                continue
            children = open_elements.pop()
            value = _value(element.text, children)
            open_elements[-1].setdefault(element.tag, []).append(value)
            element.clear()
    except (ElementTree.ParseError, DefusedXmlException):
        raise malformed("the body is not XML, or it has a DTD") from None
    (root,) = open_elements[0].values()  # a document that parsed has one root
    return root[0] if isinstance(root[0], dict) else {}


def _value(text: str | None, children: dict[str, list[Any]]) -> Any:
    if not children:
        return text or ""
    return {tag: values[0] if len(values) == 1 else values for tag, values in children.items()}


def as_list(value: Any) -> list[Any]:
    """A tag that may occur once (a dict) or more (a list) as a list."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
