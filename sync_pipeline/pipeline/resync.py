"""A full resync: everything a flow covers read again, page by page, beside its scheduled pulls
(`syncctl resync FLOW [--since DATE] [--dry-run] [--wait]`).

Each page goes through the very stages, id map and effect keys as a pull's or an event's
(steps.plan_records, effects.make_effects): the id map decides create, update or nothing per
record, so a resync of a flow in step sends nothing. It is not a pull: it takes neither the
flow's lock nor its fence and never moves its cursor, so the scheduled pulls go on (and are not
fenced out) while it runs; what keeps the two from doubling anything is what keeps a pull and
an event apart: the shared effect keys, and an id map that never goes back.

Resumable: its checkpoint (state/resyncs.py: the next page's token) moves in the transaction
that records the page's id-map rows, and a worker at it holds its lease. A worker killed
mid-page leaves the checkpoint before that page; the sweeper sends the resync again once the
lease runs out (or a worker of the same host takes it over at once), and the page is read and
planned again: what was made of it before has a done effect key and is not made again.

Paused with its flow (`syncctl flow pause`): it stops at its checkpoint, and resuming the flow
sends it again.

Throttled: it runs on the admin queue, one page at a time, and after each page waits long
enough that the calls it made (read, details, directory, effects: all counted against the
tighter vendor) stay within `quota_share` (the flow's `resync:` block) of the tighter of its
two connectors' general rate limits, leaving the rest of the vendors' quota to the scheduled
syncs (`pace_of`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from sync_pipeline.config.connector import RateLimit
from sync_pipeline.config.flow import Flow
from sync_pipeline.errors import retryable, run_status
from sync_pipeline.failures import describe
from sync_pipeline.http.client import requests_sent
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.effects import make_effects
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import Page, PageTrail, ReadWindow, WriteOp
from sync_pipeline.state import controls, deadletters, idmap, resyncs, runs
from sync_pipeline.state.resyncs import Resync, ResyncCounts, ResyncStatus

log = logging.getLogger(__name__)

TRIGGER = runs.RESYNC  # the trigger of a resync's run row (the run history)


@dataclass(frozen=True)
class Pace:
    """How fast a resync may call: `calls_per_s` in all, None when neither connector states a
    rate limit (then it does not wait)."""

    calls_per_s: float | None

    def wait_s(self, calls: int, took_s: float) -> float:
        """How long to wait after a page that made `calls` calls in `took_s` seconds."""
        if self.calls_per_s is None or calls <= 0:
            return 0.0
        return max(0.0, calls / self.calls_per_s - took_s)


def pace_of(rt: Runtime, flow: Flow) -> Pace:
    """`quota_share` of the tightest of the flow's two connectors' general limits: each one's
    `default` windows (what covers the APIs without an entry of their own: listing, sending),
    or all its windows when it states no default."""
    rates = [
        rate
        for name in (flow.source.connector, flow.target.connector)
        for rate in _general_rates(rt.config.connectors[name].rate_limits)
    ]
    if not rates:
        return Pace(None)
    return Pace(min(rates) * flow.resync.quota_share)


def _general_rates(limits: Mapping[str, tuple[RateLimit, ...]]) -> list[float]:
    windows = limits["default"] if "default" in limits else tuple(chain(*limits.values()))
    return [limit.count / limit.per_s for limit in windows if limit.per_s > 0]


def run_resync(
    rt: Runtime,
    resync_id: int,
    sleep: Callable[[float], None] = time.sleep,
    for_s: float | None = None,
) -> Resync:
    """Go on with the resync from its checkpoint until every page of its window is handled;
    the caller holds its lease. Returns the resync as it stands after (done, unless another
    holder finished or stopped it meanwhile). Errors propagate: a retryable one for the task
    to retry from the checkpoint, any other after the resync is closed in the status its
    class names (`fail`). A paused flow's resync stops before its next page and stays
    running at its checkpoint: `syncctl flow resume` sends it again. With `for_s`, it stops
    at the first checkpoint past that many seconds, still running, for the caller to send
    it on (a task must end within the task time limit; a resync may take hours)."""
    resync = _resync(rt, resync_id)
    if resync.done:
        return resync
    flow = rt.flow(resync.flow)
    run_id = _run_of(rt, resync)
    source = rt.connector(flow.source.connector)
    window = ReadWindow(resync.since, resync.until)
    pace = pace_of(rt, flow)
    token = resync.page_token
    trail = PageTrail(source.vendor, flow.source.stream, token)
    ends = None if for_s is None else time.monotonic() + for_s
    while True:
        if ends is not None and time.monotonic() >= ends:
            return _resync(rt, resync_id)
        if _paused(rt, flow):
            log.info(
                "resync %s of %s: the flow is paused; it waits at its checkpoint",
                resync_id,
                flow.name,
            )
            return _resync(rt, resync_id)
        began, calls = time.monotonic(), requests_sent()
        read_at = steps.read_clock(rt)
        page = source.read_page(flow.source.stream, window, token, flow.page_size).cleaned()
        trail.follow(page.next_token)
        if not _handle(rt, flow, resync, run_id, page, read_at):
            return _resync(rt, resync_id)  # closed meanwhile (stopped, or done by another)
        if page.next_token is None:
            return _resync(rt, resync_id)
        token = page.next_token
        sleep(pace.wait_s(requests_sent() - calls, time.monotonic() - began))


def _handle(
    rt: Runtime, flow: Flow, resync: Resync, run_id: int, page: Page, read_at: datetime
) -> bool:
    """One page planned and, unless dry, made; then the checkpoint past it, in the transaction
    of its id-map rows (and, after the last page, the resync and its run closed)."""
    planned = steps.plan_records(rt, flow, page.records, read_at)
    if resync.dry_run:
        counts = _would(planned, len(page.records))
        links = []
    else:
        made = make_effects(rt, flow, planned.requests, run_id, patient=True)
        counts = ResyncCounts(
            pages=1,
            read=len(page.records),
            written=made.written,
            skipped=planned.skipped,
            dead_lettered=len(planned.dead) + made.dead,
        )
        seen = [steps.seen_json(r) for r in planned.seen]
        links = steps.links_of(rt, flow, seen, made.target_ids, read_at)
    last = page.next_token is None
    with rt.engine.begin() as conn:
        if resyncs.lock_running(conn, resync.id) is None:
            return False
        if not resync.dry_run:
            deadletters.add(conn, flow.name, run_id, steps.dead_rows(planned))
            idmap.upsert(conn, flow.name, links)
        positions = (
            (page.records[0].cursor_value, page.records[-1].cursor_value) if page.records else None
        )
        resyncs.checkpoint(conn, resync.id, page.next_token, positions, counts)
        runs.add_counts(
            conn,
            run_id,
            pages=1,
            pulled=counts.read,
            written=counts.written,
            skipped=counts.skipped,
            dead_lettered=counts.dead_lettered,
        )
        if last:
            resyncs.finish(conn, resync.id, ResyncStatus.SUCCEEDED)
            runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED)
    return True


def _would(planned: steps.Planned, read: int) -> ResyncCounts:
    """A dry run's counts: records it would create an object for, update one for, and leave."""
    ops: dict[str, set[WriteOp]] = {}
    for request in planned.requests:
        ops.setdefault(request.source_id, set()).add(request.op)
    create = sum(1 for found in ops.values() if WriteOp.CREATE in found)
    update = len(ops) - create
    dead = len(planned.dead)
    return ResyncCounts(
        pages=1,
        read=read,
        skipped=max(0, read - create - update - dead),
        dead_lettered=dead,
        would_create=create,
        would_update=update,
    )


