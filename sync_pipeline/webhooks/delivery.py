"""What a vendor module gets (one HTTP request) and gives back (an answer, maybe an event).

Each vendor module (oa, wecom, dingtalk, feishu, agora) has a `receive(endpoint, incoming)`
that verifies, decrypts and decodes one delivery, and a pure `decode` the unit tests feed with
fixtures. Neither touches Redis, PostgreSQL or the broker: app.py does that, the same way for
every vendor, so the order "verify, replay check, record once, enqueue, answer" lives once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_pipeline.config.connector import Secret, Vendor
from sync_pipeline.records import EventKind, InboundEvent, iso_utc
from sync_pipeline.webhooks.verify import malformed, timestamp_s


@dataclass(frozen=True)
class Endpoint:
    """One connector's webhook: its resolved callback secrets and timestamp window."""

    connector: str
    vendor: Vendor
    secrets: Mapping[str, Secret] = field(repr=False)
    window_s: float

    def secret(self, name: str) -> str:
        return self.secrets[name].reveal()

    @property
    def window(self) -> float:
        """How far from now a signed timestamp may be, either way (`window_s`)."""
        return self.window_s


@dataclass(frozen=True)
class Incoming:
    """One HTTP request as received: raw body bytes, header names in lower case."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    now: float  # Unix time of arrival


@dataclass(frozen=True)
class Answer:
    """What the vendor must get back, in its own format."""

    status: int = 200
    body: bytes = b""
    media_type: str = "text/plain"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return cls(status, text.encode(), "application/json")


@dataclass(frozen=True)
class Accepted:
    """A verified delivery. `event` None: a handshake, or an event type we do not handle
    (acknowledged and dropped; an `unhandled` event instead where its id must stay taken, as
    for Agora, whose signature leaves the body open). `replay_key` identifies this very signed
    request for its window (None for handshakes)."""

    answer: Answer
    event: InboundEvent | None = None
    replay_key: str | None = None
    valid_until: float = 0.0  # Unix time after which the window alone refuses the request


def iso_from_unix(value: Any) -> str:
    """A vendor's Unix time (seconds or milliseconds, number or string) as ISO-8601 UTC."""
    return iso_utc(datetime.fromtimestamp(timestamp_s(str(value)), UTC))


# The decoders build events here, so each kind's data is spelt once (records.InboundEvent).
def approval_changed(
    connector: str,
    vendor: str,
    event_id: str,
    at: Any,
    *,
    source_id: str,
    status: str | None,
    version: str | None,
) -> InboundEvent:
    """An approval moved at Unix time `at`."""
    data = {"source_id": source_id, "status": status, "version": version}
    return _event(connector, vendor, event_id, EventKind.APPROVAL_CHANGED, at, data)


def card_action(
    connector: str,
    vendor: str,
    event_id: str,
    at: Any,
    *,
    user_id: str,
    action: str,
    source_id: str,
    comment: str,
    card: Mapping[str, str],
) -> InboundEvent:
    """A button pressed at Unix time `at`; `card` holds the vendor's handles for updating it."""
    data = {
        "user_id": user_id,
        "action": action,
        "source_id": source_id,
        "comment": comment,
        "card": card,
    }
    return _event(connector, vendor, event_id, EventKind.CARD_ACTION, at, data)


def chat_message(
    connector: str,
    vendor: str,
    event_id: str,
    at: Any,
    *,
    message_id: str,
    sender: str,
    chat_id: str,
    chat_type: str,
    text: str,
    mentions: list[str],
) -> InboundEvent:
    """A message sent at Unix time `at`, its flags read from its text (`text_flags`)."""
    data = {
        "message_id": message_id,
        "sender": sender,
        "chat_id": chat_id,
        "chat_type": chat_type,
        "text": text,
        "flags": text_flags(text),
        "mentions": mentions,
        "sent_at": iso_from_unix(at),
    }
    return _event(connector, vendor, event_id, EventKind.MESSAGE, at, data)


def unhandled(connector: str, vendor: str, event_id: str, at: Any, *, reason: str) -> InboundEvent:
    """A delivery at Unix time `at` that nothing handles, kept so that its id is taken."""
    return _event(connector, vendor, event_id, EventKind.UNHANDLED, at, {"reason": reason})


def _event(
    connector: str, vendor: str, event_id: str, kind: EventKind, at: Any, data: Mapping[str, Any]
) -> InboundEvent:
    return InboundEvent(connector, vendor, event_id, kind, iso_from_unix(at), data)


def required(mapping: Mapping[str, Any], *keys: str) -> list[str]:
    """The values of `keys` as strings; a missing or empty one makes the delivery malformed."""
    values = []
    for key in keys:
        value = mapping.get(key)
        if value in (None, ""):
            raise malformed(f"{key} is missing")
        values.append(str(value))
    return values


def json_object(text: str | bytes) -> dict[str, Any]:
    """A JSON object, or a malformed delivery."""
    try:
        value = json.loads(text)
    except ValueError:
        raise malformed("the body is not JSON") from None
    if not isinstance(value, dict):
        raise malformed("the body is not a JSON object")
    return value


HASHTAG = re.compile(r"#(\w+)")


def text_flags(text: str) -> list[str]:
    """Flags a message carries in its text: `#important`, `#decision` (lower case, once each).

    No IM vendor has a "mark as important" field in its message callbacks, so a hashtag in
    the text is how a user tags a message for the rules (stages/rules.py FlagRule).
    """
    return list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(text)))
