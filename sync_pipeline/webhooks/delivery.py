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
from typing import Any, NoReturn

from sync_pipeline.config.connector import Secret, Vendor
from sync_pipeline.config.declarative import WebhookSpec
from sync_pipeline.connectors.buttons import ButtonValue
from sync_pipeline.records import (
    ApprovalChange,
    CardAction,
    ChatType,
    EventKind,
    InboundEvent,
    InboundMessage,
    iso_utc,
)
from sync_pipeline.untrusted import bounded_id, clean_json
from sync_pipeline.webhooks.verify import malformed, timestamp_s

# Vendors' callbacks nest a few levels (Feishu's card action: 5); past MAX_DEPTH a body is not
# theirs, and refusing it before parsing keeps every later step (cleaning, str(), the jsonb
# encoder) far from Python's recursion limit.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Endpoint:
    """One connector's webhook: its resolved callback secrets and timestamp window."""

    connector: str
    vendor: Vendor
    secrets: Mapping[str, Secret] = field(repr=False)
    window_s: float
    declarative: WebhookSpec | None = None  # vendor rest: its description's webhook

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
    """A vendor's Unix time (seconds or milliseconds, number or string) as ISO-8601 UTC; a
    time no calendar holds (past year 9999, before year 1) makes the delivery malformed."""
    try:
        return iso_utc(datetime.fromtimestamp(timestamp_s(str(value)), UTC))
    except (OverflowError, OSError, ValueError):
        raise malformed("a time is out of range") from None


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
    change = ApprovalChange(bounded_id(source_id), status, version)
    return _event(connector, vendor, event_id, EventKind.APPROVAL_CHANGED, at, change.to_json())


def card_action(
    connector: str,
    vendor: str,
    event_id: str,
    at: Any,
    *,
    user_id: str,
    value: ButtonValue,
    comment: str,
    card: Mapping[str, str],
) -> InboundEvent:
    """A decision button of ours (`value`, as the vendor's buttons module parsed it) pressed
    at Unix time `at`; `card` holds the vendor's handles for updating the card."""
    press = CardAction(
        user_id=bounded_id(user_id),
        action=value.decision.value,
        source_id=bounded_id(value.source_id),
        comment=comment,
        card={key: bounded_id(handle) for key, handle in card.items()},
    )
    return _event(connector, vendor, event_id, EventKind.CARD_ACTION, at, press.to_json())


def chat_message(
    connector: str,
    vendor: str,
    event_id: str,
    at: Any,
    *,
    message_id: str,
    sender: str,
    chat_id: str,
    chat_type: ChatType,
    text: str,
    mentions: list[str],
) -> InboundEvent:
    """A message sent at Unix time `at`, its flags read from its text (`text_flags`)."""
    message = InboundMessage(
        message_id=bounded_id(message_id),
        sender=bounded_id(sender),
        chat_id=bounded_id(chat_id),
        chat_type=chat_type,
        text=text,
        flags=tuple(text_flags(text)),
        mentions=tuple(bounded_id(person) for person in mentions),
        sent_at=iso_from_unix(at),
    )
    return _event(connector, vendor, event_id, EventKind.MESSAGE, at, message.to_json())


# Why a press of a button we did not make (another app's, a hand-made callback) is not handled.
FOREIGN_BUTTON = "a press of a button that is not one of our decision buttons"


def unhandled(connector: str, vendor: str, event_id: str, at: Any, *, reason: str) -> InboundEvent:
    """A delivery at Unix time `at` that nothing handles, kept so that its id is taken."""
    return _event(connector, vendor, event_id, EventKind.UNHANDLED, at, {"reason": reason})


def _event(
    connector: str, vendor: str, event_id: str, kind: EventKind, at: Any, data: Mapping[str, Any]
) -> InboundEvent:
    """Where outside text becomes an event: the id bounded (a key of PostgreSQL's unique index,
    whose rows must stay under 2.7 kB, and a word in log lines), the data cleaned of what
    PostgreSQL refuses (untrusted.py)."""
    occurred_at = iso_from_unix(at)
    return InboundEvent(
        connector, vendor, bounded_id(event_id), kind, occurred_at, clean_json(dict(data))
    )


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
    """A JSON object (json_value), or a malformed delivery."""
    value = json_value(text)
    if not isinstance(value, dict):
        raise malformed("the body is not a JSON object")
    return value


def json_value(text: str | bytes) -> Any:
    """A JSON text as Python values, its strings cleaned (untrusted.clean_text), or a
    malformed delivery: not UTF-8, not JSON, NaN or Infinity (not JSON either, and refused by
    PostgreSQL's jsonb), or nested deeper than MAX_DEPTH, which is checked before parsing."""
    try:
        text = text.decode("utf-8-sig") if isinstance(text, bytes) else text
    except UnicodeDecodeError:
        raise malformed("the body is not UTF-8") from None
    if not nested_within_max_depth(text):
        raise malformed(f"the body is not JSON, or nests deeper than {MAX_DEPTH}")
    try:
        value = json.loads(text, parse_constant=_not_json)
    except ValueError:
        raise malformed("the body is not JSON") from None
    return clean_json(value)


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


# The depth check is three passes of the C regex engine, each linear by construction: JSON
# strings are cut out (a possessive loop, so an unclosed string runs to the end and is never
# scanned again), everything but brackets goes, and what is left must be brackets nested at
# most MAX_DEPTH deep: a regular language once the depth is bounded, matched with possessive
# loops that never backtrack. Pairs like "[}" pass here and fail in json.loads.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"?', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_NESTED = ""
for _ in range(MAX_DEPTH):
    _NESTED = rf"(?:[\[{{]{_NESTED}[\]}}])*+"
_WITHIN_MAX_DEPTH = re.compile(_NESTED)


def nested_within_max_depth(text: str) -> bool:
    """Whether the brackets of a JSON text (outside its strings) nest at most MAX_DEPTH deep
    and close in order; linear in the length of `text`, whatever it holds."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return True  # nothing nests deeper than it has brackets: most bodies stop here
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return _WITHIN_MAX_DEPTH.fullmatch(brackets) is not None


HASHTAG = re.compile(r"#(\w+)")


def text_flags(text: str) -> list[str]:
    """Flags a message carries in its text: `#important`, `#decision` (lower case, once each).

    No IM vendor has a "mark as important" field in its message callbacks, so a hashtag in
    the text is how a user tags a message for the rules (stages/rules.py FlagRule).
    """
    return list(dict.fromkeys(tag.lower() for tag in HASHTAG.findall(text)))
