"""Flow controls: an operator's pause of a flow, with who, why and when (`syncctl flow pause`).

A paused flow's scheduled pulls are turned away by the worker, `syncctl run` refuses it, its
events wait queued (errors.FlowPaused: looked at again, spending no try) and its resync stops
at its checkpoint until `syncctl flow resume` sends it again. Nothing is lost: the cursor and
the events stay where they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import flow_controls


@dataclass(frozen=True)
class Control:
    flow: str
    paused: bool
    by: str
    reason: str | None
    at: datetime


def get(conn: Connection, flow: str) -> Control | None:
    row = conn.execute(sa.select(flow_controls).where(flow_controls.c.flow == flow)).one_or_none()
    return None if row is None else Control(row.flow, bool(row.paused), row.by, row.reason, row.at)


def paused(conn: Connection, flow: str) -> Control | None:
    """The flow's pause, if it is paused."""
    found = get(conn, flow)
    return found if found is not None and found.paused else None


def set_paused(
    conn: Connection, flow: str, is_paused: bool, by: str, reason: str | None = None
) -> bool:
    """Pause or resume the flow as `by`; False if it already was so (nothing changes)."""
    current = get(conn, flow)
    if (current is not None and current.paused) == is_paused:
        return False
    values = {"paused": is_paused, "by": by, "reason": reason, "at": sa.func.now()}
    conn.execute(
        insert(flow_controls)
        .values(flow=flow, **values)
        .on_conflict_do_update(index_elements=[flow_controls.c.flow], set_=values)
    )
    return True
