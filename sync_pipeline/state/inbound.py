"""Inbound webhook events: each vendor delivery handled once, and refusals counted.

Vendors deliver the same event twice (retries, our slow answer) and out of order (DESIGN.md
section 5). The webhook service records every verified delivery here under the vendor's own
event id before it enqueues anything: a second delivery of that id finds the row and is
acknowledged without a second task. The row also carries the event to the worker, so the task
passes only the row id (Celery messages stay small and hold no vendor payload).

A task handling a row holds it by a lease (`owner`, `lease_until`), claimed in a short
committed statement, never by a row lock held open while vendors are called
(pipeline/events: leases, not locks).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.state.schema import inbound_events, webhook_refusal_counts, webhook_refusals


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
    owner: str | None = None  # the task holding the row (or that finished it)
    lease_until: datetime | None = None  # until when it holds it


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


@dataclass(frozen=True)
class Lease:
    """Who holds rows (a token of one task's one try) and for how long at a time."""

    owner: str
    seconds: float

    def until(self) -> Any:
        """The end of the lease, on PostgreSQL's clock (every worker's lease reads one clock)."""
        return sa.func.now() + sa.literal(timedelta(seconds=self.seconds), sa.Interval())


def _free() -> sa.ColumnElement[bool]:
    """A queued row nobody holds: never leased, released, or its lease ran out (its holder
    crashed, or hung past its lease: the effect keys keep a takeover from doubling anything)."""
    until = inbound_events.c.lease_until
    return sa.and_(
        inbound_events.c.status == EventStatus.QUEUED.value,
        sa.or_(until.is_(None), until < sa.func.now()),
    )


def claim(conn: Connection, event_row_id: int, lease: Lease) -> StoredEvent | None:
    """Lease the row to `lease.owner` when it is queued and free; None otherwise (it does
    not exist, it is handled, or another task holds it). The caller commits the claim before
    it calls any vendor: the lease, not a lock held open, keeps other tasks off the row."""
    row = conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id == event_row_id, _free())
        .values(owner=lease.owner, lease_until=lease.until())
        .returning(*inbound_events.c)
    ).one_or_none()
    return None if row is None else _stored(row)


def claim_batch(
    conn: Connection,
    event_row_id: int,
    lease: Lease,
    *,
    batchable: Collection[str],
    limit: int,
) -> list[StoredEvent]:
    """Lease the row to `lease.owner` when it is queued and free, and with it, when its kind
    is one of `batchable`, up to `limit` - 1 other free, never-tried rows of its kind and
    connector, oldest first: one statement. The rows leased, the asked-for row first; none
    when that row is not free (it does not exist, it is handled, or another task holds it).

    The asked-for row is locked as the claim's own UPDATE would lock it (a transaction
    claiming it at this moment is waited for, and the row checked again after it); a
    companion another transaction is claiming at this moment is skipped (SKIP LOCKED). A row
    tried before (attempts > 0) waits for its own task's retry and backoff."""
    claimed = conn.execute(
        _CLAIM_BATCH,
        {
            "row_id": event_row_id,
            "owner": lease.owner,
            "lease": timedelta(seconds=lease.seconds),
            "kinds": list(batchable) or [""],
            "companions": max(0, limit - 1),
        },
    )
    return sorted((_stored(row) for row in claimed), key=lambda s: (s.id != event_row_id, s.id))


def _claim_batch_statement() -> sa.Update:
    """claim_batch's statement, built once (it runs for every task of events; building and
    keying it each time cost more than PostgreSQL's work): the asked-for row, free, locked
    as an UPDATE locks it; the companions, free, never tried, of its kind and connector,
    skipping those another claim has locked; both leased in one UPDATE."""
    rows = inbound_events
    own = (
        sa.select(rows.c.id, rows.c.kind, rows.c.connector)
        .where(rows.c.id == sa.bindparam("row_id", type_=sa.BigInteger), _free())
        .with_for_update()
        .cte("own")
    )
    companions = (
        sa.select(rows.c.id)
        .join(own, sa.true())
        .where(
            _free(),
            rows.c.attempts == 0,
            rows.c.kind == own.c.kind,
            rows.c.connector == own.c.connector,
            own.c.kind.in_(sa.bindparam("kinds", expanding=True)),
            rows.c.id != own.c.id,
        )
        .order_by(rows.c.id)
        .limit(sa.bindparam("companions", type_=sa.Integer))
        .with_for_update(of=rows, skip_locked=True)
        .cte("companions")
    )
    wanted = sa.union_all(sa.select(own.c.id), sa.select(companions.c.id))
    return (
        rows.update()
        .where(rows.c.id.in_(wanted))
        .values(
            owner=sa.bindparam("owner", type_=sa.Text),
            lease_until=sa.func.now() + sa.bindparam("lease", type_=sa.Interval()),
        )
        .returning(*rows.c)
    )


