"""Pulled pages: the records a pull read, kept in PostgreSQL so tasks pass only a page id.

A page moves pulled -> planned (transform step) -> done (write step) -> committed (the cursor
moved past it). Pages commit in order: the cursor passes page N+1 only once page N is done.
Redis may lose every queued task; the pages and the cursor are still here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.records import Record
from sync_pipeline.state.schema import pages


class PageStatus(StrEnum):
    PULLED = "pulled"  # its records are stored
    PLANNED = "planned"  # its effects are planned (the plan is stored with it)
    DONE = "done"  # its effects are made or dead-lettered
    COMMITTED = "committed"  # the cursor moved past it


WAITING = (PageStatus.PULLED, PageStatus.PLANNED)  # read, and not yet written


@dataclass(frozen=True)
class StoredPage:
    id: int
    run_id: int
    flow: str
    seq: int
    cursor_value: str | None
    records: tuple[Record, ...]
    plan: Sequence[Mapping[str, Any]] | None
    status: PageStatus
    read_at: datetime | None = None  # when the read began: what the page says is true as of then


def store(
    conn: Connection,
    run_id: int,
    flow: str,
    seq: int,
    records: Sequence[Record],
    next_token: str | None,
    read_at: datetime | None = None,
) -> int:
    """Keep one page and the token of the page after it; the same (run, seq) keeps its id."""
    cursor_value = max((r.cursor_value for r in records), default=None)
    existing = conn.execute(
        sa.select(pages.c.id).where(pages.c.run_id == run_id, pages.c.seq == seq)
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    return int(
        conn.execute(
            pages.insert()
            .values(
                run_id=run_id,
                flow=flow,
                seq=seq,
                cursor_value=cursor_value,
                next_token=next_token,
                records=[r.as_json() for r in records],
                read_at=read_at,
            )
            .returning(pages.c.id)
        ).scalar_one()
    )


def resume_point(conn: Connection, run_id: int) -> tuple[int, str | None] | None:
    """(next seq, its page token) after the last stored page, or None if none is stored.

    A redelivered pull continues from here instead of paging again from the start, so a page
    boundary that moved meanwhile cannot skip a record.
    """
    row = conn.execute(
        sa.select(pages.c.seq, pages.c.next_token)
        .where(pages.c.run_id == run_id)
        .order_by(pages.c.seq.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else (int(row.seq) + 1, row.next_token)


def page_ids(conn: Connection, run_id: int) -> list[int]:
    return [
        int(i)
        for i in conn.execute(
            sa.select(pages.c.id).where(pages.c.run_id == run_id).order_by(pages.c.seq)
        ).scalars()
    ]


def get(conn: Connection, page_id: int) -> StoredPage:
    row = conn.execute(sa.select(pages).where(pages.c.id == page_id)).one()
    return StoredPage(
        id=int(row.id),
        run_id=int(row.run_id),
        flow=row.flow,
        seq=int(row.seq),
        cursor_value=row.cursor_value,
        records=tuple(Record.from_json(r) for r in row.records),
        plan=row.plan,
        status=PageStatus(row.status),
        read_at=row.read_at,
    )


def save_plan(conn: Connection, page_id: int, plan: Sequence[Mapping[str, Any]]) -> None:
    conn.execute(
        pages.update()
        .where(pages.c.id == page_id, pages.c.status == PageStatus.PULLED)
        .values(plan=list(plan), status=PageStatus.PLANNED)
    )


def mark_done(conn: Connection, page_id: int, written: int, skipped: int, dead: int) -> bool:
    """False if the page was already done (a redelivered write task counts nothing twice)."""
    result = conn.execute(
        pages.update()
        .where(pages.c.id == page_id, pages.c.status.in_(WAITING))
        .values(
            status=PageStatus.DONE,
            written=written,
            skipped=skipped,
            dead_lettered=dead,
            done_at=sa.func.now(),
        )
    )
    return result.rowcount == 1


def commit_ready(conn: Connection, run_id: int) -> tuple[int, str | None]:
    """Mark committed the done pages that follow the committed prefix without a gap.

    Returns (how many were committed now, the highest cursor value among them). Runs inside the
    caller's transaction, which also moves the flow cursor.
    """
    rows = conn.execute(
        sa.select(pages.c.id, pages.c.seq, pages.c.status, pages.c.cursor_value)
        .where(pages.c.run_id == run_id)
        .order_by(pages.c.seq)
        .with_for_update()
    ).all()
    ready: list[int] = []
    cursor: str | None = None
    for row in rows:
        if row.status == PageStatus.COMMITTED:
            continue
        if row.status != PageStatus.DONE:
            break
        ready.append(int(row.id))
        if row.cursor_value is not None and (cursor is None or row.cursor_value > cursor):
            cursor = row.cursor_value
    if ready:
        conn.execute(
            pages.update().where(pages.c.id.in_(ready)).values(status=PageStatus.COMMITTED)
        )
    return len(ready), cursor


def all_committed(conn: Connection, run_id: int) -> bool:
    pending = conn.execute(
        sa.select(sa.func.count()).where(
            pages.c.run_id == run_id, pages.c.status != PageStatus.COMMITTED
        )
    ).scalar_one()
    return int(pending) == 0