def fail(rt: Runtime, resync_id: int, error: Exception) -> None:
    """Close a resync that cannot go on, and its run, in the status the error's class names
    (a retryable error whose retries are spent: STOPPED; the operator resyncs again)."""
    status = ResyncStatus.STOPPED if retryable(error) else run_status(error)
    with rt.engine.begin() as conn:
        resync = resyncs.get(conn, resync_id)
        if resync is None:
            return
        resyncs.finish(conn, resync_id, status, error=describe(error))
        if resync.run_id is not None:
            runs.finish(conn, resync.run_id, status, error=describe(error))


def _paused(rt: Runtime, flow: Flow) -> bool:
    with rt.engine.connect() as conn:
        return controls.paused(conn, flow.name) is not None


def _run_of(rt: Runtime, resync: Resync) -> int:
    """The resync's run row (trigger "resync": no fence, no cursor), opened once."""
    if resync.run_id is not None:
        return resync.run_id
    with rt.engine.begin() as conn:
        locked = resyncs.lock_running(conn, resync.id)
        if locked is not None and locked.run_id is not None:
            return locked.run_id
        run_id = runs.start_webhook(conn, resync.flow, TRIGGER)
        resyncs.set_run(conn, resync.id, run_id)
        return run_id


def _resync(rt: Runtime, resync_id: int) -> Resync:
    with rt.engine.connect() as conn:
        found = resyncs.get(conn, resync_id)
    if found is None:
        raise LookupError(f"resync {resync_id} does not exist")
    return found