_CLAIM_BATCH = _claim_batch_statement()


def renew(conn: Connection, event_row_ids: Sequence[int], lease: Lease) -> list[int]:
    """Extend the lease of the rows `lease.owner` still holds; those rows."""
    if not event_row_ids:
        return []
    rows = conn.execute(
        inbound_events.update()
        .where(
            inbound_events.c.id.in_(list(event_row_ids)),
            inbound_events.c.owner == lease.owner,
            inbound_events.c.status == EventStatus.QUEUED.value,
        )
        .values(lease_until=lease.until())
        .returning(inbound_events.c.id)
    )
    return sorted(int(row_id) for (row_id,) in rows)


def held(conn: Connection, event_row_ids: Sequence[int], owner: str) -> set[int]:
    """The rows `owner` still holds, locked until `conn`'s (short) transaction ends, so that
    no task takes one over while its outcome is recorded. A row whose lease ran out but that
    nobody took over is still held: the outcome of its holder is as good as any."""
    if not event_row_ids:
        return set()
    rows = conn.execute(
        sa.select(inbound_events.c.id)
        .where(
            inbound_events.c.id.in_(list(event_row_ids)),
            inbound_events.c.owner == owner,
            inbound_events.c.status == EventStatus.QUEUED.value,
        )
        .with_for_update()
    )
    return {int(row_id) for (row_id,) in rows}


def release(conn: Connection, event_row_ids: Sequence[int], owner: str) -> None:
    """Give back rows `owner` holds that stay queued (for a retry): free for the next task."""
    if not event_row_ids:
        return
    conn.execute(
        inbound_events.update()
        .where(
            inbound_events.c.id.in_(list(event_row_ids)),
            inbound_events.c.owner == owner,
            inbound_events.c.status == EventStatus.QUEUED.value,
        )
        .values(owner=None, lease_until=None)
    )


def expired(conn: Connection, limit: int) -> list[int]:
    """Queued rows whose lease ran out: their holder stopped (crashed) before finishing."""
    rows = conn.execute(
        sa.select(inbound_events.c.id)
        .where(
            inbound_events.c.status == EventStatus.QUEUED.value,
            inbound_events.c.lease_until < sa.func.now(),
        )
        .order_by(inbound_events.c.id)
        .limit(limit)
    )
    return [int(row_id) for (row_id,) in rows]


def release_expired(conn: Connection, event_row_ids: Sequence[int]) -> list[int]:
    """Free rows whose lease ran out (and that nobody took over since): those rows."""
    if not event_row_ids:
        return []
    rows = conn.execute(
        inbound_events.update()
        .where(
            inbound_events.c.id.in_(list(event_row_ids)),
            inbound_events.c.status == EventStatus.QUEUED.value,
            inbound_events.c.lease_until < sa.func.now(),
        )
        .values(owner=None, lease_until=None)
        .returning(inbound_events.c.id)
    )
    return sorted(int(row_id) for (row_id,) in rows)


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
        row.id,
        event,
        EventStatus(row.status),
        int(row.attempts),
        row.error,
        row.received_at,
        row.owner,
        row.lease_until,
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
    """Rows ended with one status and reason (a batch's done rows share theirs); their lease
    ends with them (`owner` stays: the task that finished them)."""
    conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id.in_(list(event_row_ids)))
        .values(status=status.value, error=error, handled_at=sa.func.now(), lease_until=None)
    )


def finish_held(
    conn: Connection,
    event_row_ids: Sequence[int],
    owner: str,
    status: EventStatus,
    error: str | None = None,
) -> set[int]:
    """Of the rows, those `owner` still holds, each tried once more and ended with one status
    and reason, in one statement (the update locks them, as `held` would); returns them. A
    row taken over by another task is left to it."""
    if not event_row_ids:
        return set()
    rows = conn.execute(
        inbound_events.update()
        .where(
            inbound_events.c.id.in_(list(event_row_ids)),
            inbound_events.c.owner == owner,
            inbound_events.c.status == EventStatus.QUEUED.value,
        )
        .values(
            attempts=inbound_events.c.attempts + 1,
            status=status.value,
            error=error,
            handled_at=sa.func.now(),
            lease_until=None,
        )
        .returning(inbound_events.c.id)
    )
    return {int(row_id) for (row_id,) in rows}


