"""The pipeline's I/O steps, callable without Celery: start, pull, plan, write, commit; and the
same record pipeline for records a webhook event names.

One pull of a flow is a run. The pull step stores each page in PostgreSQL and hands its id to
`enqueue` (in production the plan task, which sends write -> commit, or commits at once when the
plan has nothing to write; a plain loop in the benchmark baseline and in tests). Every step
re-reads its state from PostgreSQL, so a redelivered task picks up where the lost one stopped,
and every remote effect goes through an effect key.

An event (a webhook said a record changed; its handler re-read the record from the source)
goes through the very same stages, effect keys and id map (`plan_records`, `make_effects`,
`_links`), in a run of its own with trigger "webhook". It takes no lock and no fence and never
moves the cursor: a webhook must neither fence out a running pull nor be fenced out by one, and
the cursor is the pull's promise about what it has read. The shared effect keys are what keep
the two from doubling anything.

Invariants kept here (DESIGN.md sections 2-5):
- the cursor moves only past pages that are written or dead-lettered, in page order, in the
  same transaction as the pages' id-map rows, and only while the run holds the newest fence;
- pages are read inside [cursor - lookback, signpost), the signpost being the run's start, so
  a record edited while we page is read again next time rather than skipped;
- every effect goes through the one effect protocol (pipeline/effects.py): its key is claimed
  (committed as pending) before the vendor is called, and its answer is recorded before the
  next effect; an effect that another attempt created as we claimed it (a pull and an event on
  one record) is left to that attempt;
- the id map never goes back: every read is stamped with PostgreSQL's clock, and a record read
  before the version the id map holds is superseded (not planned, not linked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from sync_pipeline.config.flow import Flow, Mode
from sync_pipeline.errors import (
    FlowPaused,
    RecordError,
    SyncError,
    retryable,
    run_status,
)
from sync_pipeline.failures import about_record, describe
from sync_pipeline.pipeline import directory
from sync_pipeline.pipeline.effects import Made, make_effects
from sync_pipeline.pipeline.leases import Lease
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import (
    DeadRecord,
    Page,
    PageTrail,
    ReadWindow,
    Record,
    WriteRequest,
    content_hash,
    iso_utc,
    minus_seconds,
)
from sync_pipeline.stages.dedupe import dedupe
from sync_pipeline.stages.isolate import isolated
from sync_pipeline.stages.plan import plan_writes
from sync_pipeline.stages.rules import filter_batch
from sync_pipeline.stages.transform import transform
from sync_pipeline.state import controls, cursors, deadletters, idmap, locks, pages, runs
from sync_pipeline.state import requests as work_requests
from sync_pipeline.untrusted import MAX_ID_CHARS, REPLACEMENT

log = logging.getLogger(__name__)

LOCK_TTL_S = 900.0  # renewed by every page; a lost holder frees the flow after this


@dataclass(frozen=True)
class StepCounts:
    written: int = 0
    skipped: int = 0
    dead: int = 0


# -- start and pull ----------------------------------------------------------------------------
def start_run(
    rt: Runtime,
    flow_name: str,
    trigger: str,
    request_id: str | None = None,
    *,
    even_if_disabled: bool = False,
) -> int | None:
    """Take the flow's lock and open a run; None if another pull holds the flow, if the flow
    is paused (`syncctl flow pause`), or if it is disabled and the operator did not say
    `even_if_disabled` (a Beat started before the flow was disabled still sends its pulls:
    they are turned away here).

    `request_id` (the Celery task id, stable across redeliveries) is the lock's token, so a
    redelivered start finds the run it opened instead of being locked out by itself. When it
    names a recorded work request (`syncctl run`: state/requests.py), the request is marked
    started in the transaction that opens the run, so any later copy of the task (one the
    sweeper sent again, a redelivery) finds that run, and a turned-away one is closed.
    """
    flow = rt.flow(flow_name)
    with rt.engine.connect() as conn:  # one statement: a run starts on every schedule tick
        starting = work_requests.starting(conn, request_id, flow.name)
    asked = starting.request
    if asked is not None and asked.status is not work_requests.RequestStatus.REQUESTED:
        if asked.run_id is None or not starting.run_running:
            log.info("request %s was begun already; this copy of its task does nothing", asked.id)
            return None
        return asked.run_id
    if not (flow.enabled or even_if_disabled):
        log.warning("flow %s is disabled: its %s pull is not run", flow.name, trigger)
        _turn_away(rt, request_id)
        return None
    if (by := starting.paused_by) is not None:
        log.warning("flow %s is paused by %s: its %s pull is not run", flow.name, by, trigger)
        _turn_away(rt, request_id)
        return None
    token = locks.acquire(rt.redis, flow.name, LOCK_TTL_S, token=request_id)
    if token is None:
        if request_id is None or locks.holder(rt.redis, flow.name) != request_id:
            log.info(
                "flow %s is already being pulled; this %s trigger is skipped", flow.name, trigger
            )
            _turn_away(rt, request_id)
            return None
        with rt.engine.connect() as conn:
            opened = runs.by_lock_token(conn, flow.name, request_id)
        if opened is not None or asked is None:
            return opened
        # An earlier copy of a recorded request took the lock and died before it opened its
        # run: this copy opens it (below).
        token = request_id
    with rt.engine.connect() as conn, conn.begin() as tx:
        fenced = cursors.take_fence(conn, flow.name)  # copies of one request queue here
        runs.supersede_running(conn, flow.name, fenced.fence)
        run_id = runs.start(conn, flow.name, trigger, fenced.fence, fenced.cursor, token)
        if asked is not None and not work_requests.start(conn, asked.task_id, run_id):
            tx.rollback()  # a copy beside this one committed its run first: it pulls it
            return None
        return run_id


def _turn_away(rt: Runtime, request_id: str | None) -> None:
    if request_id is not None:
        with rt.engine.begin() as conn:
            work_requests.turn_away(conn, request_id)


def read_window(flow: Flow, cursor: str | None, started_at: datetime) -> ReadWindow:
    """[cursor - lookback, signpost): re-read the lookback, never past the run's start."""
    signpost = iso_utc(started_at)
    if flow.mode is Mode.FULL or cursor is None:
        return ReadWindow(None, signpost)
    return ReadWindow(minus_seconds(cursor, flow.lookback_s), signpost)


