"""Inbound webhook events: each vendor delivery handled once, and refusals counted.

Vendors deliver the same event twice (retries, our slow answer) and out of order (DESIGN.md
section 5). The webhook service records every verified delivery here under the vendor's own
event id before it enqueues anything: a second delivery of that id finds the row and is
acknowledged without a second task. The row also carries the event to the worker, so the task
passes only the row id (Celery messages stay small and hold no vendor payload).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.state.schema import inbound_events, webhook_refusals


class EventStatus(StrEnum):
    QUEUED = "queued"  # recorded and enqueued; a task will handle it
    DONE = "done"  # handled: its effects are made (or were already)
    IGNORED = "ignored"  # nothing to do for it (no flow wants it; a rule filtered it out)
    FAILED = "failed"  # handling gave up; `error` says why, `syncctl events replay` retries


@dataclass(frozen=True)
class StoredEvent:
    id: int
    event: InboundEvent
    status: EventStatus
    attempts: int
    error: str | None
    received_at: datetime


def record(conn: Connection, event: InboundEvent) -> int | None:
    """Store a delivery; its row id, or None when the same event id was recorded before.

    An unhandled event is stored as ignored, with its reason: no task is sent for it, but its
    id is taken, so the same id with another body (Agora signs the id, not the body) is a
    duplicate too.
    """
    ignored = event.kind is EventKind.UNHANDLED
    stmt = (
        insert(inbound_events)
        .values(
            connector=event.connector,
            vendor=event.vendor,
            event_id=event.event_id,
            kind=event.kind.value,
            occurred_at=event.occurred_at,
            data=dict(event.data),
            status=(EventStatus.IGNORED if ignored else EventStatus.QUEUED).value,
            error=str(event.data.get("reason", "")) if ignored else None,
            handled_at=sa.func.now() if ignored else None,
        )
        .on_conflict_do_nothing(constraint="inbound_events_once")
        .returning(inbound_events.c.id)
    )
    row_id = conn.execute(stmt).scalar_one_or_none()
    return None if row_id is None else int(row_id)


def get(conn: Connection, event_row_id: int) -> StoredEvent | None:
    row = conn.execute(
        sa.select(inbound_events).where(inbound_events.c.id == event_row_id)
    ).one_or_none()
    return None if row is None else _stored(row)


def claim(conn: Connection, event_row_id: int) -> StoredEvent | None:
    """Lock the row until `conn`'s transaction ends; None when it does not exist or another
    transaction holds it (a task handling it right now, alone or in a batch)."""
    stored, claimed = claim_or_peek(conn, event_row_id)
    return stored if claimed else None


def claim_or_peek(conn: Connection, event_row_id: int) -> tuple[StoredEvent | None, bool]:
    """(the row, True) locked until `conn`'s transaction ends, or (the row as committed,
    False) when another transaction holds it; (None, False) when it does not exist. One
    statement: the task of a row already in another task's batch costs one round trip."""
    locked = (
        sa.select(inbound_events.c.id)
        .where(inbound_events.c.id == event_row_id)
        .with_for_update(skip_locked=True)
        .cte("locked")
    )
    row = conn.execute(
        sa.select(inbound_events, locked.c.id.is_not(None).label("claimed"))
        .select_from(inbound_events.outerjoin(locked, locked.c.id == inbound_events.c.id))
        .where(inbound_events.c.id == event_row_id)
    ).one_or_none()
    return (None, False) if row is None else (_stored(row), bool(row.claimed))


