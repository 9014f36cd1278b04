"""Reconciliations: one row each, what it compared and the drift it found (`syncctl reconcile`).

A reconciliation compares what the id map says we wrote at a flow's target with what the
target holds (pipeline/reconcile.py). Its report is kept whole here: every drift found, each a
missing, extra or different object, with the fields that differ; with `repair`, how many were
repaired. The newest finished one is what the `reconciliation_drift` alert watches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.errors import ReconcileRunning
from sync_pipeline.state.schema import reconciles
from sync_pipeline.untrusted import clean_json


class ReconcileStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class DriftKind(StrEnum):
    MISSING = "missing"  # we wrote it; the target does not hold it (or removed it)
    EXTRA = "extra"  # the target holds it among ours; we never wrote it
    DIFFERENT = "different"  # the target holds it, not as we wrote it


@dataclass(frozen=True)
class Drift:
    """One object not in step: its kind, its target id, the source record it serves (None for
    an extra one), and for a different one each differing field as (expected, found)."""

    kind: DriftKind
    target_id: str
    source_id: str | None
    fields: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    repaired: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "target_id": self.target_id,
            "source_id": self.source_id,
            "fields": {k: {"expected": e, "found": f} for k, (e, f) in self.fields.items()},
            "repaired": self.repaired,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Drift:
        fields_ = data.get("fields") or {}
        return cls(
            kind=DriftKind(data["kind"]),
            target_id=str(data["target_id"]),
            source_id=data.get("source_id"),
            fields={k: (str(v["expected"]), str(v["found"])) for k, v in fields_.items()},
            repaired=bool(data.get("repaired")),
        )


@dataclass(frozen=True)
class Reconcile:
    id: int
    flow: str
    repair: bool
    status: ReconcileStatus
    requested_by: str
    checked: int  # objects we wrote, compared
    listed: int  # objects of ours the target listed
    drift: tuple[Drift, ...]
    repaired: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None

    @property
    def done(self) -> bool:
        return self.status is not ReconcileStatus.RUNNING

    def count(self, kind: DriftKind) -> int:
        return sum(1 for d in self.drift if d.kind is kind)

    @property
    def left(self) -> int:
        """Drift found and not repaired: what the drift alert counts."""
        return sum(1 for d in self.drift if not d.repaired)


def start(conn: Connection, flow: str, requested_by: str, *, repair: bool) -> Reconcile:
    """Record a reconciliation of `flow` in the caller's transaction; ReconcileRunning while
    another of the flow is running (one at a time: two would repair the same drift under
    different keys). The unique index `reconciles_one_running` backs the check."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"reconcile:{flow}"))))
    other = running(conn, flow)
    if other is not None:
        raise ReconcileRunning(flow, other.id, other.requested_by, f"{other.started_at:%H:%M:%S}")
    row = conn.execute(
        reconciles.insert()
        .values(flow=flow, requested_by=requested_by, repair=repair)
        .returning(*reconciles.c)
    ).one()
    return _reconcile(row)


def running(conn: Connection, flow: str) -> Reconcile | None:
    """The flow's reconciliation that is going on, if one is."""
    row = conn.execute(
        sa.select(reconciles).where(
            reconciles.c.flow == flow, reconciles.c.status == ReconcileStatus.RUNNING.value
        )
    ).one_or_none()
    return None if row is None else _reconcile(row)


def lapsed(conn: Connection, now: datetime, limit: int = 100) -> Sequence[tuple[int, str, str]]:
    """(id, flow, owner) of running reconciliations whose lease ran out with its owner named:
    the worker at it died (SIGKILL), and the sweeper sends it again."""
    rows = conn.execute(
        sa.select(reconciles.c.id, reconciles.c.flow, reconciles.c.owner)
        .where(
            reconciles.c.status == ReconcileStatus.RUNNING.value,
            reconciles.c.owner.is_not(None),
            reconciles.c.lease_until < now,
        )
        .order_by(reconciles.c.id)
        .limit(limit)
    ).all()
    return [(int(r.id), r.flow, r.owner) for r in rows]


def stalled(
    conn: Connection, now: datetime, still_s: float, limit: int = 100
) -> Sequence[tuple[int, str]]:
    """(id, flow) of running reconciliations nothing holds that have not moved for `still_s`:
    their task was lost (the broker's, or the work request's resend, never came)."""
    moved = sa.func.coalesce(reconciles.c.lease_until, reconciles.c.started_at)
    rows = conn.execute(
        sa.select(reconciles.c.id, reconciles.c.flow)
        .where(
            reconciles.c.status == ReconcileStatus.RUNNING.value,
            reconciles.c.owner.is_(None),
            moved < now - sa.literal(timedelta(seconds=still_s)),
        )
        .order_by(reconciles.c.id)
        .limit(limit)
    ).all()
    return [(int(r.id), r.flow) for r in rows]


def mark_sent(conn: Connection, reconcile_id: int, now: datetime) -> None:
    """The sweeper sent it again at `now`: that counts as movement (not sent at every sweep)."""
    conn.execute(reconciles.update().where(reconciles.c.id == reconcile_id).values(lease_until=now))


def get(conn: Connection, reconcile_id: int) -> Reconcile | None:
    row = conn.execute(sa.select(reconciles).where(reconciles.c.id == reconcile_id)).one_or_none()
    return None if row is None else _reconcile(row)


def latest_finished(conn: Connection, flow: str) -> Reconcile | None:
    """The flow's newest reconciliation that succeeded (a failed one found nothing)."""
    row = conn.execute(
        sa.select(reconciles)
        .where(
            reconciles.c.flow == flow,
            reconciles.c.status == ReconcileStatus.SUCCEEDED.value,
        )
        .order_by(reconciles.c.id.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _reconcile(row)


def finish(
    conn: Connection, reconcile_id: int, checked: int, listed: int, drift: Sequence[Drift]
) -> bool:
    """The report, whole, and the row closed as succeeded; False if it was closed already."""
    result = conn.execute(
        reconciles.update()
        .where(
            reconciles.c.id == reconcile_id,
            reconciles.c.status == ReconcileStatus.RUNNING.value,
        )
        .values(
            status=ReconcileStatus.SUCCEEDED.value,
            checked=checked,
            listed=listed,
            missing=sum(1 for d in drift if d.kind is DriftKind.MISSING),
            extra=sum(1 for d in drift if d.kind is DriftKind.EXTRA),
            different=sum(1 for d in drift if d.kind is DriftKind.DIFFERENT),
            repaired=sum(1 for d in drift if d.repaired),
            drift=clean_json([d.as_json() for d in drift]),
            finished_at=sa.func.now(),
        )
    )
    return result.rowcount == 1


def fail(conn: Connection, reconcile_id: int, error: str) -> bool:
    result = conn.execute(
        reconciles.update()
        .where(
            reconciles.c.id == reconcile_id,
            reconciles.c.status == ReconcileStatus.RUNNING.value,
        )
        .values(status=ReconcileStatus.FAILED.value, error=error, finished_at=sa.func.now())
    )
    return result.rowcount == 1


def _reconcile(row: Any) -> Reconcile:
    return Reconcile(
        id=int(row.id),
        flow=row.flow,
        repair=bool(row.repair),
        status=ReconcileStatus(row.status),
        requested_by=row.requested_by,
        checked=int(row.checked),
        listed=int(row.listed),
        drift=tuple(Drift.from_json(d) for d in row.drift or ()),
        repaired=int(row.repaired),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
    )
