"""Handling inbound events: the worker's side of the webhook service, callable without Celery.

The webhook service verifies a delivery, decodes it into an `InboundEvent`, records it once in
`inbound_events` (state/inbound.py) and sends the `events.handle` task with the row id. Here the
row is read back and handed to the handler for its kind. Handlers re-read whatever they act on
from the source (an event may be late, repeated or out of order: the source's current state is
what counts, DESIGN.md section 5) and make every effect under an effect key, so a redelivered
task, a duplicate delivery that slipped through, or the scheduled pull that runs as a safety
net never doubles an effect.

A handler returns the event's final status (DONE, or IGNORED with a reason: no flow wants it, a
rule filtered it out); it raises a Transient error for the task to retry, and any other error
marks the event FAILED with its reason, to be replayed with `syncctl events replay`.

Leases, not locks (issue 11, point 4). No transaction or row lock is held while a vendor is
called: a vendor's retries may sleep for tens of seconds, and a connection idle in a
transaction meanwhile would drain the pool (5 + 5 per process) and stall every worker. A task
claims its row in one short committed statement, leasing it to itself (`owner`, a token of
this try, and `lease_until`, LEASE_S ahead on PostgreSQL's clock); it handles the row with no
transaction open (the handlers take connections only for their own short transactions), and
records the outcome in one short transaction that first checks it still holds the row. A
task that finds the row held by another returns at once, that task being answerable for it.
A holder that crashed leaves its lease to run out: the next task for the row (a redelivery, a
retry) takes it over, and so does `sweep_expired`, which re-sends such rows; the effect keys
keep whatever the crashed holder made from being made twice. A holder whose lease ran out
and was taken over while it was still at work (hung past LEASE_S) records nothing: the new
holder's outcome stands. A long batch renews its lease while it works (`_renewing`).

Micro-batches. For kinds with a batch handler (approval changes), the task also leases the other
free, never-tried rows of the same kind and connector (up to BATCH_LIMIT), in the statement that
claims its own row (state/inbound.claim_batch), and handles them together: one re-read per
record, one run, one pass through the stages and the effect keys, a few transactions for the lot
instead of a dozen per event. Batches form only under load (when the rows wait for a free
worker); a task that finds its row in another task's batch returns at once, and the batch
records every row's outcome when it finishes. A row a batch could not finish (a Transient error)
is released, still queued: the task of its own retries it, or, for the other rows, it is sent
back to the queue through `resend` with the same backoff. Each row's `attempts` counts its
tries, and MAX_ATTEMPTS of them give it up as FAILED, as the task's retries do. Waiting for an
effect another attempt is making is not a try (errors.EffectInFlight): the row is sent back to
look again shortly, spending nothing, until that attempt's outcome is recorded or its in-flight
window is over, and then settles from what the effect records (done, or failed and made by this
row's next try).

Tasks of several rows. The webhook service sends the rows recorded within 50 ms of the
first as one task (dispatch.EventSender); `handle_all` takes them one by one, each
exactly as its own task would, and sends a row that must wait for a retry back alone.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from sync_pipeline.errors import Transient, backoff_s
from sync_pipeline.failures import describe
from sync_pipeline.pipeline import leases
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.state import inbound
from sync_pipeline.state.inbound import EventStatus, Lease, StoredEvent

log = logging.getLogger(__name__)

BATCH_LIMIT = 50  # rows one task handles together: bounds a batch's time and what it holds
MAX_ATTEMPTS = 9  # a row's first try and 8 retries, as the task's MAX_RETRIES allows
MAX_BACKOFF_S = 60.0
# How long a claim holds its rows before another task may take them over. A thread renews the
# lease every LEASE_S / RENEWALS_PER_LEASE while the batch works, whatever the vendor call on
# the main thread is doing (http/client.py may take 342 s for one call with its retries and
# rate-limit waits), so the lease need only outlast a few missed renewals: a worker that stops
# renewing has died or hung, and its rows are taken over a minute later, not when the longest
# call would have ended.
LEASE_S = 60.0
RENEWALS_PER_LEASE = 4  # a batch at work renews its lease every LEASE_S / 4
SWEEP_LIMIT = 500  # expired rows one sweep re-sends


@dataclass(frozen=True)
class Handled:
    status: EventStatus  # DONE or IGNORED
    reason: str = ""  # why it was ignored, or a short account of what was done


Handler = Callable[[Runtime, InboundEvent], Handled]
# One outcome per event, in order: Handled, or the error that stopped that event.
Outcome = Handled | Exception
BatchHandler = Callable[[Runtime, Sequence[InboundEvent]], Sequence[Outcome]]
# Send `events.handle` for a row again after `countdown` seconds (the worker's task does it).
Resend = Callable[[int, float], None]


def handlers() -> Mapping[EventKind, Handler]:
    """The handler of each event kind (imported here, so that each handler module may use
    the pipeline's steps without an import cycle)."""
    from sync_pipeline.pipeline.events import approvals, cards
    from sync_pipeline.pipeline.events.messages import handle_message

    return {
        EventKind.APPROVAL_CHANGED: approvals.handle,
        EventKind.CARD_ACTION: cards.handle,
        EventKind.MESSAGE: handle_message,
    }


def batch_handlers() -> Mapping[EventKind, BatchHandler]:
    """Kinds whose queued events are handled together (a card press stays alone: each one
    is judged against the state the press before it left)."""
    from sync_pipeline.pipeline.events import approvals

    return {EventKind.APPROVAL_CHANGED: approvals.handle_batch}


def handle(rt: Runtime, event_row_id: int, resend: Resend | None = None) -> EventStatus:
    """Handle one recorded event, with the queued events of its kind that wait beside it.

    A redelivered task finds its event handled and does nothing; a task whose event another
    task holds right now (alone or in a batch) returns its status (queued), that task being
    answerable for it. `resend` gets the other rows of the batch that a Transient error left
    queued, and this row when it waits for another attempt's effect (then the status is
    QUEUED); without it (a direct call) they stay queued for their own tasks, and a wait is
    raised.
    """
    lease = Lease(_owner(), LEASE_S)
    with rt.engine.begin() as conn:  # committed before any vendor call: the lease holds the rows
        batch = inbound.claim_batch(
            conn, event_row_id, lease, batchable=_batchable(), limit=BATCH_LIMIT
        )
        if not batch:
            held_elsewhere = inbound.get(conn, event_row_id)
            if held_elsewhere is None:
                raise LookupError(f"inbound event {event_row_id} does not exist")
            return held_elsewhere.status
    stored = batch[0]
    with _renewing(rt, [s.id for s in batch], lease):
        outcomes = _outcomes(rt, batch)  # no transaction open: handlers keep theirs short
    held = _finish(rt, lease.owner, batch, outcomes)
    if stored.id not in held:
        with rt.engine.connect() as conn:
            now = inbound.get(conn, stored.id)
        return EventStatus.QUEUED if now is None else now.status  # its new holder's to say
    own = outcomes[0]
    for row, outcome in zip(batch, outcomes, strict=True):  # the others left for a retry
        if row.id == event_row_id or row.id not in held or resend is None:
            continue
        if isinstance(outcome, Exception) and _retry(row, outcome):
            _resend(resend, row, outcome)
    if isinstance(own, Handled):
        return own.status
    if _retry(stored, own):
        if _waits(own) and resend is not None:
            _resend(resend, stored, own)  # a fresh task: the wait spends none of the task's retries
            return EventStatus.QUEUED
        raise own  # the task retries; the row stays queued
    if isinstance(own, Transient):
        return EventStatus.FAILED  # retries spent
    raise own


def handle_all(rt: Runtime, event_row_ids: Sequence[int], resend: Resend) -> None:
    """Events the webhook service sent in one task (they arrived together): each handled as
    its own task would be, in arrival order. A row a Transient error leaves queued goes back
    to the queue alone through `resend`, after its backoff; any other error has marked its
    row FAILED (replayable) and stops only that row. A row sent back is not tried again
    here: its backoff comes first."""
    sent_back: set[int] = set()

    def send_back(row_id: int, countdown: float) -> None:
        sent_back.add(row_id)
        resend(row_id, countdown)

    waiting = list(event_row_ids)
    while waiting:
        row_id, waiting = waiting[0], waiting[1:]
        if row_id in sent_back:
            continue
        try:
            handle(rt, row_id, resend=send_back)
        except Transient as exc:
            with rt.engine.connect() as conn:
                stored = inbound.get(conn, row_id)
            if stored is not None:
                _resend(send_back, stored, exc)
        except LookupError as exc:
            log.warning("%s: nothing to handle", exc)
        except Exception as exc:  # noqa: BLE001 - recorded on its row (FAILED) by _finish
            log.debug("inbound event %s failed (%s); the task goes on", row_id, exc)
        if waiting:  # a batch may have ended or taken the others: one query, not a claim each
            with rt.engine.connect() as conn:
                waiting = inbound.still_free(conn, waiting)


def give_up(rt: Runtime, event_row_id: int, error: Exception) -> None:
    """Mark an event FAILED with its reason (retries spent, or not retryable): replayable. A
    row another task holds now is left to that task."""
    with rt.engine.begin() as conn:
        inbound.give_up(conn, event_row_id, describe(error))


def sweep_expired(rt: Runtime, resend: Resend) -> int:
    """Send `events.handle` again for rows whose lease ran out before they were finished
    (their holder crashed, or its worker was killed); how many were sent. The row is freed
    once sent, so a later sweep does not send it again while its task waits in the queue (a
    row whose task is lost with the broker is then the webhook sweep's, webhooks/sweep.py); a
    task that took it over meanwhile keeps it. Whichever task runs first takes it over."""
    with rt.engine.connect() as conn:
        rows = inbound.expired(conn, SWEEP_LIMIT)
    sent = []
    for row_id in rows:
        try:
            resend(row_id, 0.0)
        except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
            log.warning("inbound event %s not re-sent (%s): next sweep", row_id, type(exc).__name__)
            continue
        sent.append(row_id)
    if sent:
        with rt.engine.begin() as conn:
            inbound.release_expired(conn, sent)
        log.info("re-sent %d inbound events whose lease ran out: %s", len(sent), sent)
    return len(sent)


def _owner() -> str:
    """A token naming this try of this task: host, process and a random part, so that no two
    claims (even of one process) ever share one."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@contextmanager
def _renewing(rt: Runtime, row_ids: Sequence[int], lease: Lease) -> Iterator[None]:
    """Renew the lease of `row_ids` every LEASE_S / RENEWALS_PER_LEASE while the block runs
    (on the process's renewing thread, pipeline/leases.py; each renewal a short
    transaction), so that a long batch keeps its rows; a crashed process renews nothing, and
    its lease runs out. A renewal that fails (the database away for a moment) is tried at
    the next turn."""

    def renew() -> bool:
        with rt.engine.begin() as conn:
            inbound.renew(conn, row_ids, lease)
        return True  # rows the batch no longer holds are left out of the renewal, not lost

    renewal = leases.keep(
        renew, lease.seconds / RENEWALS_PER_LEASE, f"inbound events {list(row_ids)}"
    )
    try:
        yield
    finally:
        renewal.stop()


def _batchable() -> list[str]:
    """The kinds whose queued rows a task takes on beside its own (a card press stays alone)."""
    return [kind.value for kind in batch_handlers()]


def _outcomes(rt: Runtime, batch: Sequence[StoredEvent]) -> list[Outcome]:
    """Each row's outcome; an error stops its own row only (or the whole batch, when it
    comes from what the rows share: reading the clock, the flow's run)."""
    kind = batch[0].event.kind
    events = [s.event for s in batch]
    batch_handler = batch_handlers().get(kind)
    try:
        if batch_handler is not None:
            return list(batch_handler(rt, events))  # one per event, in order
        handler = handlers().get(kind)
        if handler is None:
            return [Handled(EventStatus.IGNORED, f"no handler for {kind.value} events")]
        return [handler(rt, events[0])]
    except Exception as exc:  # noqa: BLE001 - recorded per row below, and re-raised for its task
        return [exc] * len(events)


def _retry(row: StoredEvent, outcome: Outcome) -> bool:
    """A Transient error with tries left, or a wait: the row stays queued for another try."""
    return _waits(outcome) or (isinstance(outcome, Transient) and row.attempts + 1 < MAX_ATTEMPTS)


def _waits(outcome: Outcome) -> bool:
    """The row waits for another attempt's effect: no try of its own, no retry spent."""
    return isinstance(outcome, Transient) and not outcome.spends_retries


def _finish(
    rt: Runtime, owner: str, batch: Sequence[StoredEvent], outcomes: Sequence[Outcome]
) -> set[int]:
    """Record the outcomes of the rows `owner` still holds, in one short transaction: a try
    counted for each row tried, a final status for each row ended, and the rest released
    (still queued, for a retry). Returns the rows it held; a row taken over by another task
    (this one's lease ran out) keeps what that task records."""
    pairs = list(zip(batch, outcomes, strict=True))
    alike = {(o.status, o.reason or None) for o in outcomes if isinstance(o, Handled)}
    with rt.engine.begin() as conn:
        if len(alike) == 1 and all(isinstance(o, Handled) for o in outcomes):
            # The common case, every row handled alike: one statement holds, tries and ends them.
            [(status, reason)] = alike
            held = inbound.finish_held(conn, [s.id for s in batch], owner, status, reason)
        else:
            held = inbound.held(conn, [s.id for s in batch], owner)
            tried = [s.id for s, o in pairs if s.id in held and not _waits(o)]
            inbound.start_attempts(conn, tried)
            _record(conn, [(s, o) for s, o in pairs if s.id in held and not _retry(s, o)])
            retried = [s.id for s, o in pairs if s.id in held and _retry(s, o)]
            inbound.release(conn, retried, owner)
    lost = [s.id for s in batch if s.id not in held]
    if lost:
        log.warning(
            "inbound events %s: the lease ran out and another task took them over; its"
            " outcome stands, this one is not recorded",
            lost,
        )
    return held


def _record(conn: Connection, ended: Sequence[tuple[StoredEvent, Outcome]]) -> None:
    """Record each row's final status and reason: one statement per distinct pair (a
    batch's done rows share theirs)."""
    groups: dict[tuple[EventStatus, str | None], list[int]] = {}
    for row, outcome in ended:
        if isinstance(outcome, Handled):
            status, reason = outcome.status, outcome.reason or None
        else:
            if isinstance(outcome, Transient):
                log.warning("inbound event %s: retries spent: %s", row.id, outcome)
            else:
                log.error("inbound event %s failed", row.id, exc_info=outcome)
            status, reason = EventStatus.FAILED, describe(outcome)
        groups.setdefault((status, reason), []).append(row.id)
    for (status, reason), row_ids in groups.items():
        inbound.finish_many(conn, row_ids, status, reason)


def _resend(resend: Resend, row: StoredEvent, error: Exception) -> None:
    """Send another row of the batch back to the queue, after the vendor's wait or backoff."""
    try:
        resend(row.id, backoff_s(error, row.attempts))
    except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
        log.warning(
            "inbound event %s stays queued, not re-sent (%s): the sweeper re-sends stuck rows",
            row.id,
            type(exc).__name__,
        )
