"""Frozen values every layer shares: records read from a source, pages, writes and their results.

Vendor JSON stops at the connector edge; past it, records carry a canonical payload (a plain
mapping with the stream's canonical field names) plus the facts the pipeline needs: the source
id, a version for idempotency, and the value of the cursor field.

What a record may hold is decided where it enters the pipeline (`Record.cleaned`, applied to
what a connector's read_page, hydrate and read_one return): the code points PostgreSQL or UTF-8
refuse become U+FFFD and everything else is kept exactly (sync_pipeline/untrusted.py), so the
content hash, the id map, a dead letter and the message sent all see one value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sync_pipeline.errors import PagingLoop
from sync_pipeline.untrusted import clean_json, clean_text


def content_hash(payload: Mapping[str, Any]) -> str:
    """A stable hash of a payload: key order and whitespace do not matter."""
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    # A payload is cleaned before it is hashed; a lone surrogate that got here anyway hashes
    # rather than raising.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Record:
    """One source object as read, in the stream's canonical shape."""

    source_id: str
    version: str  # changes whenever the object changes (update time, revision, state)
    cursor_value: str  # the flow's cursor field, as a sortable string (ISO-8601 UTC or digits)
    payload: Mapping[str, Any]

    @property
    def content_hash(self) -> str:
        return content_hash(self.payload)

    def cleaned(self) -> Record:
        """The record as the pipeline keeps it: what PostgreSQL or UTF-8 refuse is U+FFFD
        (untrusted.py). A record that is clean already comes back as it is."""
        now = (self.source_id, self.version, self.cursor_value, self.payload)
        kept = (*map(clean_text, now[:3]), clean_json(self.payload))
        if all(a is b for a, b in zip(kept, now, strict=True)):
            return self
        return Record(*kept)

    def as_json(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "version": self.version,
            "cursor_value": self.cursor_value,
            "payload": dict(self.payload),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            source_id=str(data["source_id"]),
            version=str(data["version"]),
            cursor_value=str(data["cursor_value"]),
            payload=dict(data["payload"]),
        )


@dataclass(frozen=True)
class DeadRecord:
    """A record that cannot be synced, why, and the class of the error that said so (its
    dead letter keeps both: `syncctl dlq list` shows the class, replays go by it)."""

    record: Record
    reason: str
    error_class: str  # the exception's class name; RecordError where no exception was raised


@dataclass(frozen=True)
class ReadWindow:
    """What to read: `since` inclusive (cursor minus lookback), `until` exclusive (signpost)."""

    since: str | None
    until: str | None


@dataclass(frozen=True)
class Page:
    """Records of one page, ordered by cursor value, and the token of the next page."""

    records: tuple[Record, ...]
    next_token: str | None  # None: this was the last page of the window
    calls: int = 1  # API calls the page cost (detail lookups included), for quotas and benches

    def cleaned(self) -> Page:
        """The page with every record cleaned (`Record.cleaned`); the token is the connector's
        own and is kept as it is."""
        return replace(self, records=tuple(record.cleaned() for record in self.records))


class PageTrail:
    """The page tokens one read of a stream has followed, which is what keeps a read from
    going round forever: a source that hands back a token already followed (the same token
    reads the same page) raises PagingLoop instead of being followed again."""

    def __init__(self, vendor: str, stream: str, start: str | None = None) -> None:
        self.vendor, self.stream = vendor, stream
        self._followed: set[str] = set() if start is None else {start}

    def follow(self, token: str | None) -> str | None:
        """`token`, the next page's, once it is known to be new; None (the end) passes."""
        if token is not None:
            if token in self._followed:
                raise PagingLoop(self.vendor, self.stream)
            self._followed.add(token)
        return token


class WriteOp(StrEnum):
    CREATE = "create"
    UPDATE = "update"


