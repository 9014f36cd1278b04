"""Leases on work in PostgreSQL: a page a step works on, a run whose pages a pull reads.

The broker's word on who is working on what is not to be trusted: with the default visibility
timeout (an hour), a task whose worker was SIGKILLed stays unacknowledged in Redis for that
hour. So the step working on a page holds the page's lease (its owner and `lease_until`), and
the pull reading a run's pages holds the run's, renewed by a heartbeat while the step works.
A lease that runs out with its owner still named is work whose worker died: the sweeper sends
it again (sync_pipeline/pipeline/sweeper.py); the effect keys make a second attempt safe.

A lease is exclusive: a step that finds another owner's live lease leaves the work to it. A
released lease keeps its moment (owner NULL, `lease_until` the release), so the newest of a
run's lease moments says when the run last moved: a run with no live lease that has not
moved for a while has lost its queued tasks, and the sweeper sends its work again too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import pages, reconciles, resyncs, runs

UNFINISHED = ("pulled", "planned", "done")  # a page not yet committed


class Leased(StrEnum):
    PAGE = "page"  # a plan or write step on a page
    RUN = "run"  # a pull reading a run's pages
    RESYNC = "resync"  # a full resync reading and syncing its pages (state/resyncs.py)
    RECONCILE = "reconcile"  # a reconciliation reading back a target (state/reconciles.py)


def _table(kind: Leased) -> sa.Table:
    tables = {Leased.PAGE: pages, Leased.RUN: runs, Leased.RESYNC: resyncs}
    return {**tables, Leased.RECONCILE: reconciles}[kind]


def _expires(lease_s: float) -> sa.ColumnElement[datetime]:
    return sa.func.now() + sa.literal(timedelta(seconds=lease_s))


def take(conn: Connection, kind: Leased, work_id: int, owner: str, lease_s: float) -> bool:
    """Hold the lease for `lease_s` unless another owner holds a live one."""
    table = _table(kind)
    free = sa.or_(
        table.c.owner.is_(None), table.c.owner == owner, table.c.lease_until < sa.func.now()
    )
    result = conn.execute(
        table.update()
        .where(table.c.id == work_id, free)
        .values(owner=owner, lease_until=_expires(lease_s))
    )
    return result.rowcount == 1


def holder(conn: Connection, kind: Leased, work_id: int) -> str | None:
    """Who holds the lease now (a live or a lapsed one), if anyone."""
    table = _table(kind)
    found: str | None = conn.execute(
        sa.select(table.c.owner).where(table.c.id == work_id)
    ).scalar_one_or_none()
    return found


def take_from(
    conn: Connection, kind: Leased, work_id: int, dead: str, owner: str, lease_s: float
) -> bool:
    """Take over the lease of a holder known to be dead (its process is gone), if it still
    holds it."""
    table = _table(kind)
    result = conn.execute(
        table.update()
        .where(table.c.id == work_id, table.c.owner == dead)
        .values(owner=owner, lease_until=_expires(lease_s))
    )
    return result.rowcount == 1


def renew(conn: Connection, kind: Leased, work_id: int, owner: str, lease_s: float) -> bool:
    """The heartbeat: push the lease out; False if it is no longer this owner's."""
    table = _table(kind)
    result = conn.execute(
        table.update()
        .where(table.c.id == work_id, table.c.owner == owner)
        .values(lease_until=_expires(lease_s))
    )
    return result.rowcount == 1


def release(conn: Connection, kind: Leased, work_id: int, owner: str | None = None) -> None:
    """Let go of the lease (this owner's, or whoever's when `owner` is None), keeping the
    moment as the work's last movement."""
    table = _table(kind)
    mine = sa.true() if owner is None else table.c.owner == owner
    conn.execute(
        table.update()
        .where(table.c.id == work_id, mine)
        .values(owner=None, lease_until=sa.func.now())
    )


