"""Re-send `events.handle` for inbound events that were recorded but never picked up.

The webhook service records a delivery in PostgreSQL before it sends the task; when the broker
is down at that moment the row stays `queued` with no task for it. Beat runs `admin.sweep_events`
every SWEEP_EVERY_S, which re-sends the task for such rows. A row a worker has started
(attempts > 0) belongs to its task's own retries, unless it has been queued longer than
`stuck_after_s` (its retry was lost with Redis, say). Each row is re-sent at most once per
`resend_every_s` (a Redis marker), so a long queue of waiting events is not doubled every
sweep. A redelivered `events.handle` for a handled row does nothing (events.handle).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import inbound_events

SWEEP_TASK = "admin.sweep_events"
SWEEP_EVERY_S = 60.0
OLDER_THAN_S = 60.0  # a row younger than this may still have its task on the way
STUCK_AFTER_S = 3600.0  # the broker's visibility timeout: a task's retries are long over
RESEND_EVERY_S = 600.0
LIMIT = 500


def sweep(
    engine: Engine,
    client: redis.Redis,
    send: Callable[[int], object],
    *,
    now: datetime | None = None,
    older_than_s: float = OLDER_THAN_S,
    stuck_after_s: float = STUCK_AFTER_S,
    resend_every_s: float = RESEND_EVERY_S,
) -> list[int]:
    """Send `events.handle` again for the rows that need it; their ids."""
    now = now or datetime.now(UTC)
    waiting = sa.and_(
        inbound_events.c.attempts == 0,
        inbound_events.c.received_at < now - timedelta(seconds=older_than_s),
    )
    stuck = inbound_events.c.received_at < now - timedelta(seconds=stuck_after_s)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(inbound_events.c.id)
            .where(inbound_events.c.status == EventStatus.QUEUED.value, sa.or_(waiting, stuck))
            .order_by(inbound_events.c.id)
            .limit(LIMIT)
        )
        ids = [int(row_id) for (row_id,) in rows]
    sent = []
    for row_id in ids:
        marker = f"webhooks:resent:{row_id}"
        if not client.set(marker, "1", nx=True, ex=max(1, round(resend_every_s))):
            continue
        try:
            send(row_id)
        except BaseException:
            client.delete(marker)  # not sent: the next sweep tries again
            raise
        sent.append(row_id)
    return sent
