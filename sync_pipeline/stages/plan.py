"""Plan writes: which notifications a batch of mapped records produces, each with its key.

Every matching notify rule gives one write per recipient. The effect key is a sha256 over
(flow, target, source id, state, kind, recipient), so a redelivered task, a re-read page or a
record edited without changing state derives the same key, and the effects table turns the
second send into a no-op. "State" is the rule's `once_per` field (for approvals: the status,
so an approval edited while pending does not notify its approver twice); without one it is
the record's version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_pipeline.records import Notification, NotifyKind, Record, WriteOp, WriteRequest
from sync_pipeline.stages import MISSING, Template, as_text, lookup
from sync_pipeline.stages.rules import Rule, evaluate

# The target stream each kind writes to, where it is not an IM's "messages": config refuses a
# flow whose notify rules and target stream disagree, rather than dead-lettering every write.
STREAM_OF_KIND = {
    NotifyKind.TODO: "todos",
    NotifyKind.PROJECT_COMMENT: "project_progress",
    NotifyKind.APPROVAL_CENTER: "approval_center",
}
# Kinds that act on the object made for the record earlier (the id map's target id).
FOLLOWS_TARGET = frozenset({NotifyKind.UPDATE_CARD, NotifyKind.APPROVAL_CENTER})


@dataclass(frozen=True)
class NotifyRule:
    """When `when` holds (or always, without one) for a mapped record, send `kind` to each id
    in field `to`: a user id, or for PROJECT_COMMENT a project id."""

    when: Rule | None
    kind: NotifyKind
    to: str | None  # field holding a user id or a list of them; None for UPDATE_CARD
    text: Template | None = None  # replaces content["text"]; names are mapped fields
    once_per: str | None = None  # field whose value is the "state" in the effect key


def effect_key(
    flow: str, target: str, source_id: str, state: str, kind: str, recipient: str
) -> str:
    """Deterministic: the same effect always gets the same key (hex sha256)."""
    parts = json.dumps([flow, target, source_id, state, kind, recipient], ensure_ascii=False)
    return hashlib.sha256(parts.encode("utf-8")).hexdigest()


def plan_writes(
    flow_name: str,
    batch: Sequence[Record],
    notify_rules: Sequence[NotifyRule],
    id_map_targets: Mapping[str, str],
    *,
    target: str,
) -> list[WriteRequest]:
    """The writes a batch produces, in batch order; a record no rule matches produces none.

    Two rules that produce the same effect (same kind, recipient and state) give one write.
    `id_map_targets` maps source id -> the target object made for it earlier (the card to
    update); `target` names the target connector and stream, e.g. "sandbox_wecom/messages".
    """
    writes: dict[str, WriteRequest] = {}
    for record in batch:
        for rule in notify_rules:
            if rule.when is None or evaluate(rule.when, record.payload):
                for write in _writes(flow_name, target, record, rule, id_map_targets):
                    writes.setdefault(write.effect_key, write)
    return list(writes.values())


def _writes(
    flow: str, target: str, record: Record, rule: NotifyRule, id_map_targets: Mapping[str, str]
) -> list[WriteRequest]:
    """One rule's writes for one record: one per recipient."""
    update = rule.kind is NotifyKind.UPDATE_CARD
    target_id = id_map_targets.get(record.source_id) if rule.kind in FOLLOWS_TARGET else None
    if update and target_id is None:
        return []  # no card was sent, so there is nothing to update
    state = record.version if rule.once_per is None else _state(record, rule.once_per)
    content = dict(record.payload)
    if rule.text is not None:
        content["text"] = rule.text.render(record.payload)
    return [
        WriteRequest(
            effect_key=effect_key(flow, target, record.source_id, state, rule.kind, to or ""),
            source_id=record.source_id,
            op=WriteOp.UPDATE if target_id is not None else WriteOp.CREATE,
            notification=Notification(rule.kind, to, content),
            target_id=target_id,
        )
        for to in _recipients(record, rule)
    ]


def _state(record: Record, field: str) -> str:
    value = lookup(record.payload, field)
    return "" if value is MISSING else as_text(value)


def _recipients(record: Record, rule: NotifyRule) -> list[str | None]:
    """Distinct recipients in order; a rule without `to` (a card update, an approval center
    instance) has one, None."""
    if rule.to is None:
        return [None]
    value: Any = lookup(record.payload, rule.to)
    if value is MISSING or value is None:
        return []
    users = value if isinstance(value, list | tuple) else [value]
    return list(dict.fromkeys(str(u) for u in users if u not in (None, "")))
