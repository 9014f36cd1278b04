"""Agora Chat's card buttons. Agora interprets none of a custom message: our card lists its
buttons in `customExts.buttons` ({label, action, source_id} each), and the client app sends a
press back as a custom message whose `customExts` carry that button's action and source_id
(platform-apis.md section 6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import ButtonValue


def encode(value: ButtonValue, label: str) -> dict[str, str]:
    return {"label": label, "action": value.decision.value, "source_id": value.source_id}


def parse(exts: Mapping[str, Any]) -> ButtonValue | None:
    """The value of the pressed button, from the press's `customExts`; None for any other."""
    return ButtonValue.of(exts.get("action"), exts.get("source_id"))