class NotifyKind(StrEnum):
    """What a planned write asks the target connector to make."""

    CARD = "card"  # an interactive card, e.g. with approve/reject buttons
    MESSAGE = "message"  # a plain text message
    UPDATE_CARD = "update_card"  # change the card sent earlier (the id map knows its id)
    TODO = "todo"  # an OA todo for the user in `to` (E9's unified todo)
    PROJECT_COMMENT = "project_comment"  # append to the record of the OA project in `to`
    # Mirror the approval in the IM's own approval center (an instance, tasks for the current
    # approvers), kept current as it moves; one write per state, no `to`: the tasks name them.
    APPROVAL_CENTER = "approval_center"
    # Decide the approval in the source as the approver in `to` (a card press): content holds
    # the decision, the node and the comment (connectors.base.DecisionRequest).
    DECISION = "oa_action"


@dataclass(frozen=True)
class Notification:
    """What a plan (or a card press) asks a connector to make: `kind`, for `to` (a user id, a
    project id for PROJECT_COMMENT, None where the content names them), showing `content`
    (the mapped record: title, text, url, status and any other mapped field), which each
    vendor turns into its own card, message, todo or approval-center instance.

    `response_code` is WeCom's one-use handle for updating a card (UPDATE_CARD only).
    Stored (pages' plans, dead letters) as `to_json` writes it: `{"kind", "to", "content"}`,
    the shape stored before this type existed, which `from_json` still reads.
    """

    kind: NotifyKind
    to: str | None
    content: Mapping[str, Any]
    response_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "to": self.to,
            "content": dict(self.content),
        }
        if self.response_code is not None:
            data["response_code"] = self.response_code
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notification:
        to, content, code = data.get("to"), data.get("content"), data.get("response_code")
        return cls(
            kind=NotifyKind(data["kind"]),
            to=None if to in (None, "") else str(to),
            content=dict(content) if isinstance(content, Mapping) else {},
            response_code=None if code in (None, "") else str(code),
        )


