"""Work requests: work asked for from the command line, recorded before its task is sent.

kombu's Redis transport pops a message and only then records it as unacknowledged (celery
#7950, kombu #305, kombu #1836): a worker killed between the two loses the message, and with it
an operator's `syncctl run`. So a manual run or a replay is a row here first, committed, and
only then a task sent under the row's task id. The task marks it started (a pull in the same
transaction as the run it opens, so a copy of the task finds that run and opens no other);
the sweeper sends again, under the same task id, a request not started within a bound
(sync_pipeline/pipeline/sweeper.py). A request the worker turned away (the flow is disabled,
or another pull holds it) is closed as such, never re-sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.errors import RunStatus
from sync_pipeline.state.schema import flow_controls, runs, work_requests


class RequestKind(StrEnum):
    RUN = "run"  # syncctl run FLOW
    REPLAY = "replay"  # syncctl dlq replay
    RESYNC = "resync"  # syncctl resync FLOW
    RECONCILE = "reconcile"  # syncctl reconcile FLOW


class RequestStatus(StrEnum):
    REQUESTED = "requested"  # recorded, its task sent; no worker has begun it
    STARTED = "started"
    TURNED_AWAY = "turned_away"  # a worker received it and declined (disabled, flow busy)


@dataclass(frozen=True)
class Task:
    """A task to send by name: what a request asks a worker to do."""

    name: str
    queue: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class WorkRequest:
    id: int
    kind: RequestKind
    flow: str | None
    task: Task
    task_id: str
    status: RequestStatus
    run_id: int | None
    sends: int
    created_at: datetime
    sent_at: datetime | None
    started_at: datetime | None


def record(conn: Connection, kind: RequestKind, flow: str | None, task: Task) -> WorkRequest:
    """A new request with the task id its task will be sent under; commit before sending.
    It is recorded as sent once (its first send follows the commit at once): a send that
    fails leaves it to the sweeper like a message the broker lost, and no second
    transaction is spent on every request to say it went."""
    row = conn.execute(
        work_requests.insert()
        .values(
            kind=kind.value,
            flow=flow,
            task=task.name,
            queue=task.queue,
            args=list(task.args),
            task_id=uuid.uuid4().hex,
            sends=1,
            sent_at=sa.func.now(),
        )
        .returning(*work_requests.c)
    ).one()
    return _request(row)


def mark_sent(conn: Connection, request_id: int) -> None:
    conn.execute(
        work_requests.update()
        .where(work_requests.c.id == request_id)
        .values(sends=work_requests.c.sends + 1, sent_at=sa.func.now())
    )


def by_task_id(conn: Connection, task_id: str) -> WorkRequest | None:
    row = conn.execute(
        sa.select(work_requests).where(work_requests.c.task_id == task_id)
    ).one_or_none()
    return None if row is None else _request(row)


def get(conn: Connection, request_id: int) -> WorkRequest | None:
    row = conn.execute(
        sa.select(work_requests).where(work_requests.c.id == request_id)
    ).one_or_none()
    return None if row is None else _request(row)


@dataclass(frozen=True)
class Starting:
    """What a pull reads before it starts, in one statement (a run starts on every schedule
    tick): the request its task was sent for, if it was recorded; whether the run that
    request opened is still running; and who paused the flow, if it is paused."""

    request: WorkRequest | None
    run_running: bool
    paused_by: str | None


def starting(conn: Connection, task_id: str | None, flow: str) -> Starting:
    """`Starting` for the task `task_id` (None: a task no request was recorded for) of `flow`."""
    one = sa.select(sa.literal(1).label("one")).subquery()
    joined = (
        one.outerjoin(work_requests, work_requests.c.task_id == task_id)
        .outerjoin(runs, runs.c.id == work_requests.c.run_id)
        .outerjoin(flow_controls, sa.and_(flow_controls.c.flow == flow, flow_controls.c.paused))
    )
    row = conn.execute(
        sa.select(
            *work_requests.c,
            runs.c.status.label("run_status"),
            flow_controls.c.by.label("paused_by"),
        ).select_from(joined)
    ).one()
    return Starting(
        request=None if row.id is None else _request(row),
        run_running=row.run_status == RunStatus.RUNNING.value,
        paused_by=row.paused_by,
    )


def start(conn: Connection, task_id: str, run_id: int | None = None) -> bool:
    """Mark the request of this task started (with the run it opened); False if it was
    started or turned away already, or is not a recorded request."""
    result = conn.execute(
        work_requests.update()
        .where(
            work_requests.c.task_id == task_id,
            work_requests.c.status == RequestStatus.REQUESTED.value,
        )
        .values(status=RequestStatus.STARTED.value, run_id=run_id, started_at=sa.func.now())
    )
    return result.rowcount == 1


def turn_away(conn: Connection, task_id: str) -> None:
    """The worker received the request and declined it: it is never sent again."""
    conn.execute(
        work_requests.update()
        .where(
            work_requests.c.task_id == task_id,
            work_requests.c.status == RequestStatus.REQUESTED.value,
        )
        .values(status=RequestStatus.TURNED_AWAY.value, started_at=sa.func.now())
    )


def not_started(
    conn: Connection, now: datetime, after_s: float, limit: int = 100
) -> Sequence[WorkRequest]:
    """Requests no worker began within `after_s` of their last send; the wait doubles with each
    send (at most 64 times), so a request waiting for a worker that is down is not sent
    again every sweep."""
    spacing = sa.func.least(sa.func.power(2, sa.func.greatest(work_requests.c.sends - 1, 0)), 64)
    last = sa.func.coalesce(work_requests.c.sent_at, work_requests.c.created_at)
    due = last < now - spacing * sa.literal(timedelta(seconds=after_s))
    rows = conn.execute(
        sa.select(work_requests)
        .where(work_requests.c.status == RequestStatus.REQUESTED.value, due)
        .order_by(work_requests.c.id)
        .limit(limit)
    ).all()
    return [_request(row) for row in rows]


def _request(row: Any) -> WorkRequest:
    args: Sequence[Any] = row.args
    return WorkRequest(
        id=int(row.id),
        kind=RequestKind(row.kind),
        flow=row.flow,
        task=Task(row.task, row.queue, tuple(args)),
        task_id=row.task_id,
        status=RequestStatus(row.status),
        run_id=None if row.run_id is None else int(row.run_id),
        sends=int(row.sends),
        created_at=row.created_at,
        sent_at=row.sent_at,
        started_at=row.started_at,
    )
