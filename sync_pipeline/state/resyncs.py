"""Full resyncs: one row each, its checkpoint and its counts (`syncctl resync`, `status`).

A resync re-reads everything a flow covers in [since, until) - `until` being the moment it was
asked, fixed so that a resumed resync reads the same window - page by page. Its checkpoint is
the token of the next page to read: it moves in the same transaction as the id-map rows of the
page just handled, so a resync killed at any point goes on from the page it was handling, and
the effect keys keep that page's effects from repeating. It never touches the flow's cursor or
fence: the scheduled pulls go on beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.errors import RunStatus as ResyncStatus
from sync_pipeline.records import iso_utc, parse_iso_utc
from sync_pipeline.state.schema import flow_controls, resyncs

__all__ = ["Resync", "ResyncCounts", "ResyncStatus"]


@dataclass(frozen=True)
class ResyncCounts:
    """What a resync did so far (or, dry, would do)."""

    pages: int = 0
    read: int = 0
    written: int = 0
    skipped: int = 0  # records that needed no effect: unchanged, filtered
    dead_lettered: int = 0
    would_create: int = 0  # a dry run: effects it would make for records never synced
    would_update: int = 0  # a dry run: effects it would make for records synced before


@dataclass(frozen=True)
class Resync:
    id: int
    flow: str
    since: str | None
    until: str
    dry_run: bool
    status: ResyncStatus
    page_token: str | None
    position: str | None  # the cursor value of the last record handled (the read's progress)
    first_position: str | None  # the first record's: where a resync from the beginning began
    counts: ResyncCounts
    run_id: int | None
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status is not ResyncStatus.RUNNING

    def fraction(self) -> float | None:
        """How far through its window it has read, when the window and position are times
        (records come in cursor order); None when that cannot be told."""
        if self.status is ResyncStatus.SUCCEEDED:
            return 1.0
        start = self.since or self.first_position
        if self.position is None or start is None:
            return None
        try:
            since, until, at = (parse_iso_utc(v) for v in (start, self.until, self.position))
        except ValueError:
            return None
        span = (until - since).total_seconds()
        return None if span <= 0 else min(1.0, max(0.0, (at - since).total_seconds() / span))


def start(
    conn: Connection,
    flow: str,
    since: str | None,
    requested_by: str,
    *,
    dry_run: bool = False,
) -> Resync | None:
    """Record a resync of [since, now on PostgreSQL's clock) in the caller's transaction;
    None while another resync of the flow is running (one at a time: two would only double
    the reads)."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"resync:{flow}"))))
    if running(conn, flow) is not None:
        return None
    now = conn.execute(sa.select(sa.func.now())).scalar_one()
    until = iso_utc(now)
    row = conn.execute(
        resyncs.insert()
        .values(flow=flow, since=since, until=until, requested_by=requested_by, dry_run=dry_run)
        .returning(*resyncs.c)
    ).one()
    return _resync(row)


def get(conn: Connection, resync_id: int) -> Resync | None:
    row = conn.execute(sa.select(resyncs).where(resyncs.c.id == resync_id)).one_or_none()
    return None if row is None else _resync(row)


def running(conn: Connection, flow: str) -> Resync | None:
    """The flow's resync that is going on, if one is."""
    row = conn.execute(
        sa.select(resyncs)
        .where(resyncs.c.flow == flow, resyncs.c.status == ResyncStatus.RUNNING.value)
        .order_by(resyncs.c.id)
        .limit(1)
    ).one_or_none()
    return None if row is None else _resync(row)


def latest(conn: Connection, flow: str) -> Resync | None:
    row = conn.execute(
        sa.select(resyncs).where(resyncs.c.flow == flow).order_by(resyncs.c.id.desc()).limit(1)
    ).one_or_none()
    return None if row is None else _resync(row)


def set_run(conn: Connection, resync_id: int, run_id: int) -> None:
    conn.execute(resyncs.update().where(resyncs.c.id == resync_id).values(run_id=run_id))


def checkpoint(
    conn: Connection,
    resync_id: int,
    page_token: str | None,
    positions: tuple[str, str] | None,
    counts: ResyncCounts,
) -> bool:
    """Past one page: the next page's token, the cursor values of its first and last records
    (None: it had none) and its counts, in the caller's transaction (the one that records the
    page's id-map rows). False if the resync is over already."""
    added = {
        name: getattr(resyncs.c, name) + getattr(counts, name)
        for name in ResyncCounts.__dataclass_fields__
        if getattr(counts, name)
    }
    first_position, position = positions if positions is not None else (None, None)
    result = conn.execute(
        resyncs.update()
        .where(resyncs.c.id == resync_id, resyncs.c.status == ResyncStatus.RUNNING.value)
        .values(
            page_token=page_token,
            position=sa.func.coalesce(position, resyncs.c.position),
            first_position=sa.func.coalesce(resyncs.c.first_position, first_position),
            **added,
        )
    )
    return result.rowcount == 1


def lock_running(conn: Connection, resync_id: int) -> Resync | None:
    """The resync's row, locked for the caller's transaction, while it is running."""
    row = conn.execute(
        sa.select(resyncs)
        .where(resyncs.c.id == resync_id, resyncs.c.status == ResyncStatus.RUNNING.value)
        .with_for_update()
    ).one_or_none()
    return None if row is None else _resync(row)


def finish(
    conn: Connection, resync_id: int, status: ResyncStatus, error: str | None = None
) -> bool:
    result = conn.execute(
        resyncs.update()
        .where(resyncs.c.id == resync_id, resyncs.c.status == ResyncStatus.RUNNING.value)
        .values(status=status.value, finished_at=sa.func.now(), error=error)
    )
    return result.rowcount == 1


def lapsed(conn: Connection, now: datetime, limit: int = 100) -> Sequence[tuple[int, str, str]]:
    """(id, flow, owner) of running resyncs whose lease ran out with its owner named: the worker
    at it died, and the sweeper sends it again."""
    rows = conn.execute(
        sa.select(resyncs.c.id, resyncs.c.flow, resyncs.c.owner)
        .where(
            resyncs.c.status == ResyncStatus.RUNNING.value,
            resyncs.c.owner.is_not(None),
            resyncs.c.lease_until < now,
        )
        .order_by(resyncs.c.id)
        .limit(limit)
    ).all()
    return [(int(r.id), r.flow, r.owner) for r in rows]


def stalled(
    conn: Connection, now: datetime, still_s: float, limit: int = 100
) -> Sequence[tuple[int, str]]:
    """(id, flow) of running resyncs of flows not paused that nothing holds and that have not
    moved for `still_s`: the task that would go on with them was lost (a continuation, or the
    send of a resumed flow, that the broker lost)."""
    moved = sa.func.coalesce(resyncs.c.lease_until, resyncs.c.started_at)
    paused = sa.exists().where(flow_controls.c.flow == resyncs.c.flow, flow_controls.c.paused)
    rows = conn.execute(
        sa.select(resyncs.c.id, resyncs.c.flow)
        .where(
            resyncs.c.status == ResyncStatus.RUNNING.value,
            resyncs.c.owner.is_(None),
            moved < now - sa.literal(timedelta(seconds=still_s)),
            ~paused,
        )
        .order_by(resyncs.c.id)
        .limit(limit)
    ).all()
    return [(int(r.id), r.flow) for r in rows]


def mark_sent(conn: Connection, resync_id: int, now: datetime) -> None:
    """The sweeper sent it again at `now` (its clock): that counts as movement, so it is not
    sent again at every sweep."""
    conn.execute(resyncs.update().where(resyncs.c.id == resync_id).values(lease_until=now))


def _resync(row: Any) -> Resync:
    return Resync(
        id=int(row.id),
        flow=row.flow,
        since=row.since,
        until=row.until,
        dry_run=bool(row.dry_run),
        status=ResyncStatus(row.status),
        page_token=row.page_token,
        position=row.position,
        first_position=row.first_position,
        counts=ResyncCounts(
            **{name: int(getattr(row, name)) for name in ResyncCounts.__dataclass_fields__}
        ),
        run_id=None if row.run_id is None else int(row.run_id),
        requested_by=row.requested_by,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
    )