@dataclass(frozen=True)
class WriteRequest:
    """One effect to make on the target. `effect_key` is ours; connectors derive the vendor's
    own dedupe handle (Feishu uuid, WeCom duplicate check, DingTalk outTrackId) from it."""

    effect_key: str
    source_id: str
    op: WriteOp
    notification: Notification
    target_id: str | None = None  # for updates: the object made earlier

    def to_json(self) -> dict[str, Any]:
        """As pages' plans and dead letters store it (the notification under "payload")."""
        return {
            "effect_key": self.effect_key,
            "source_id": self.source_id,
            "op": self.op.value,
            "payload": self.notification.to_json(),
            "target_id": self.target_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WriteRequest:
        target_id = data.get("target_id")
        return cls(
            effect_key=str(data["effect_key"]),
            source_id=str(data["source_id"]),
            op=WriteOp(data["op"]),
            notification=Notification.from_json(data["payload"]),
            target_id=None if target_id is None else str(target_id),
        )


class WriteStatus(StrEnum):
    DONE = "done"  # the vendor accepted it; target_id names the object
    REJECTED = "rejected"  # the vendor refused this record: dead letter, batch goes on
    FAILED = "failed"  # transient; the whole write is retried


@dataclass(frozen=True)
class WriteResult:
    effect_key: str
    status: WriteStatus
    target_id: str | None = None
    reason: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def iso_utc(moment: datetime) -> str:
    """The canonical cursor spelling: sortable, second precision, UTC ("2026-03-02T09:30:00Z")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def minus_seconds(cursor: str, seconds: float) -> str:
    """A time cursor moved back by the lookback window."""
    return iso_utc(parse_iso_utc(cursor) - timedelta(seconds=seconds))


class EventKind(StrEnum):
    """What an inbound webhook or callback means, whatever vendor sent it."""

    APPROVAL_CHANGED = "approval_changed"  # a source approval moved: re-read it and sync it
    CARD_ACTION = "card_action"  # a user pressed a button on a card we sent
    MESSAGE = "message"  # a user posted a message (to a group or to the app)
    # Verified and acknowledged, but nothing to do (our own message reported back, an offline
    # copy, a type no handler takes): recorded as ignored and never handled, so its event id
    # is taken where the vendor signs the id but not the body (Agora).
    UNHANDLED = "unhandled"


@dataclass(frozen=True)
class ApprovalChange:
    """An approval_changed event's data: which approval moved, and, when the vendor said,
    to what status (its own word) and at which version. Handlers re-read the approval."""

    source_id: str
    status: str | None = None
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "status": self.status, "version": self.version}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalChange:
        return cls(
            str(data.get("source_id") or ""),
            _text_or_none(data.get("status")),
            _text_or_none(data.get("version")),
        )


@dataclass(frozen=True)
class CardAction:
    """A card_action event's data: `user_id` (as the pressing platform knows them) pressed a
    decision button (`action`: a connectors.base.Decision value, as the vendor's buttons
    module parsed it) about `source_id`, with a comment; `card` holds the vendor's handles
    for updating the card pressed (response_code, task_id, open_message_id, out_track_id...).
    """

    user_id: str
    action: str
    source_id: str
    comment: str = ""
    card: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "action": self.action,
            "source_id": self.source_id,
            "comment": self.comment,
            "card": dict(self.card),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardAction:
        card = data.get("card")
        handles = card if isinstance(card, Mapping) else {}
        return cls(
            user_id=str(data.get("user_id") or ""),
            action=str(data.get("action") or ""),
            source_id=str(data.get("source_id") or ""),
            comment=str(data.get("comment") or ""),
            card={str(k): str(v) for k, v in handles.items() if v not in (None, "")},
        )


class ChatType(StrEnum):
    GROUP = "group"
    DIRECT = "direct"


@dataclass(frozen=True)
class InboundMessage:
    """A message event's data: a message a user posted to a group or to the app. `flags`
    are read from its text (e.g. "important"), `mentions` are user ids, `sent_at` ISO UTC."""

    message_id: str
    sender: str
    chat_id: str
    chat_type: ChatType
    text: str
    flags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    sent_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sender": self.sender,
            "chat_id": self.chat_id,
            "chat_type": self.chat_type.value,
            "text": self.text,
            "flags": list(self.flags),
            "mentions": list(self.mentions),
            "sent_at": self.sent_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InboundMessage:
        chat_type = data.get("chat_type")
        return cls(
            message_id=str(data["message_id"]),
            sender=str(data.get("sender") or ""),
            chat_id=str(data.get("chat_id") or ""),
            chat_type=ChatType.GROUP if chat_type == ChatType.GROUP else ChatType.DIRECT,
            text=str(data.get("text") or ""),
            flags=tuple(str(f) for f in data.get("flags") or []),
            mentions=tuple(str(m) for m in data.get("mentions") or [] if m),
            sent_at=str(data.get("sent_at") or ""),
        )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class InboundEvent:
    """One verified webhook delivery, decoded into canonical fields at the edge.

    `event_id` is the vendor's own id for the delivery (Feishu `header.event_id`, WeCom
    `MsgId` or `FromUserName`+`CreateTime`, Agora `callId`, the OA's `eventId`): a second
    delivery of the same event has the same id, which is what deduplicates it.

    `data` by kind (ids are the sending platform's own, as its directory knows them), as the
    typed value's `to_json` writes it and its `from_json` reads it back:
      approval_changed  ApprovalChange
      card_action       CardAction
      message           InboundMessage
      unhandled         reason (why nothing is done for it)
    """

    connector: str  # the connector instance in connectors.yaml that the webhook belongs to
    vendor: str
    event_id: str
    kind: EventKind
    occurred_at: str  # ISO-8601 UTC, as iso_utc writes it
    data: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "vendor": self.vendor,
            "event_id": self.event_id,
            "kind": self.kind.value,
            "occurred_at": self.occurred_at,
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InboundEvent:
        return cls(
            connector=str(data["connector"]),
            vendor=str(data["vendor"]),
            event_id=str(data["event_id"]),
            kind=EventKind(data["kind"]),
            occurred_at=str(data["occurred_at"]),
            data=dict(data["data"]),
        )
