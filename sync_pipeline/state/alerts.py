"""Alerts: one row per (rule, subject), what pipeline/alerts.py decided and delivered.

A row is read and changed under its row lock in one short transaction (no vendor call in
it); the notice it calls for is delivered afterwards through the effect protocol, and only
then marked delivered (`mark_notified`). `epoch` counts the times the alert started firing,
so a notice's effect key (rule, subject, epoch, state) is the same for every attempt at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import alerts


class AlertState(StrEnum):
    OK = "ok"  # nothing wrong (or wrong too briefly to fire, and over)
    PENDING = "pending"  # wrong since `since`, not yet for the rule's for_s
    FIRING = "firing"  # wrong since `since`, for at least for_s
    RESOLVED = "resolved"  # was firing; fine again since `since`


@dataclass(frozen=True)
class Alert:
    rule: str
    subject: str
    state: AlertState
    since: datetime
    epoch: int = 0
    detail: str = ""
    notified_firing: bool = False
    notified_resolved: bool = False
    evaluated_at: datetime | None = None


def locked(conn: Connection, rule: str, subject: str) -> Alert | None:
    """The row, locked until the caller's transaction ends (two evaluations never both move
    one alert); None when the alert was never seen."""
    row = conn.execute(
        sa.select(alerts)
        .where(alerts.c.rule == rule, alerts.c.subject == subject)
        .with_for_update()
    ).one_or_none()
    return None if row is None else _alert(row)


def save(conn: Connection, alert: Alert) -> None:
    values = {
        "state": alert.state.value,
        "since": alert.since,
        "epoch": alert.epoch,
        "detail": alert.detail,
        "notified_firing": alert.notified_firing,
        "notified_resolved": alert.notified_resolved,
        "evaluated_at": sa.func.now(),
    }
    stmt = insert(alerts).values(rule=alert.rule, subject=alert.subject, **values)
    conn.execute(
        stmt.on_conflict_do_update(index_elements=[alerts.c.rule, alerts.c.subject], set_=values)
    )


def mark_notified(conn: Connection, rule: str, subject: str, epoch: int, state: AlertState) -> None:
    """The notice of `state` for this epoch was delivered to every destination."""
    column = "notified_firing" if state is AlertState.FIRING else "notified_resolved"
    conn.execute(
        alerts.update()
        .where(alerts.c.rule == rule, alerts.c.subject == subject, alerts.c.epoch == epoch)
        .values({column: True})
    )


def listed(conn: Connection, *, everything: bool = False) -> list[Alert]:
    """Firing and resolved alerts (with `everything`, pending and ok ones too), by rule."""
    query = sa.select(alerts).order_by(alerts.c.rule, alerts.c.subject)
    if not everything:
        query = query.where(alerts.c.state.in_([AlertState.FIRING, AlertState.RESOLVED]))
    return [_alert(row) for row in conn.execute(query)]


def _alert(row: Any) -> Alert:
    return Alert(
        rule=row.rule,
        subject=row.subject,
        state=AlertState(row.state),
        since=row.since,
        epoch=int(row.epoch),
        detail=row.detail,
        notified_firing=bool(row.notified_firing),
        notified_resolved=bool(row.notified_resolved),
        evaluated_at=row.evaluated_at,
    )
