"""The sweeper: PostgreSQL says what work is unfinished, and the sweeper sends it again.

The broker cannot be relied on to give back the work of a worker that died: with the default
visibility timeout a SIGKILLed worker's unacknowledged task comes back after an hour, and a
message popped by a worker killed before kombu recorded it as unacknowledged never comes back
(celery #7950, kombu #305, kombu #1836). So Beat runs the sweeper every SWEEP_EVERY_S, and it
sends again, through `Resend` (the worker's tasks):

- a step whose lease ran out with its owner still named (its worker died mid-step): the page's
  steps from where it stands (plan, write, commit), or the pull of the run's pages;
- a running pull that nothing holds and that has not moved for STILL_S: its queued tasks were
  lost; the pull when it was not done reading (it enqueues its unfinished pages again), else
  each unfinished page's steps and the commit;
- a running resync whose lease ran out with its owner still named (its worker died), or that
  nothing holds and that has not moved for STILL_S (its next task was lost), its flow not
  paused: the resync, which goes on from its checkpoint (pipeline/resync.py);
- a running reconciliation whose lease ran out with its owner still named (its worker died),
  or that nothing holds and that has not moved for STILL_S (its task was lost): the
  reconciliation, which reads the target again from the start (pipeline/reconcile.py);
- a work request (a manual run, a replay, a resync) that no worker began within
  REQUEST_START_S of its last send (state/requests.py), under its own task id.

Every step re-reads its state and makes each effect under its effect key, so sending a step
twice costs a look at PostgreSQL and never doubles an effect; a lease keeps two copies from
working one page at once. Bound: a killed worker's work is sent again within LEASE_S +
SWEEP_EVERY_S of its death, 90 s with the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import leases, reconciles, requests, resyncs
from sync_pipeline.state.idmap import clock
from sync_pipeline.state.leases import Leased
from sync_pipeline.state.requests import WorkRequest

log = logging.getLogger(__name__)

SWEEP_TASK = "admin.sweep_work"
SWEEP_EVERY_S = 30.0
STILL_S = 60.0  # a run nothing holds that has not moved for this long lost its queued tasks
REQUEST_START_S = 60.0  # a request no worker began this long after its send was lost


class Resend(Protocol):
    """How work is sent again: the worker's tasks (workers/tasks.py)."""

    def pull(self, flow: str, run_id: int) -> None:
        """Go on reading the run's pages (and enqueue its unfinished ones)."""

    def page(self, flow: str, run_id: int, page_id: int, status: str) -> None:
        """The page's steps from where it stands (`status`: pulled, planned or done)."""

    def commit(self, flow: str, run_id: int) -> None:
        """Commit the run's done pages (and close it when all are)."""

    def request(self, request: WorkRequest) -> None:
        """The request's task, under its own task id."""

    def resync(self, flow: str, resync_id: int) -> None:
        """Go on with the resync from its checkpoint."""

    def reconcile(self, flow: str, reconcile_id: int) -> None:
        """Run the reconciliation (again)."""


@dataclass(frozen=True)
class Swept:
    """What one sweep sent again."""

    pages: int = 0  # steps of pages whose lease ran out
    pulls: int = 0  # pulls whose lease ran out
    stalled: int = 0  # runs that had not moved
    requests: int = 0  # work requests never started
    resyncs: int = 0  # resyncs whose lease ran out
    reconciles: int = 0  # reconciliations whose lease ran out, or that were lost

    @property
    def total(self) -> int:
        swept = (self.pages, self.pulls, self.stalled, self.requests, self.resyncs, self.reconciles)
        return sum(swept)


def sweep(rt: Runtime, resend: Resend, now: datetime | None = None) -> Swept:
    """One pass (Beat runs it every SWEEP_EVERY_S); `now` defaults to PostgreSQL's clock, the
    clock the leases are written in."""
    if now is None:
        with rt.engine.connect() as conn:
            now = clock(conn)
    pages, pulls = _lapsed(rt, resend, now)
    stalled = _stalled(rt, resend, now)
    sent = _requests(rt, resend, now)
    resumed = _resyncs(rt, resend, now)
    redriven = _reconciles(rt, resend, now)
    # Inbound events have a sweep of their own on Beat beside this one (`admin.sweep_events`:
    # rows the broker never got, and rows whose lease ran out, `events.sweep_expired`).
    swept = Swept(pages, pulls, stalled, sent, resumed, redriven)
    if swept.total:
        log.warning(
            "sent again: %d page steps, %d pulls, %d resyncs and %d reconciliations whose worker"
            " died (or whose task was lost), %d stalled runs, %d work requests no worker began",
            pages,
            pulls,
            resumed,
            redriven,
            stalled,
            sent,
        )
    return swept


