"""WeCom's template-card buttons: the key a button carries, which WeCom gives back as the
callback's EventKey (platform-apis.md section 1)."""

from __future__ import annotations

from sync_pipeline.connectors.buttons import ButtonValue


def encode(value: ButtonValue) -> str:
    """The decision, a colon, the source id. A decision holds no colon, so `parse` splits at
    the first one and an id holding colons stays whole: no id can change the decision."""
    return f"{value.decision.value}:{value.source_id}"


def parse(key: str) -> ButtonValue | None:
    """The value of a key `encode` made; None for any other key."""
    action, colon, source_id = key.partition(":")
    return ButtonValue.of(action, source_id) if colon else None
