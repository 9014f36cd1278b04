"""Pure pipeline stages: transform -> filter -> dedupe -> resolve -> plan. No I/O in here.

Each stage is a function over a batch of `Record`s that returns a small frozen result saying
where every record went (kept, skipped, dead-lettered, in conflict), so a caller can account for
all of them. Anything a stage must look up (the user directory, the id map, the target's state)
arrives as an argument: a Protocol or a plain mapping. Stages import no requests, redis,
psycopg2, sqlalchemy or celery.

Canonical approval payload (what the OA connector produces, stream "approvals")::

    {"id": "8812",                      # OA request id, also Record.source_id
     "title": "Annual leave, 3 days",
     "template": "leave",
     "status": "pending" | "approved" | "rejected" | "revoked",
     "applicant": "105",                # OA user id
     "current_approvers": ["101"],      # OA user ids; [] once decided
     "node": "100101",                  # the node it is at (optional; OA only)
     "last_operator": "101",            # who acted on it last (optional; OA only)
     "created_at": "2026-03-01T08:00:00Z", "updated_at": "2026-03-02T09:30:00Z",  # ISO UTC
     "form": {...},                     # the template's fields, by name
     "url": "https://oa.example/..."}

Canonical chat-message payload (a message event's data, events/messages.py; flows map it)::

    {"id", "sender": user id, "chat": conversation id or None, "chat_type": "group" | "direct",
     "group": chat id or None, "text": str, "flags": ["important", "decision", ...],
     "mentions": [user ids], "sent_at": ISO UTC,
     "group_info": {"id", "name", "description"} or None}   # added by the IM's hydrate

A one-to-one message has no group, and on WeCom and Agora Chat no conversation id either
(MESSAGE_GAPS): a flow over stream "messages" must give every field that reads one a default.

Notification write (`plan.plan_writes` -> WriteRequest.notification, what target connectors
make): a `records.Notification` of a kind (card, message, update_card, todo, project_comment,
approval_center), for `to` (a user id, a project id for project_comment, None where the
content names them), showing `content`: the mapped record (title, text, url and any other
mapped fields).

This module also holds the small payload language the stages share: dotted paths into a
payload (`lookup`) and `{name}` templates.
"""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


class _Missing(enum.Enum):
    MISSING = "MISSING"


MISSING = _Missing.MISSING  # a path that leads nowhere; distinct from a present None
MESSAGE_STREAM = "messages"  # the stream of chat messages, in the canonical shape above
# Message fields that some messages do not have, and why (config/flow.py refuses a mapping
# that needs one without a default: every such message would be a dead letter).
MESSAGE_GAPS: Mapping[str, str] = {
    "chat": "a one-to-one WeCom or Agora Chat message names no conversation (chat)",
    "group": "a one-to-one message has no group",
    "group_info": "a one-to-one message has no group",
}
PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")  # "title", "form.days", "a.0"


def lookup(payload: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path ("form.days", "current_approvers.0"), or MISSING."""
    value: Any = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list | tuple) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def as_text(value: Any) -> str:
    """How a value reads inside a message: lists joined with commas, None and MISSING empty."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(as_text(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Template:
    """`"Leave {title} from {form.applicant_name}"`: names are dotted paths into a payload.

    Parsed once at config load, so a bad template is a config error, never a runtime one.
    """

    text: str
    parts: tuple[tuple[str, str | None], ...]  # (literal text, path or None)

    @classmethod
    def parse(cls, text: str) -> Template:
        """Raises ValueError saying what is wrong (unbalanced braces, `{}`, `{x!r}`, `{x:>4}`).

        Conversions and format specs are refused: a spec that does not fit a value's type
        would fail at send time, one record at a time, instead of once at load.
        """
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in string.Formatter().parse(text):
            if conversion or spec:
                raise ValueError("expected plain {name} fields, without !conversion or :format")
            if name is not None and not PATH.fullmatch(name):
                raise ValueError(
                    f"expected a field name or dotted path inside {{}}, got {{{name}}}"
                )
            parts.append((literal, name))
        return cls(text=text, parts=tuple(parts))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name is not None)

    def missing(self, payload: Mapping[str, Any]) -> list[str]:
        """Names with no value (absent or None) in `payload`."""
        return [n for n in self.names if lookup(payload, n) in (None, MISSING)]

    @property
    def is_link(self) -> bool:
        """A template that starts as an http(s) URL makes a link: its values are percent-encoded,
        so a value (a chat id, a request id from outside) can only ever be the text of its own
        segment, never add a query parameter, a fragment or another path."""
        return self.text[:8].lower().startswith(("http://", "https://"))

    def render(self, payload: Mapping[str, Any]) -> str:
        """The text with values filled in; a missing value renders empty (check `missing`)."""
        fill = _encoded if self.is_link else as_text
        return "".join(
            literal + ("" if name is None else fill(lookup(payload, name)))
            for literal, name in self.parts
        )


def _encoded(value: Any) -> str:
    return quote(as_text(value), safe="")