def pull(
    rt: Runtime, run_id: int, enqueue: Callable[[int], None], lease: Lease | None = None
) -> int:
    """Read every page of the run's window, store each, enqueue it; returns pages stored now.

    A redelivered pull continues after the last stored page and enqueues again the stored
    pages not yet done (their tasks may have been lost with Redis or a killed worker).
    With `lease` (the run's), it is taken in the pull's first transaction (LeaseHeld: another
    worker pulls this run) and let go once every page is stored and sent: with the last page,
    in the transaction that stores it, when sending that page is all that is left. The pull is
    marked done in that transaction too; when the last page went to its tasks, their commit
    ends the run, else (it was empty, or a redelivered pull found every page stored) this step
    commits.
    """
    with rt.engine.begin() as conn:  # the run read where its lease is taken
        run = _run_in(conn, run_id)
        if run.done:
            return 0
        flow = rt.flow(run.flow)  # a flow no longer configured fails before the lease is taken
        if lease is not None:
            lease.take(conn)
        resume = pages.resume_point(conn, run_id)
        unfinished = _unfinished_pages(conn, run_id) if resume is not None else []
    source = rt.connector(flow.source.connector)
    window = read_window(flow, run.cursor_before, run.started_at)
    for page_id in unfinished:
        enqueue(page_id)
    seq, token = resume if resume is not None else (0, None)
    trail = PageTrail(source.vendor, flow.source.stream, token)
    finished_reading = resume is not None and token is None
    stored = 0
    last_sent = False
    while not finished_reading:
        read_at = read_clock(rt)
        page = source.read_page(flow.source.stream, window, token, flow.page_size).cleaned()
        trail.follow(page.next_token)  # a token followed before: stop before storing the page
        last = page.next_token is None
        last_sent = last and bool(page.records)
        let_go = lease if last_sent else None  # the pull has nothing left but to send it
        page_id = _store_page(rt, run, seq, page, read_at, last=last, lease=let_go)
        stored += 1
        if page.records:
            enqueue(page_id)
        seq, token = seq + 1, page.next_token
        finished_reading = token is None
    if last_sent:
        # The last page was stored with the pull marked done and its lease let go, and then
        # sent: the commit after it (or after whichever page ends last) sees the pull done and
        # ends the run, so this step has no commit of its own to race it for the cursor row.
        # Killed before the send, the run stands still with nothing holding it, and the
        # sweeper sends its waiting page again (sweeper.STILL_S, as long as a lease's LEASE_S).
        return stored
    with rt.engine.begin() as conn:
        runs.mark_pull_done(conn, run_id)
        if lease is not None:
            lease.release(conn)
    commit(rt, run_id)
    return stored


