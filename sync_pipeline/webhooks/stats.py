"""Counts of the webhook service, per connector, read from PostgreSQL (so every process and
`syncctl webhooks stats` see the same figures).

Accepted deliveries are the rows of `inbound_events`. Refusals are counted in
`webhook_refusals` by reason; duplicates (a second delivery of a recorded event: acknowledged
with the vendor's success answer, not enqueued) are counted there too, under their own reason,
and shown apart from the refusals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.state import inbound
from sync_pipeline.state.schema import inbound_events

DUPLICATE = inbound.DUPLICATE  # the webhook_refusals reason that counts duplicate deliveries
ERROR = "error"  # the reason that counts requests a bug of ours answered with a 500


@dataclass(frozen=True)
class WebhookStats:
    connector: str
    accepted: int = 0  # recorded and enqueued
    queued: int = 0  # of those, not handled yet
    duplicates: int = 0
    refused: Mapping[str, int] = field(default_factory=dict)  # reason -> count

    def as_json(self) -> dict[str, Any]:
        return {
            "connector": self.connector,
            "accepted": self.accepted,
            "queued": self.queued,
            "duplicates": self.duplicates,
            "refused": dict(sorted(self.refused.items())),
        }


def webhook_stats(conn: Connection) -> list[WebhookStats]:
    """One entry per connector that received anything, by name."""
    queued = sa.func.count().filter(inbound_events.c.status == inbound.EventStatus.QUEUED.value)
    rows = conn.execute(
        sa.select(inbound_events.c.connector, sa.func.count(), queued).group_by(
            inbound_events.c.connector
        )
    )
    accepted = {str(name): (int(total), int(waiting)) for name, total, waiting in rows}
    refused: dict[str, dict[str, int]] = {}
    for (name, reason), count in inbound.refusals(conn).items():
        refused.setdefault(name, {})[reason] = count
    found = []
    for name in sorted(set(accepted) | set(refused)):
        total, waiting = accepted.get(name, (0, 0))
        reasons = refused.get(name, {})
        found.append(
            WebhookStats(
                connector=name,
                accepted=total,
                queued=waiting,
                duplicates=reasons.pop(DUPLICATE, 0),
                refused=reasons,
            )
        )
    return found
