"""DingTalk's interactive-card buttons. The card template (made in DingTalk's card builder)
defines the buttons; each one's callback params carry `action` and `source_id`, the template
filling `source_id` from the card data variable of that name, which `encode` gives. The
callback brings them back in `cardPrivateData` (platform-apis.md section 2); the first action
id stands in for a missing `params.action`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.connectors.buttons import ButtonValue


def encode(source_id: str) -> dict[str, str]:
    """The card data variables the template's decision buttons read."""
    return {"source_id": source_id}


def parse(private_data: Any) -> ButtonValue | None:
    """The value of a pressed decision button, from the callback's `cardPrivateData`; None
    for any other press."""
    if not isinstance(private_data, Mapping):
        return None
    params = private_data.get("params")
    params = params if isinstance(params, Mapping) else {}
    ids = private_data.get("actionIds")
    first = ids[0] if isinstance(ids, list) and ids else None
    return ButtonValue.of(params.get("action") or first, params.get("source_id"))
