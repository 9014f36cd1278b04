"""`syncctl run FLOW --wait`: record and send a pull, and follow its run row to the end.

Following is bounded twice: the run must begin within `start_timeout_s` (a request no worker
began is sent again by the sweeper while Beat runs; with no worker up it never begins), and
end within `timeout_s`. Either way the caller gives up with one line; the request stays
recorded, so the run still happens once a worker takes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

import redis
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Connection

from sync_pipeline.dispatch import send_request
from sync_pipeline.settings import Settings
from sync_pipeline.state import locks, requests, runs
from sync_pipeline.state.db import engine_for

POLL_S = 0.5
START_TIMEOUT_S = 300.0  # the sweeper sends a request again at 60, 180 s: a worker had 3 chances


def trigger_run(
    settings: Settings, flow: str, *, even_if_disabled: bool = False
) -> requests.WorkRequest:
    """Record a manual run and send its `pull.start` (dispatch.send_request); the request's
    task id becomes the run's lock token, and the worker marks the request started with the
    run it opened, so the run can be found. A disabled flow's pull is turned away by the
    worker unless `even_if_disabled` (the operator's explicit word)."""
    task = requests.Task("pull.start", "pull", (flow, "manual", even_if_disabled))
    return send_request(settings, requests.RequestKind.RUN, flow, task)


class Outcome(StrEnum):
    FINISHED = "finished"
    NOT_STARTED = "not started"  # no worker began the request within the start timeout
    NOT_FINISHED = "not finished"  # the run went on past the timeout
    TURNED_AWAY = "turned away"  # the worker declined it, and no other pull of the flow runs


@dataclass(frozen=True)
class Followed:
    outcome: Outcome
    run: runs.Run | None = None


def follow_run(
    settings: Settings,
    flow: str,
    request: requests.WorkRequest,
    timeout_s: float,
    console: Console,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Followed:
    """Poll the run the request opened (or the run already holding the flow) until it ends,
    or until a bound passes."""
    redis_url, database_url = settings.urls()
    engine = engine_for(database_url)
    client_redis = redis.Redis.from_url(redis_url)
    began = time.monotonic()
    run: runs.Run | None = None
    run_id: int | None = None
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        bar = progress.add_task(f"{flow}: waiting for a worker", total=None)
        while (waited := time.monotonic() - began) < timeout_s:
            with engine.connect() as conn:
                if run_id is None:
                    run_id, turned_away = _run_of(conn, client_redis, flow, request)
                    if turned_away and run_id is None:
                        return Followed(Outcome.TURNED_AWAY)
                run = runs.get(conn, run_id) if run_id is not None else None
            if run is None and waited >= start_timeout_s:
                return Followed(Outcome.NOT_STARTED)
            if run is not None:
                c = run.counts
                progress.update(
                    bar,
                    description=(
                        f"{flow} run #{run.id}: {c['pages']} pages, {c['pulled']} pulled, "
                        f"{c['written']} written, {c['skipped']} skipped, "
                        f"{c['dead_lettered']} dead-lettered"
                    ),
                )
                if run.done:
                    return Followed(Outcome.FINISHED, run)
            time.sleep(POLL_S)
    return Followed(Outcome.NOT_FINISHED if run is not None else Outcome.NOT_STARTED, run)


def _run_of(
    conn: Connection, client_redis: redis.Redis, flow: str, request: requests.WorkRequest
) -> tuple[int | None, bool]:
    """(the run to follow, if one is known yet; whether the worker turned the request away).
    While another pull holds the flow, this request is turned away: that pull is followed."""
    asked = requests.get(conn, request.id)
    if asked is not None and asked.run_id is not None:
        return asked.run_id, False
    turned_away = asked is not None and asked.status is requests.RequestStatus.TURNED_AWAY
    holder = locks.holder(client_redis, flow)
    if holder and holder != request.task_id:
        return runs.by_lock_token(conn, flow, holder), turned_away
    return None, turned_away
