"""Feishu's interactive-card buttons: the `value` object a button carries, which the
`card.action.trigger` callback gives back as `action.value` (platform-apis.md section 3)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import ButtonValue


def encode(value: ButtonValue) -> dict[str, str]:
    return {"action": value.decision.value, "source_id": value.source_id}


def parse(value: Any) -> ButtonValue | None:
    """The value of a button `encode` made, as an object or as the JSON text of one (Feishu
    sends either); None for any other value."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past what a button holds
            return None
    if not isinstance(value, Mapping):
        return None
    return ButtonValue.of(value.get("action"), value.get("source_id"))