def read_clock(rt: Runtime) -> datetime:
    """The moment a read begins, on PostgreSQL's clock: what the read returns is true as of
    then or later, so of two reads of one record the later stamp holds the newer version."""
    with rt.engine.connect() as conn:
        return idmap.clock(conn)


def _store_page(
    rt: Runtime,
    run: runs.Run,
    seq: int,
    page: Page,
    read_at: datetime,
    *,
    last: bool = False,
    lease: Lease | None = None,
) -> int:
    """Store a page read; the `last` one with the pull marked done (every page is stored), and
    `lease` (the pull's, when only sending that page is left) let go in the same transaction."""
    with rt.engine.begin() as conn:
        cursors.check_fence(conn, run.flow, run.fence or 0)
        page_id = pages.store(
            conn, run.id, run.flow, seq, page.records, page.next_token, read_at=read_at
        )
        runs.add_counts(conn, run.id, pages=1, pulled=len(page.records))
        if not page.records:
            pages.mark_done(conn, page_id, 0, 0, 0)
        if last:
            runs.mark_pull_done(conn, run.id)
        if lease is not None:
            lease.release(conn)
    if run.lock_token:
        locks.extend(rt.redis, run.flow, run.lock_token, LOCK_TTL_S)
    return page_id


def _unfinished_pages(conn: Any, run_id: int) -> list[int]:
    return [
        page_id
        for page_id in pages.page_ids(conn, run_id)
        if pages.get(conn, page_id).status in pages.WAITING
    ]


# -- the record pipeline, shared by pulls and events ----------------------------------------
@dataclass(frozen=True)
class Planned:
    """Where every record of a batch went: effects to make, records the id map must remember
    (written, filtered out or unchanged in content), and records that cannot be synced."""

    requests: tuple[WriteRequest, ...]
    seen: tuple[Record, ...]
    dead: tuple[DeadRecord, ...]
    skipped: int  # records that need no effect: unchanged, superseded, filtered, deduped


def plan_records(
    rt: Runtime,
    flow: Flow,
    records: Sequence[Record],
    read_at: datetime | None,
    *,
    replay: bool = False,
) -> Planned:
    """transform -> rules -> dedupe -> plan writes, for records read at `read_at`.

    The stages are pure; the I/O is reading the id map, the details (hydrate) and the
    directory before them. Only records worth it are hydrated: a version the id map already
    holds, or one read before the version it holds, costs no call.

    One record never stops the others: records are cleaned as they enter (Record.cleaned), a
    record whose id cannot be kept as it is (too long, or holding what PostgreSQL refuses),
    whose details cannot be read, or on which a stage raises is dead-lettered with the
    reason, and the rest are planned. Errors about the run (a server, a quota, the config)
    propagate.
    """
    records = [record.cleaned() for record in records]
    unkeyed = [_record_error(r, why) for r in records if (why := _unkeyable(r)) is not None]
    keyed = [r for r in records if _unkeyable(r) is None]
    source_sys, target_sys = _systems(rt, flow)
    with rt.engine.begin() as conn:
        links = idmap.lookup(
            conn,
            (source_sys, flow.source.stream),
            (target_sys, flow.target.stream),
            [r.source_id for r in keyed],
        )
    # A replay plans records the id map already holds: what they failed to make then (a
    # person now mapped) is made now, and what was made then has a done effect key.
    wanted = [r for r in keyed if replay or _wanted(r, links.get(r.source_id), read_at)]
    if not wanted:
        return Planned(requests=(), seen=(), dead=tuple(unkeyed), skipped=len(keyed))
    hydrated, unread = _hydrate(rt, flow, wanted)
    users = load_directory(rt, flow)

    def stages(batch: Sequence[Record]) -> _Staged:
        return _stages(flow, batch, links, users, target_sys, replay=replay)

    staged, poisoned = isolated(hydrated, stages, _unplannable)
    dead = (*unkeyed, *unread, *poisoned, *staged.dead)
    shown = {sid: link.payload for sid, link in links.items() if link.payload is not None}
    unplanned = {dead.record.source_id for dead in poisoned}
    planned = [record for record in hydrated if record.source_id not in unplanned]
    follow = _follow_ups(rt, flow, planned, shown, users)
    return Planned(
        requests=(*staged.requests, *follow),
        seen=staged.seen,
        dead=dead,
        skipped=len(records) - staged.fresh - len(dead),
    )


