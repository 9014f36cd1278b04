"""Runs: what every pull did, for `syncctl status`, `syncctl run --wait` and the benches.

A webhook event that syncs a record outside any pull gets a run of its own, with trigger
`webhook`: it counts what the event did, but holds no fence and never moves the cursor, so
status tells pulls (the cursor's story) and events apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.errors import RunStatus as RunStatus  # runs store it; errors name theirs
from sync_pipeline.state.schema import runs

COUNTERS = ("pages", "pulled", "written", "skipped", "conflicts", "dead_lettered")
WEBHOOK = "webhook"  # the trigger of runs made by inbound events
REPLAY = "replay"  # the trigger of runs that replay dead letters
RESYNC = "resync"  # the trigger of a full resync's run (state/resyncs.py): no fence, no cursor
CURSOR_SET = "cursor_set"  # an operator set the cursor (`syncctl cursor set`): no records
NOT_PULLS = (WEBHOOK, REPLAY, RESYNC, CURSOR_SET)  # runs that neither read from nor move a cursor


@dataclass(frozen=True)
class Run:
    id: int
    flow: str
    trigger: str
    status: RunStatus
    fence: int | None
    started_at: datetime
    finished_at: datetime | None
    counts: Mapping[str, int]
    cursor_before: str | None
    cursor_after: str | None
    error: str | None
    lock_token: str | None = None
    pull_done: bool = False
    by: str | None = None  # who made it, for runs made by hand (a cursor set)

    @property
    def done(self) -> bool:
        return self.status is not RunStatus.RUNNING


def start(
    conn: Connection,
    flow: str,
    trigger: str,
    fence: int,
    cursor_before: str | None,
    lock_token: str | None = None,
) -> int:
    return int(
        conn.execute(
            runs.insert()
            .values(
                flow=flow,
                trigger=trigger,
                fence=fence,
                cursor_before=cursor_before,
                lock_token=lock_token,
            )
            .returning(runs.c.id)
        ).scalar_one()
    )


def start_webhook(conn: Connection, flow: str, trigger: str = WEBHOOK) -> int:
    """A run for what one event (or a replay of dead letters) does to a flow: no fence, no
    cursor, no lock."""
    return int(
        conn.execute(
            runs.insert().values(flow=flow, trigger=trigger).returning(runs.c.id)
        ).scalar_one()
    )


def record_cursor_set(
    conn: Connection, flow: str, before: str | None, after: str | None, by: str, fence: int
) -> int:
    """An operator set the cursor: a closed run in the history, with who and the values, and
    the fence the setting took (it fenced out any older pull)."""
    return int(
        conn.execute(
            runs.insert()
            .values(
                flow=flow,
                trigger=CURSOR_SET,
                status=RunStatus.SUCCEEDED.value,
                fence=fence,
                cursor_before=before,
                cursor_after=after,
                by=by,
                pull_done=True,
                finished_at=sa.func.now(),
            )
            .returning(runs.c.id)
        ).scalar_one()
    )


def mark_pull_done(conn: Connection, run_id: int) -> None:
    """Every page of the run is stored: once they are all committed, the run is over."""
    conn.execute(runs.update().where(runs.c.id == run_id).values(pull_done=True))


def add_counts(conn: Connection, run_id: int, **deltas: int) -> None:
    """Atomic increments, so page tasks running in parallel never lose a count."""
    values = {name: getattr(runs.c, name) + n for name, n in deltas.items() if n}
    if values:
        conn.execute(runs.update().where(runs.c.id == run_id).values(**values))


def finish(
    conn: Connection,
    run_id: int,
    status: RunStatus,
    cursor_after: str | None = None,
    error: str | None = None,
) -> bool:
    """Close a running run; False if it was already closed (a redelivered finish)."""
    result = conn.execute(
        runs.update()
        .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
        .values(
            status=status.value,
            finished_at=sa.func.now(),
            cursor_after=cursor_after,
            error=error,
        )
    )
    return result.rowcount == 1


def get(conn: Connection, run_id: int) -> Run | None:
    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).one_or_none()
    return None if row is None else _run(row)


def latest(conn: Connection, flow: str, *, webhook: bool = False) -> Run | None:
    """The flow's newest pull (or replay), or with `webhook` its newest event run."""
    kind = (
        runs.c.trigger == WEBHOOK
        if webhook
        else runs.c.trigger.not_in((WEBHOOK, RESYNC, CURSOR_SET))
    )
    row = conn.execute(
        sa.select(runs).where(runs.c.flow == flow, kind).order_by(runs.c.id.desc()).limit(1)
    ).one_or_none()
    return None if row is None else _run(row)


def recent_pulls(conn: Connection, flow: str, n: int) -> list[Run]:
    """The flow's `n` newest finished pulls (scheduled or manual runs, not events or
    replays), newest first: what "its runs fail N times in a row" is about."""
    rows = conn.execute(
        sa.select(runs)
        .where(
            runs.c.flow == flow,
            runs.c.trigger.not_in([WEBHOOK, REPLAY]),
            runs.c.status != RunStatus.RUNNING.value,
        )
        .order_by(runs.c.id.desc())
        .limit(n)
    )
    return [_run(row) for row in rows]


@dataclass(frozen=True)
class Totals:
    """Every run of a flow added up: what the flow has done since its state began."""

    runs: int
    running: int
    counts: Mapping[str, int]


def totals(conn: Connection, flow: str) -> Totals:
    row = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(runs.c.status == RunStatus.RUNNING.value),
            *(sa.func.coalesce(sa.func.sum(runs.c[name]), 0) for name in COUNTERS),
        ).where(runs.c.flow == flow)
    ).one()
    return Totals(int(row[0]), int(row[1]), dict(zip(COUNTERS, map(int, row[2:]), strict=True)))


def running_pull(conn: Connection, flow: str) -> Run | None:
    """The flow's pull going on (a running run with a fence), if one is."""
    row = conn.execute(
        sa.select(runs)
        .where(
            runs.c.flow == flow,
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.fence.is_not(None),
        )
        .order_by(runs.c.id.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _run(row)


def by_lock_token(conn: Connection, flow: str, token: str) -> int | None:
    found = conn.execute(
        sa.select(runs.c.id).where(runs.c.flow == flow, runs.c.lock_token == token)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def supersede_running(conn: Connection, flow: str, fence: int) -> int:
    """Close runs of older fences that never finished (their worker or Redis was lost)."""
    result = conn.execute(
        runs.update()
        .where(
            runs.c.flow == flow,
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.fence < fence,
        )
        .values(
            status=RunStatus.STOPPED.value,
            finished_at=sa.func.now(),
            error="superseded by a newer pull (its worker or Redis was lost)",
        )
    )
    return int(result.rowcount)


def _run(row: sa.Row) -> Run:  # type: ignore[type-arg]
    return Run(
        id=int(row.id),
        flow=row.flow,
        trigger=row.trigger,
        status=RunStatus(row.status),
        fence=row.fence,
        started_at=row.started_at,
        finished_at=row.finished_at,
        counts={name: int(getattr(row, name)) for name in COUNTERS},
        cursor_before=row.cursor_before,
        cursor_after=row.cursor_after,
        error=row.error,
        lock_token=row.lock_token,
        pull_done=bool(row.pull_done),
        by=row.by,
    )
