"""Slack's Block Kit decision buttons. A button element is `{type: "button", action_id,
text: plain_text, value (at most 2,000 characters), style}`; a `block_actions` payload brings
back the pressed element's `action_id` and `value` (platform-apis.md section 4). Our value is
the JSON `{"action", "source_id"}`; the action id names the decision, unique in the block."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import ButtonValue
from sync_pipeline.connectors.markup import PLAIN

ACTION_PREFIX = "sync_"
STYLES = {"approve": "primary", "reject": "danger"}
MAX_VALUE_CHARS = 2000
MAX_LABEL_CHARS = 75


def encode(value: ButtonValue, label: str) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": ACTION_PREFIX + value.decision.value,
        "text": {"type": "plain_text", "text": PLAIN.fit(label, MAX_LABEL_CHARS, one_line=True)},
        "value": json.dumps(
            {"action": value.decision.value, "source_id": value.source_id},
            ensure_ascii=False,
            separators=(",", ":"),
        ),
    }
    style = STYLES.get(value.decision.value)
    if style:
        element["style"] = style
    return element


def parse(action: Mapping[str, Any]) -> ButtonValue | None:
    """The value of a pressed decision button of ours, from one of `actions[]`; None for any
    other element (another app's button, a link button, a hand-made payload)."""
    if action.get("type") != "button" or not str(action.get("action_id", "")).startswith(
        ACTION_PREFIX
    ):
        return None
    raw = action.get("value")
    if not isinstance(raw, str) or len(raw) > MAX_VALUE_CHARS:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    parsed = ButtonValue.of(value.get("action"), value.get("source_id"))
    if parsed is None or action.get("action_id") != ACTION_PREFIX + parsed.decision.value:
        return None
    return parsed