@dataclass(frozen=True)
class _Staged:
    requests: tuple[WriteRequest, ...]
    seen: tuple[Record, ...]
    dead: tuple[DeadRecord, ...]
    fresh: int  # records that need an effect


def _stages(
    flow: Flow,
    batch: Sequence[Record],
    links: Mapping[str, idmap.Link],
    users: directory.DirectorySnapshot,
    target: str,
    *,
    replay: bool,
) -> _Staged:
    """The pure stages over hydrated records."""
    mapped = transform(batch, flow.mapping, users)
    previous = {sid: link.payload for sid, link in links.items() if link.payload is not None}
    kept = filter_batch(mapped.records, flow.rules, previous)
    fresh = dedupe(kept.kept, {} if replay else idmap.hashes(links), flow.dedupe_key)
    targets = {sid: link.target_id for sid, link in links.items() if link.target_id}
    requests = plan_writes(flow.name, fresh.fresh, flow.notify, targets, target=target)
    return _Staged(
        requests=tuple(requests),
        seen=(*kept.skipped, *fresh.skipped, *fresh.fresh),
        dead=tuple(_record_error(record, reason) for record, reason in mapped.dead),
        fresh=len(fresh.fresh),
    )


def _unkeyable(record: Record) -> str | None:
    """Why a record cannot be keyed and re-read by its id, if it cannot: the id map, effect
    keys and re-reads (hydrate, webhooks, replays) all go by it."""
    if len(record.source_id) > MAX_ID_CHARS:
        return (
            f"its source id is {len(record.source_id)} characters long, over the"
            f" {MAX_ID_CHARS} records are keyed by: it can be neither tracked nor re-read"
        )
    if REPLACEMENT in record.source_id:
        return (
            "its source id holds characters PostgreSQL cannot store (kept as U+FFFD):"
            " it cannot be re-read by that id"
        )
    return None


def _record_error(record: Record, reason: str) -> DeadRecord:
    """A record found unsyncable without an exception (a stage's verdict): a RecordError."""
    return DeadRecord(record, reason, RecordError.__name__)


def _unplannable(exc: Exception) -> str:
    return f"it could not be planned: {describe(exc)}"


def _hydrate(
    rt: Runtime, flow: Flow, records: Sequence[Record]
) -> tuple[list[Record], list[DeadRecord]]:
    """(details of the records, cleaned; records whose details cannot be read, with why).

    When the batch's read fails on a record (an error about it, not about the run), each
    record is read alone, so that one record's failure costs only that record.
    """
    source = rt.connector(flow.source.connector)
    stream = flow.source.stream
    try:
        return [r.cleaned() for r in source.hydrate(stream, records)], []
    except Exception as exc:
        if not about_record(exc):
            raise
        log.warning(
            "reading details of %d records failed (%s); reading them one by one",
            len(records),
            describe(exc),
        )
    hydrated: list[Record] = []
    unread: list[DeadRecord] = []
    for record in records:
        try:
            hydrated += [r.cleaned() for r in source.hydrate(stream, [record])]
        except Exception as exc:
            if not about_record(exc):
                raise
            why = f"its details could not be read: {describe(exc)}"
            unread.append(DeadRecord(record, why, type(exc).__name__))
    return hydrated, unread


