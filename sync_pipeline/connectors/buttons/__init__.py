"""What a card's Approve / Reject button carries, and back: one module per vendor.

Each vendor's module both encodes the value its card builder puts on a button and parses the
value that vendor's callback brings back (the webhook decoders use it), so the two can never
drift apart. A value we did not make (another app's button, an Open link, a hand-made
callback) parses to None: the webhook records it as unhandled instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_pipeline.connectors.base import Decision

# The decision buttons of a card, in the order they are shown, with their labels.
DECISION_BUTTONS = ((Decision.APPROVE, "Approve"), (Decision.REJECT, "Reject"))


@dataclass(frozen=True)
class ButtonValue:
    """A decision button of ours: which decision, on which source record."""

    decision: Decision
    source_id: str

    @classmethod
    def of(cls, action: object, source_id: object) -> ButtonValue | None:
        """The value of a button we made, from its two parts; None for anything else (an
        action that is no decision, no source id)."""
        if not isinstance(action, str) or not isinstance(source_id, str) or not source_id:
            return None
        try:
            return cls(Decision(action), source_id)
        except ValueError:
            return None


def decision_values(source_id: str) -> list[tuple[ButtonValue, str]]:
    """The decision buttons a card about `source_id` shows: (value, label) each."""
    return [(ButtonValue(decision, source_id), label) for decision, label in DECISION_BUTTONS]
