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
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sync_pipeline.errors import Transient
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.runtime import Runtime
from sync_pipeline.state import inbound
from sync_pipeline.state.inbound import EventStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    status: EventStatus  # DONE or IGNORED
    reason: str = ""  # why it was ignored, or a short account of what was done


Handler = Callable[[Runtime, InboundEvent], Handled]


def handlers() -> Mapping[EventKind, Handler]:
    """The handler of each event kind (imported here, so that each handler module may use
    the pipeline's steps without an import cycle)."""
    from sync_pipeline.events import approvals, cards
    from sync_pipeline.events.messages import handle_message

    return {
        EventKind.APPROVAL_CHANGED: approvals.handle,
        EventKind.CARD_ACTION: cards.handle,
        EventKind.MESSAGE: handle_message,
    }


def handle(rt: Runtime, event_row_id: int) -> EventStatus:
    """Handle one recorded event; a redelivered task finds it handled and does nothing."""
    with rt.engine.begin() as conn:
        stored = inbound.get(conn, event_row_id)
        if stored is None:
            raise LookupError(f"inbound event {event_row_id} does not exist")
        if stored.status in (EventStatus.DONE, EventStatus.IGNORED):
            return stored.status
        inbound.start_attempt(conn, event_row_id)
    handler = handlers().get(stored.event.kind)
    if handler is None:
        outcome = Handled(EventStatus.IGNORED, f"no handler for {stored.event.kind.value} events")
    else:
        try:
            outcome = handler(rt, stored.event)
        except Transient:
            raise  # the task retries; the row stays queued
        except Exception as exc:
            log.exception("inbound event %s failed", event_row_id)
            give_up(rt, event_row_id, exc)
            raise
    with rt.engine.begin() as conn:
        inbound.finish(conn, event_row_id, outcome.status, outcome.reason or None)
    return outcome.status


def give_up(rt: Runtime, event_row_id: int, error: Exception) -> None:
    """Mark an event FAILED with its reason (retries spent, or not retryable): replayable."""
    with rt.engine.begin() as conn:
        inbound.finish(conn, event_row_id, EventStatus.FAILED, str(error)[:500])