def _follow_ups(
    rt: Runtime,
    flow: Flow,
    records: Sequence[Record],
    shown: Mapping[str, Mapping[str, Any]],
    users: directory.DirectorySnapshot,
) -> list[WriteRequest]:
    """The cards of requests decided elsewhere, brought up to date (events/cards.py, which
    uses these steps: imported here, not at the top)."""
    from sync_pipeline.pipeline.events.cards import follow_ups

    return follow_ups(rt, flow, records, shown, users)


def _wanted(record: Record, link: idmap.Link | None, read_at: datetime | None) -> bool:
    """Worth planning: never synced, or a version not handled yet that was read no earlier
    than the one the id map holds. An earlier read is superseded: a webhook (or a pull) saw a
    newer state first, and planning the older one would notify people of the past."""
    if link is None:
        return True
    if link.source_version == record.version:
        return False
    return read_at is None or link.seen_at is None or read_at >= link.seen_at


def _systems(rt: Runtime, flow: Flow) -> tuple[str, str]:
    connectors = rt.config.connectors
    return (
        connectors[flow.source.connector].system,
        connectors[flow.target.connector].system,
    )


def load_directory(
    rt: Runtime, flow: Flow, *, refresh: bool = False
) -> directory.DirectorySnapshot:
    """The directory of both ends, refreshed from the platforms when it is stale (or, with
    `refresh`, now: a replay after someone was given an account); the snapshot this process
    loaded last is reused while neither end was refreshed since."""
    names = (flow.source.connector, flow.target.connector)
    systems = _systems(rt, flow)
    with rt.engine.connect() as conn:
        found = directory.refreshes(conn, systems)
    stale = [
        (name, system)
        for name, system in zip(names, systems, strict=True)
        if refresh or system not in found or found[system].age_s > directory.REFRESH_AFTER_S
    ]
    for name, system in stale:
        users = rt.connector(name).list_users()
        with rt.engine.begin() as conn:
            directory.replace_users(conn, system, users)
    with rt.engine.connect() as conn:
        if stale:
            found = directory.refreshes(conn, systems)
        return directory.snapshot_cache(rt.engine).load(conn, systems, found)


def dead_rows(
    planned: Planned,
) -> list[tuple[str, Mapping[str, Any], str, str]]:
    return [(d.record.source_id, d.record.as_json(), d.reason, d.error_class) for d in planned.dead]


def links_of(
    rt: Runtime,
    flow: Flow,
    seen: Sequence[Mapping[str, Any]],
    target_ids: Mapping[str, str],
    seen_at: datetime | None,
) -> list[idmap.Link]:
    """The id-map rows of handled records ({"source_id", "version", "payload"} each)."""
    source_sys, target_sys = _systems(rt, flow)
    return [
        idmap.Link(
            source_system=source_sys,
            source_stream=flow.source.stream,
            source_id=item["source_id"],
            target_system=target_sys,
            target_stream=flow.target.stream,
            target_id=target_ids.get(item["source_id"]),
            content_hash=content_hash(item["payload"]),
            source_version=item["version"],
            payload=item["payload"],
            seen_at=seen_at,
        )
        for item in seen
    ]


def seen_json(record: Record) -> dict[str, Any]:
    return {
        "source_id": record.source_id,
        "version": record.version,
        "payload": dict(record.payload),
    }


# -- a pull's pages: plan, then write ---------------------------------------------------------
def plan(rt: Runtime, page_id: int, lease: Lease | None = None) -> pages.PageStatus:
    """Plan one stored page and save the plan, so the write step (and its retries) make
    exactly these effects; the page's status after it: PLANNED, its effects to be made by the
    write step, or DONE when the plan has nothing to write (a no-change page: what it saw is
    recorded and the page marked done in the plan's own transaction, so no write step need
    follow). With `lease` (the page's), it is taken in the step's first transaction and let go
    in its last."""
    with rt.engine.begin() as conn:
        if lease is not None:
            lease.take(conn)
        page = pages.get(conn, page_id)
    if page.status is not pages.PageStatus.PULLED:
        return page.status
    flow = rt.flow(page.flow)
    planned = plan_records(rt, flow, page.records, page.read_at)
    plan_json = {
        "requests": [r.to_json() for r in planned.requests],
        "seen": [seen_json(r) for r in planned.seen],
    }
    with rt.engine.begin() as conn:
        if not planned.requests:  # the page ends here: the fence first (_record_done)
            cursors.check_fence(conn, flow.name, _run_fence(conn, page.run_id))
        added = deadletters.add(conn, flow.name, page.run_id, dead_rows(planned))
        pages.save_plan(conn, page_id, [plan_json])
        runs.add_counts(conn, page.run_id, dead_lettered=added)
        if not planned.requests:
            _record_done(rt, conn, flow, replace(page, plan=[plan_json]), Made(0, 0))
        if lease is not None:
            lease.release(conn)
    return pages.PageStatus.PLANNED if planned.requests else pages.PageStatus.DONE


