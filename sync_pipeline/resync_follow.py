"""`syncctl resync FLOW [--wait | --dry-run]`: record a resync and its work request, send its
task, and follow its row to the end with a progress bar.

The bar's share is how far through its window the resync has read (records come in cursor
order; state/resyncs.py `Resync.fraction`), when the cursor is a time; the ETA is the rest of
the window at the pace the share grew while followed. The rate is records read a second
since following began.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import Engine

from sync_pipeline.dispatch import RESYNC_TASK, send_request
from sync_pipeline.settings import Settings
from sync_pipeline.state import requests, resyncs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.resyncs import Resync

POLL_S = 0.5
START_TIMEOUT_S = 300.0  # as `syncctl run --wait`: the sweeper sent the request again twice


@dataclass(frozen=True)
class Asked:
    """A recorded resync and its work request; or, when one of the flow runs already, that
    one (and no request)."""

    resync: Resync
    request: requests.WorkRequest | None


def ask_resync(
    settings: Settings, flow: str, since: str | None, by: str, *, dry_run: bool
) -> Asked:
    """Record the resync, then its work request and task (dispatch.send_request), which the
    sweeper sends again should the broker lose it."""
    engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
    try:
        with engine.begin() as conn:
            started = resyncs.start(conn, flow, since, by, dry_run=dry_run)
            running = resyncs.running(conn, flow) if started is None else None
    finally:
        engine.dispose()
    if started is None:
        assert running is not None  # noqa: S101 - start found it under its lock
        return Asked(running, None)
    return Asked(started, send_resync(settings, started))


def send_resync(settings: Settings, resync: Resync) -> requests.WorkRequest:
    """A recorded request for the resync's task (a new resync, or one a resumed flow's pause
    had stopped at its checkpoint)."""
    task = requests.Task(RESYNC_TASK, "admin", (resync.id, resync.flow))  # the flow: for Flower
    return send_request(settings, requests.RequestKind.RESYNC, resync.flow, task)


class Outcome(StrEnum):
    FINISHED = "finished"
    NOT_STARTED = "not started"  # no worker began its request within the start timeout
    NOT_FINISHED = "not finished"  # still running when the timeout passed


@dataclass(frozen=True)
class Followed:
    outcome: Outcome
    resync: Resync


def follow_resync(
    settings: Settings,
    asked: Asked,
    timeout_s: float,
    console: Console,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Followed:
    """Poll the resync's row until it ends or `timeout_s` passes, showing its progress; give
    up sooner when no worker began its request within `start_timeout_s`."""
    resync_id = asked.resync.id
    engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
    began = time.monotonic()
    found = _now(engine, resync_id)
    first_read, first_share = found.counts.read, found.fraction() or 0.0
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task(
                f"{found.flow} resync #{found.id}", total=None, counts="", rate="", eta="-"
            )
            while True:
                found = _now(engine, resync_id)
                waited = time.monotonic() - began
                share = found.fraction()
                progress.update(
                    bar,
                    total=None if share is None else 1.0,
                    completed=share or 0.0,
                    counts=counts_line(found),
                    rate=f"{(found.counts.read - first_read) / max(waited, 1e-9):.1f} rec/s",
                    eta=_eta(share, first_share, found, waited),
                )
                if found.done:
                    return Followed(Outcome.FINISHED, found)
                if waited >= start_timeout_s and not _begun(engine, asked):
                    return Followed(Outcome.NOT_STARTED, found)
                if waited >= timeout_s:
                    return Followed(Outcome.NOT_FINISHED, found)
                time.sleep(POLL_S)
    finally:
        engine.dispose()


def counts_line(found: Resync) -> str:
    c = found.counts
    if found.dry_run:
        return (
            f"{c.read} read: would create {c.would_create}, update {c.would_update},"
            f" leave {c.skipped} alone; {c.dead_lettered} cannot be synced"
        )
    return (
        f"{c.read} read, {c.written} written, {c.skipped} skipped, {c.dead_lettered} dead-lettered"
    )


def _eta(share: float | None, first_share: float, found: Resync, waited_s: float) -> str:
    """The time left at the pace of the share read while followed."""
    if found.done:
        return "0s"
    if share is None or share <= first_share:
        return "-"
    left_s = waited_s * (1 - share) / (share - first_share)
    return f"{int(left_s)}s" if left_s < 3600 else f"{left_s / 3600:.1f}h"


def _begun(engine: Engine, asked: Asked) -> bool:
    if asked.request is None:
        return True
    with engine.connect() as conn:
        request = requests.get(conn, asked.request.id)
    return request is None or request.status is not requests.RequestStatus.REQUESTED


def _now(engine: Engine, resync_id: int) -> Resync:
    with engine.connect() as conn:
        found = resyncs.get(conn, resync_id)
    if found is None:
        raise LookupError(f"resync {resync_id} does not exist")
    return found