def _lapsed(rt: Runtime, resend: Resend, now: datetime) -> tuple[int, int]:
    with rt.engine.connect() as conn:
        found = leases.lapsed(conn, now)
    pages = pulls = 0
    for work in found:
        # Released first: a lease left named would send the work again at every sweep; the
        # step sent now takes a lease of its own.
        with rt.engine.begin() as conn:
            leases.release(conn, work.kind, work.id, work.owner)
        if work.kind is Leased.PAGE and work.page_status is not None:
            log.info("page %s of run %s: its worker (%s) died", work.id, work.run_id, work.owner)
            resend.page(work.flow, work.run_id, work.id, work.page_status)
            pages += 1
        else:
            log.info("the pull of run %s: its worker (%s) died", work.run_id, work.owner)
            resend.pull(work.flow, work.run_id)
            pulls += 1
    return pages, pulls


def _stalled(rt: Runtime, resend: Resend, now: datetime) -> int:
    with rt.engine.connect() as conn:
        found = leases.stalled(conn, now, STILL_S)
    for run in found:
        with rt.engine.begin() as conn:
            leases.mark_swept(conn, run.run_id)
        log.info("run %s of %s has not moved for %g s", run.run_id, run.flow, STILL_S)
        if not run.pull_done:
            resend.pull(run.flow, run.run_id)
            continue
        for page_id, status in run.unfinished:
            resend.page(run.flow, run.run_id, page_id, status)
        if not run.unfinished:
            resend.commit(run.flow, run.run_id)
    return len(found)


def _requests(rt: Runtime, resend: Resend, now: datetime) -> int:
    with rt.engine.connect() as conn:
        waiting: Sequence[WorkRequest] = requests.not_started(conn, now, REQUEST_START_S)
    for request in waiting:
        log.info("request %s (%s) was not begun: sending it again", request.id, request.kind)
        resend.request(request)
        with rt.engine.begin() as conn:
            requests.mark_sent(conn, request.id)
    return len(waiting)


def _resyncs(rt: Runtime, resend: Resend, now: datetime) -> int:
    """Resyncs whose worker died (their lease ran out), and resyncs nothing holds that stood
    still for STILL_S (the task that would go on with them was lost)."""
    with rt.engine.connect() as conn:
        lapsed = resyncs.lapsed(conn, now)
        still = resyncs.stalled(conn, now, STILL_S)
    for resync_id, flow, owner in lapsed:
        with rt.engine.begin() as conn:
            leases.release(conn, Leased.RESYNC, resync_id, owner)
        log.info("resync %s of %s: its worker (%s) died", resync_id, flow, owner)
        resend.resync(flow, resync_id)
    for resync_id, flow in still:
        with rt.engine.begin() as conn:
            resyncs.mark_sent(conn, resync_id, now)
        log.info("resync %s of %s has not moved for %g s", resync_id, flow, STILL_S)
        resend.resync(flow, resync_id)
    return len(lapsed) + len(still)


def _reconciles(rt: Runtime, resend: Resend, now: datetime) -> int:
    """Reconciliations whose worker died (their lease ran out), and running ones nothing holds
    that stood still for STILL_S (their task was lost): never left running for good."""
    with rt.engine.connect() as conn:
        lapsed = reconciles.lapsed(conn, now)
        still = reconciles.stalled(conn, now, STILL_S)
    for reconcile_id, flow, owner in lapsed:
        with rt.engine.begin() as conn:
            leases.release(conn, Leased.RECONCILE, reconcile_id, owner)
        log.info("reconcile %s of %s: its worker (%s) died", reconcile_id, flow, owner)
        resend.reconcile(flow, reconcile_id)
    for reconcile_id, flow in still:
        with rt.engine.begin() as conn:
            reconciles.mark_sent(conn, reconcile_id, now)
        log.info("reconcile %s of %s has not moved for %g s", reconcile_id, flow, STILL_S)
        resend.reconcile(flow, reconcile_id)
    return len(lapsed) + len(still)