def write(rt: Runtime, page_id: int, lease: Lease | None = None) -> StepCounts:
    """Make the page's planned effects, each exactly once, then mark the page done. With
    `lease` (the page's), it is taken in the step's first transaction and let go in its last."""
    with rt.engine.begin() as conn:
        if lease is not None:
            lease.take(conn)
        page = pages.get(conn, page_id)
    if page.status in (pages.PageStatus.DONE, pages.PageStatus.COMMITTED):
        return StepCounts()
    if page.status is not pages.PageStatus.PLANNED or not page.plan:
        raise RuntimeError(f"page {page_id} must be planned before it is written")
    flow = rt.flow(page.flow)
    requests = [WriteRequest.from_json(r) for r in page.plan[0]["requests"]]
    made = make_effects(rt, flow, requests, page.run_id)
    _finish_page(rt, flow, page, made, lease)
    return StepCounts(written=made.written, dead=made.dead)


def _finish_page(
    rt: Runtime, flow: Flow, page: pages.StoredPage, made: Made, lease: Lease | None
) -> None:
    """Record what every handled record became, and mark the page done, in one transaction."""
    with rt.engine.begin() as conn:
        cursors.check_fence(conn, flow.name, _run_fence(conn, page.run_id))
        _record_done(rt, conn, flow, page, made)
        if lease is not None:
            lease.release(conn)


def _record_done(
    rt: Runtime, conn: Connection, flow: Flow, page: pages.StoredPage, made: Made
) -> None:
    """In the caller's transaction: the id map rows of the page's handled records, and the
    page marked done with its counts (once: a page found done already adds none).

    The caller has checked the run's fence first, in this transaction, before it touched the
    page's row: every transaction that ends a page or commits a run locks the flow's cursor
    row, then pages, then the run (`commit` takes them in that order), so the plan step
    ending a page and the pull committing the run wait for each other instead of
    deadlocking."""
    assert page.plan is not None  # noqa: S101 - checked by the callers
    links = links_of(rt, flow, page.plan[0]["seen"], made.target_ids, page.read_at)
    skipped = max(0, len(page.records) - made.written - made.dead)
    idmap.upsert(conn, flow.name, links)
    if pages.mark_done(conn, page.id, made.written, skipped, made.dead):
        runs.add_counts(
            conn, page.run_id, written=made.written, skipped=skipped, dead_lettered=made.dead
        )


def _run_fence(conn: Any, run_id: int) -> int:
    run = runs.get(conn, run_id)
    return 0 if run is None or run.fence is None else run.fence


# -- events: records a webhook named -------------------------------------------------------
@contextmanager
def event_run(rt: Runtime, flow: Flow, trigger: str = runs.WEBHOOK) -> Iterator[int]:
    """A run of what one event (or a replay) does to a flow: its id, for the block to count
    on and finish as it succeeds. A block that raises finishes it STOPPED when the error is
    retryable (the event task retries), else in the status the error's class names, and the
    error propagates. An event's run of a paused flow is not opened: FlowPaused keeps the
    event queued, to be looked at again (state/controls.py)."""
    with rt.engine.begin() as conn:
        if trigger == runs.WEBHOOK and controls.paused(conn, flow.name) is not None:
            raise FlowPaused(flow.name)
        run_id = runs.start_webhook(conn, flow.name, trigger)
    try:
        yield run_id
    except Exception as exc:
        status = runs.RunStatus.STOPPED if retryable(exc) else run_status(exc)
        with rt.engine.begin() as conn:
            runs.finish(conn, run_id, status, error=describe(exc))
        raise