def claim_queued(
    conn: Connection, kind: str, connector: str, *, besides: int, limit: int
) -> list[StoredEvent]:
    """Lock up to `limit` other queued, never-tried rows of one kind and connector, oldest
    first, until `conn`'s transaction ends; rows another transaction holds are skipped. A row
    tried before (attempts > 0) waits for its own task's retry and backoff."""
    if limit < 1:
        return []
    rows = conn.execute(
        sa.select(inbound_events)
        .where(
            inbound_events.c.status == EventStatus.QUEUED.value,
            inbound_events.c.attempts == 0,
            inbound_events.c.kind == kind,
            inbound_events.c.connector == connector,
            inbound_events.c.id != besides,
        )
        .order_by(inbound_events.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [_stored(row) for row in rows]


def _stored(row: sa.Row[Any]) -> StoredEvent:
    event = InboundEvent.from_json(
        {
            "connector": row.connector,
            "vendor": row.vendor,
            "event_id": row.event_id,
            "kind": row.kind,
            "occurred_at": row.occurred_at,
            "data": row.data,
        }
    )
    return StoredEvent(
        row.id, event, EventStatus(row.status), int(row.attempts), row.error, row.received_at
    )


def start_attempt(conn: Connection, event_row_id: int) -> None:
    start_attempts(conn, [event_row_id])


def start_attempts(conn: Connection, event_row_ids: list[int]) -> None:
    conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id.in_(event_row_ids))
        .values(attempts=inbound_events.c.attempts + 1)
    )


def finish(
    conn: Connection, event_row_id: int, status: EventStatus, error: str | None = None
) -> None:
    finish_many(conn, [event_row_id], status, error)


def finish_many(
    conn: Connection, event_row_ids: Sequence[int], status: EventStatus, error: str | None = None
) -> None:
    """Rows ended with one status and reason (a batch's done rows share theirs)."""
    conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id.in_(list(event_row_ids)))
        .values(status=status.value, error=error, handled_at=sa.func.now())
    )


def still_queued(conn: Connection, event_row_ids: Sequence[int]) -> list[int]:
    """Those of the rows that are still queued, in the order given."""
    queued = set(
        conn.execute(
            sa.select(inbound_events.c.id).where(
                inbound_events.c.id.in_(list(event_row_ids)),
                inbound_events.c.status == EventStatus.QUEUED.value,
            )
        ).scalars()
    )
    return [row_id for row_id in event_row_ids if row_id in queued]


def requeue(conn: Connection, event_row_ids: list[int]) -> None:
    """Failed events back to queued, for a replay."""
    conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id.in_(event_row_ids))
        .values(status=EventStatus.QUEUED.value, error=None, handled_at=None)
    )


def ids_with_status(conn: Connection, status: EventStatus, limit: int = 1000) -> list[int]:
    """The newest `limit` events with `status`, oldest of them first (newest last)."""
    rows = conn.execute(
        sa.select(inbound_events.c.id)
        .where(inbound_events.c.status == status.value)
        .order_by(inbound_events.c.id.desc())
        .limit(limit)
    )
    return sorted(int(r) for (r,) in rows)


def count_by_status(conn: Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(inbound_events.c.status, sa.func.count()).group_by(inbound_events.c.status)
    )
    return {str(status): int(n) for status, n in rows}


def refuse(conn: Connection, connector: str, reason: str) -> None:
    """Count a refused delivery (forged, stale, replayed, malformed) for monitoring."""
    stmt = insert(webhook_refusals).values(connector=connector, reason=reason, count=1)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[webhook_refusals.c.connector, webhook_refusals.c.reason],
            set_={"count": webhook_refusals.c.count + 1, "last_at": sa.func.now()},
        )
    )


def refusals(conn: Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(
        sa.select(webhook_refusals.c.connector, webhook_refusals.c.reason, webhook_refusals.c.count)
    )
    return {(str(c), str(r)): int(n) for c, r, n in rows}


def requeue_failed(conn: Connection, event_row_ids: list[int] | None = None) -> list[int]:
    """Failed events (these, or every failed one) back to queued, for a replay: their ids,
    for the caller to send `events.handle` for each. Events not failed are left alone."""
    query = sa.select(inbound_events.c.id).where(
        inbound_events.c.status == EventStatus.FAILED.value
    )
    if event_row_ids is not None:
        query = query.where(inbound_events.c.id.in_(event_row_ids))
    failed = [int(row_id) for (row_id,) in conn.execute(query.order_by(inbound_events.c.id))]
    requeue(conn, failed)
    return failed
