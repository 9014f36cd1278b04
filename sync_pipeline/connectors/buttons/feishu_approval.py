"""Feishu approval center's quick Approve / Reject on a task: the `action_configs` a task
offers and the `action_context` it carries, which Feishu's quick-approval callback brings
back with the `action_type` pressed (platform-apis.md section 3). The connector writes them
(connectors/feishu_approval_center.py), the webhook service reads them back
(webhooks/feishu_approval.py).

The context names the OA request and the approver's open_id: Feishu lets only a task's own
approver act on it, and its callback names them by user_id, which our directory does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_pipeline.connectors.base import Decision

QUICK_ACTIONS = (
    {"action_type": "APPROVE", "action_name": "Approve"},
    {"action_type": "REJECT", "action_name": "Reject", "is_need_reason": True},
)
DECISIONS = {"APPROVE": Decision.APPROVE, "REJECT": Decision.REJECT}


@dataclass(frozen=True)
class QuickContext:
    """What a task's quick actions carry: the OA request and the task's approver."""

    source_id: str
    open_id: str


def encode(context: QuickContext) -> str:
    """The task's `action_context`: a JSON object, as Feishu keeps it (a string)."""
    return json.dumps(
        {"source_id": context.source_id, "open_id": context.open_id}, separators=(",", ":")
    )


def decision(action_type: Any) -> Decision | None:
    """The decision a quick action pressed; None for one we offer no decision for."""
    return DECISIONS.get(str(action_type or ""))


def parse(action_context: Any) -> QuickContext:
    """The context `encode` wrote; its parts are "" where the context does not say (not
    ours, not JSON), and the caller falls back to what the callback names."""
    found = _object(action_context)
    source_id, open_id = found.get("source_id"), found.get("open_id")
    return QuickContext(
        source_id if isinstance(source_id, str) else "",
        open_id if isinstance(open_id, str) else "",
    )


def _object(text: Any) -> Mapping[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past what a context holds
        return {}
    return found if isinstance(found, Mapping) else {}