def sync_records(
    rt: Runtime,
    flow_name: str,
    records: Sequence[Record],
    read_at: datetime,
    *,
    replay: bool = False,
) -> tuple[int, StepCounts]:
    """Sync records an event brought (re-read from the source at `read_at`) through the same
    stages, effect keys and id map as a pull, in a run of trigger "webhook": (run id, counts).

    No lock, no fence, no cursor (module docstring). Late, repeated and out-of-order events
    converge because the record is the source's state when re-read: a version the id map
    holds plans nothing, an older one is superseded, and every effect key is shared with the
    pull. A Transient error stops the run and propagates for the event task to retry.
    With `replay` (dead letters), records are planned even when the id map holds their
    version, in a run of trigger "replay"; effect keys keep what was made then from repeating.
    """
    flow = rt.flow(flow_name)
    with event_run(rt, flow, runs.REPLAY if replay else runs.WEBHOOK) as run_id:
        planned = plan_records(rt, flow, records, read_at, replay=replay)
        dead = 0
        if planned.dead:  # no transaction for nothing: an event's batch is usually clean
            with rt.engine.begin() as conn:
                dead = deadletters.add(conn, flow.name, run_id, dead_rows(planned))
        made = make_effects(rt, flow, planned.requests, run_id, patient=True)
        counts = StepCounts(made.written, planned.skipped, dead + made.dead)
        seen = [seen_json(r) for r in planned.seen]
        with rt.engine.begin() as conn:
            idmap.upsert(conn, flow.name, links_of(rt, flow, seen, made.target_ids, read_at))
            runs.add_counts(
                conn,
                run_id,
                pulled=len(records),
                written=counts.written,
                skipped=counts.skipped,
                dead_lettered=counts.dead,
            )
            runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED)
    return run_id, counts


# -- commit ----------------------------------------------------------------------------------
def commit(rt: Runtime, run_id: int) -> bool:
    """Move the cursor past the done pages that follow the committed ones; close the run when
    every page is committed. Returns True once the run is over."""
    finished = False
    with rt.engine.begin() as conn:  # the run read in the transaction that commits it
        run = _run_in(conn, run_id)
        if run.done:
            return True
        cursors.check_fence(conn, run.flow, run.fence or 0)
        _, cursor = pages.commit_ready(conn, run_id)
        current = cursors.get(conn, run.flow).cursor
        if cursor is not None and (current is None or cursor > current):
            cursors.advance(conn, run.flow, run.fence or 0, cursor)
            current = cursor
        if run.pull_done and pages.all_committed(conn, run_id):
            finished = runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED, cursor_after=current)
    if finished and run.lock_token:
        locks.release(rt.redis, run.flow, run.lock_token)
    elif run.lock_token:
        locks.extend(rt.redis, run.flow, run.lock_token, LOCK_TTL_S)
    return finished


def fail_run(rt: Runtime, run_id: int, error: SyncError | Exception) -> None:
    """Close a run that cannot go on; the next pull starts again from the committed cursor."""
    run = _run(rt, run_id)
    status = run_status(error)
    with rt.engine.begin() as conn:
        current = cursors.get(conn, run.flow).cursor
        closed = runs.finish(conn, run_id, status, cursor_after=current, error=describe(error))
    if closed and run.lock_token:
        locks.release(rt.redis, run.flow, run.lock_token)


def _run(rt: Runtime, run_id: int) -> runs.Run:
    with rt.engine.connect() as conn:
        return _run_in(conn, run_id)


def _run_in(conn: Connection, run_id: int) -> runs.Run:
    run = runs.get(conn, run_id)
    if run is None:
        raise LookupError(f"run {run_id} does not exist")
    return run


def run_inline(rt: Runtime, flow_name: str, trigger: str = "inline") -> int | None:
    """A whole run in this process, page after page: for tests and the benchmark baseline of
    the same code path without Celery."""
    run_id = start_run(rt, flow_name, trigger)
    if run_id is None:
        return None
    queue: list[int] = []
    pull(rt, run_id, queue.append)
    for page_id in queue:
        if plan(rt, page_id) is pages.PageStatus.PLANNED:
            write(rt, page_id)
        commit(rt, run_id)
    commit(rt, run_id)
    return run_id