@dataclass(frozen=True)
class Lapsed:
    """Work whose lease ran out with its owner still named: its worker died."""

    kind: Leased
    id: int  # the page's or the run's
    run_id: int
    flow: str
    owner: str
    page_status: str | None  # a page's status (pulled, planned, done); None for a run


def lapsed(conn: Connection, now: datetime, limit: int = 500) -> Sequence[Lapsed]:
    """Unfinished work of running pulls whose lease ran out before `now`."""
    running = runs.c.status == "running"
    page_rows = conn.execute(
        sa.select(pages.c.id, pages.c.run_id, pages.c.flow, pages.c.owner, pages.c.status)
        .join(runs, runs.c.id == pages.c.run_id)
        .where(
            running,
            pages.c.owner.is_not(None),
            pages.c.lease_until < now,
            pages.c.status.in_(UNFINISHED),
        )
        .order_by(pages.c.id)
        .limit(limit)
    ).all()
    run_rows = conn.execute(
        sa.select(runs.c.id, runs.c.flow, runs.c.owner)
        .where(
            running,
            runs.c.owner.is_not(None),
            runs.c.lease_until < now,
            runs.c.pull_done.is_(False),
        )
        .order_by(runs.c.id)
        .limit(limit)
    ).all()
    return [
        *(
            Lapsed(Leased.PAGE, int(r.id), int(r.run_id), r.flow, r.owner, r.status)
            for r in page_rows
        ),
        *(Lapsed(Leased.RUN, int(r.id), int(r.id), r.flow, r.owner, None) for r in run_rows),
    ]


@dataclass(frozen=True)
class Stalled:
    """A running pull with no live lease that has not moved for a while: the tasks that
    would move it were lost (a worker killed with them reserved, a message the broker lost)."""

    run_id: int
    flow: str
    pull_done: bool
    unfinished: tuple[tuple[int, str], ...]  # (page id, status), in page order


def stalled(conn: Connection, now: datetime, still_s: float, limit: int = 100) -> Sequence[Stalled]:
    """Running pulls (runs with a fence) that nothing holds and that have not moved since
    `still_s` before `now`: not opened, leased, released, swept or given a page since."""
    page_moved = (
        sa.select(
            sa.func.max(sa.func.greatest(pages.c.created_at, pages.c.lease_until, pages.c.done_at))
        )
        .where(pages.c.run_id == runs.c.id)
        .scalar_subquery()
    )
    page_held = sa.exists().where(
        pages.c.run_id == runs.c.id, pages.c.owner.is_not(None), pages.c.lease_until >= now
    )
    moved = sa.func.greatest(runs.c.started_at, runs.c.lease_until, runs.c.swept_at, page_moved)
    rows = conn.execute(
        sa.select(runs.c.id, runs.c.flow, runs.c.pull_done)
        .where(
            runs.c.status == "running",
            runs.c.fence.is_not(None),
            sa.or_(runs.c.owner.is_(None), runs.c.lease_until < now),
            ~page_held,
            moved < now - sa.literal(timedelta(seconds=still_s)),
        )
        .order_by(runs.c.id)
        .limit(limit)
    ).all()
    found = []
    for row in rows:
        unfinished = conn.execute(
            sa.select(pages.c.id, pages.c.status)
            .where(pages.c.run_id == row.id, pages.c.status.in_(UNFINISHED))
            .order_by(pages.c.seq)
        ).all()
        found.append(
            Stalled(
                run_id=int(row.id),
                flow=row.flow,
                pull_done=bool(row.pull_done),
                unfinished=tuple((int(p.id), p.status) for p in unfinished),
            )
        )
    return found


def mark_swept(conn: Connection, run_id: int) -> None:
    """The sweeper sent the run's work again now: it counts as movement, so the run is not
    sent again before it has had `still_s` to move."""
    conn.execute(runs.update().where(runs.c.id == run_id).values(swept_at=sa.func.now()))