def give_up(conn: Connection, event_row_id: int, error: str) -> bool:
    """Mark a queued row FAILED (its task's retries are spent) unless a task holds it now;
    whether it was marked."""
    row = conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id == event_row_id, _free())
        .values(
            status=EventStatus.FAILED.value,
            error=error,
            handled_at=sa.func.now(),
            owner=None,
            lease_until=None,
        )
        .returning(inbound_events.c.id)
    ).one_or_none()
    return row is not None


def still_free(conn: Connection, event_row_ids: Sequence[int]) -> list[int]:
    """Those of the rows that are still queued and that nobody holds, in the order given:
    the rows a claim could take now (one another task holds is that task's)."""
    free = set(
        conn.execute(
            sa.select(inbound_events.c.id).where(
                inbound_events.c.id.in_(list(event_row_ids)), _free()
            )
        ).scalars()
    )
    return [row_id for row_id in event_row_ids if row_id in free]


def requeue(conn: Connection, event_row_ids: list[int]) -> None:
    """Failed events back to queued, for a replay."""
    conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id.in_(event_row_ids))
        .values(
            status=EventStatus.QUEUED.value,
            error=None,
            handled_at=None,
            owner=None,
            lease_until=None,
        )
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


DUPLICATE = "duplicate"  # the refusal reason of a second delivery of a recorded event
REFUSAL_BUCKET_S = 10  # webhook_refusal_counts: the finest window a refusal alert can see
REFUSAL_BUCKETS_KEPT_S = 24 * 3600  # older buckets are pruned (prune_refusal_counts)


def refuse(conn: Connection, connector: str, reason: str) -> None:
    """Count a refused delivery (forged, stale, replayed, malformed) for monitoring: its total,
    and its 10-second bucket (what the `webhook_refusals` alert counts in its window)."""
    stmt = insert(webhook_refusals).values(connector=connector, reason=reason, count=1)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[webhook_refusals.c.connector, webhook_refusals.c.reason],
            set_={"count": webhook_refusals.c.count + 1, "last_at": sa.func.now()},
        )
    )
    epoch = sa.func.extract("epoch", sa.func.now())
    bucket = sa.func.to_timestamp(sa.func.floor(epoch / REFUSAL_BUCKET_S) * REFUSAL_BUCKET_S)
    counted = insert(webhook_refusal_counts).values(
        connector=connector, reason=reason, bucket=bucket, count=1
    )
    conn.execute(
        counted.on_conflict_do_update(
            index_elements=[
                webhook_refusal_counts.c.connector,
                webhook_refusal_counts.c.reason,
                webhook_refusal_counts.c.bucket,
            ],
            set_={"count": webhook_refusal_counts.c.count + 1},
        )
    )


def refusals_within(
    conn: Connection, window_s: int, *, leave_out: tuple[str, ...] = ()
) -> dict[str, dict[str, int]]:
    """Refusals per connector and reason in the last `window_s` seconds (by PostgreSQL's
    clock, which stamped them; to the 10-second bucket), without the reasons `leave_out`."""
    # A bucket starting up to 10 s before the window's start holds refusals inside it too.
    since = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, window_s + REFUSAL_BUCKET_S)
    query = (
        sa.select(
            webhook_refusal_counts.c.connector,
            webhook_refusal_counts.c.reason,
            sa.func.sum(webhook_refusal_counts.c.count),
        )
        .where(webhook_refusal_counts.c.bucket > since)
        .group_by(webhook_refusal_counts.c.connector, webhook_refusal_counts.c.reason)
    )
    if leave_out:
        query = query.where(webhook_refusal_counts.c.reason.not_in(leave_out))
    found: dict[str, dict[str, int]] = {}
    for connector, reason, count in conn.execute(query):
        found.setdefault(str(connector), {})[str(reason)] = int(count)
    return found


def prune_refusal_counts(conn: Connection) -> int:
    """Drop buckets older than REFUSAL_BUCKETS_KEPT_S; how many went."""
    cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, REFUSAL_BUCKETS_KEPT_S)
    gone = conn.execute(
        sa.delete(webhook_refusal_counts).where(webhook_refusal_counts.c.bucket < cutoff)
    )
    return int(gone.rowcount or 0)


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
