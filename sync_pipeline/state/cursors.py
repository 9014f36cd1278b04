"""Flow cursors: they only move forward, only past committed pages, only by the fence holder.

The fence is a counter bumped by every pull that takes a flow's lock. A pull commits only while
the fence it got is still the newest, so a pull whose Redis lock vanished (Redis lost, lock
expired) cannot commit over a newer pull (DESIGN.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.errors import CursorRegression, StaleFence
from sync_pipeline.state.schema import flow_cursors


@dataclass(frozen=True)
class CursorState:
    cursor: str | None
    fence: int


def get(conn: Connection, flow: str) -> CursorState:
    row = conn.execute(
        sa.select(flow_cursors.c.cursor, flow_cursors.c.fence).where(flow_cursors.c.flow == flow)
    ).one_or_none()
    return CursorState(None, 0) if row is None else CursorState(row.cursor, int(row.fence))


def take_fence(conn: Connection, flow: str) -> CursorState:
    """Take a new fence for a pull that is starting (older holders can no longer commit), and
    read the cursor it starts from, in one statement; the cursor row stays locked until the
    caller's transaction ends."""
    stmt = (
        insert(flow_cursors)
        .values(flow=flow, fence=1)
        .on_conflict_do_update(
            index_elements=[flow_cursors.c.flow], set_={"fence": flow_cursors.c.fence + 1}
        )
        .returning(flow_cursors.c.cursor, flow_cursors.c.fence)
    )
    row = conn.execute(stmt).one()
    return CursorState(row.cursor, int(row.fence))


def next_fence(conn: Connection, flow: str) -> int:
    """Take a new fence (`take_fence`), when the cursor is not wanted."""
    return take_fence(conn, flow).fence


def check_fence(conn: Connection, flow: str, fence: int) -> None:
    """Lock the cursor row for this transaction and make sure `fence` is still the newest."""
    current = conn.execute(
        sa.select(flow_cursors.c.fence).where(flow_cursors.c.flow == flow).with_for_update()
    ).scalar_one_or_none()
    if current is None or int(current) != fence:
        raise StaleFence(flow, fence, int(current or 0))


def advance(conn: Connection, flow: str, fence: int, cursor: str) -> bool:
    """Move the cursor to `cursor` inside the caller's transaction; False if already there.

    Cursor values are sortable strings (ISO-8601 UTC or zero-padded digits).
    """
    check_fence(conn, flow, fence)
    current = get(conn, flow).cursor
    if current is not None and cursor < current:
        raise CursorRegression(flow, current, cursor)
    if current == cursor:
        return False
    conn.execute(
        flow_cursors.update()
        .where(flow_cursors.c.flow == flow)
        .values(cursor=cursor, updated_at=sa.func.now())
    )
    return True


def reset(conn: Connection, flow: str, cursor: str | None) -> None:
    """Admin resync: set the cursor anywhere (None: from the beginning) and fence out old pulls."""
    stmt = (
        insert(flow_cursors)
        .values(flow=flow, cursor=cursor, fence=1)
        .on_conflict_do_update(
            index_elements=[flow_cursors.c.flow],
            set_={"cursor": cursor, "fence": flow_cursors.c.fence + 1, "updated_at": sa.func.now()},
        )
    )
    conn.execute(stmt)


def set_by_operator(conn: Connection, flow: str, cursor: str | None) -> tuple[CursorState, int]:
    """`syncctl cursor set`: the cursor set to `cursor` (anywhere: back to read again, forward
    to skip) and a new fence taken, so a pull that held the flow before can commit nothing
    over it. Returns (the state before, the new fence)."""
    before = get(conn, flow)
    fence = next_fence(conn, flow)
    conn.execute(
        flow_cursors.update()
        .where(flow_cursors.c.flow == flow)
        .values(cursor=cursor, updated_at=sa.func.now())
    )
    return before, fence


def put(conn: Connection, key: str, cursor: str) -> None:
    """Keep an opaque position that is not a flow's (a Matrix /sync since-token under
    "matrix_sync:<connector>"): set as it is, no order, no fence."""
    stmt = (
        insert(flow_cursors)
        .values(flow=key, cursor=cursor)
        .on_conflict_do_update(
            index_elements=[flow_cursors.c.flow],
            set_={"cursor": cursor, "updated_at": sa.func.now()},
        )
    )
    conn.execute(stmt)
