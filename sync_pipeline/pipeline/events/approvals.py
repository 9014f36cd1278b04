"""approval_changed events: re-read the approval from its source, then sync it to every flow
that takes webhooks from that source, through the pull's own stages and effect keys.

What an event says (status, version) is only a hint: deliveries come late, twice and out of
order. The handler reads the record as it is now, so every delivery converges on the source's
current state, and the effect keys it shares with the scheduled pull make each effect happen
once, whichever of them gets there first. A lost event is the pull's to repair.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sync_pipeline.config.flow import Flow
from sync_pipeline.connectors.base import ReadsOne
from sync_pipeline.errors import Transient
from sync_pipeline.failures import describe
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.events import Handled, Outcome
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import ApprovalChange, InboundEvent, Record
from sync_pipeline.state.inbound import EventStatus

log = logging.getLogger(__name__)

APPROVALS = "approvals"  # the stream every source connector reads its approvals from


def handle(rt: Runtime, event: InboundEvent) -> Handled:
    """Sync the named record to each flow that wants it; one run of trigger "webhook" each."""
    [outcome] = handle_batch(rt, [event])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def handle_batch(rt: Runtime, events: Sequence[InboundEvent]) -> list[Outcome]:
    """Events of one connector, handled together: each named record re-read once (two events
    about one approval share the read), then one run per flow for all of them. One outcome
    per event: a record that cannot be read fails its own events only."""
    connector = events[0].connector
    flows = wanting(rt, connector)
    if not flows:
        reason = f"no enabled flow takes approval webhooks from {connector}"
        return [Handled(EventStatus.IGNORED, reason) for _ in events]
    source = rt.connector(connector)
    named = [ApprovalChange.from_json(event.data).source_id for event in events]
    if not isinstance(source, ReadsOne):
        return [
            Handled(
                EventStatus.IGNORED,
                f"{connector} cannot re-read one record; the next pull syncs {source_id}",
            )
            for source_id in named
        ]
    read_at = steps.read_clock(rt)  # before the reads: what they return is true as of then
    reads: dict[str, Record | Exception | None] = {}
    for source_id in dict.fromkeys(s for s in named if s):
        try:
            read = source.read_one(APPROVALS, source_id)
            reads[source_id] = None if read is None else read.cleaned()
        except Exception as exc:  # noqa: BLE001 - this record's events carry it
            reads[source_id] = exc
    records = [r for r in reads.values() if isinstance(r, Record)]
    synced = _sync(rt, flows, records, read_at)
    return [_outcome(connector, source_id, reads.get(source_id), synced) for source_id in named]


def _outcome(
    connector: str,
    source_id: str,
    read: Record | Exception | None,
    synced: dict[str, Outcome],
) -> Outcome:
    if not source_id:
        return Handled(EventStatus.IGNORED, "the event names no record")
    if read is None:
        return Handled(
            EventStatus.IGNORED, f"approval {source_id} is gone or out of sight at {connector}"
        )
    if isinstance(read, Exception):
        return read
    return synced[read.source_id]  # the id as it is kept (Record.cleaned)


def _sync(
    rt: Runtime, flows: Sequence[Flow], records: Sequence[Record], read_at: datetime
) -> dict[str, Outcome]:
    """Each record's outcome of syncing them all to every flow. A Transient error leaves them
    all to be tried again (their effect keys keep what was made); an unexpected one is traced
    to its record by syncing them one by one, so one bad record fails only its own events."""
    if not records:
        return {}
    try:
        done = []
        for flow in flows:
            run_id, counts = steps.sync_records(rt, flow.name, records, read_at)
            of = f" ({len(records)} records)" if len(records) > 1 else ""
            done.append(
                f"{flow.name} run {run_id}{of}: {counts.written} written,"
                f" {counts.skipped} skipped, {counts.dead} dead-lettered"
            )
    except Transient as exc:
        return {r.source_id: exc for r in records}
    except Exception as exc:  # noqa: BLE001 - traced to its record below
        if len(records) == 1:
            return {records[0].source_id: exc}
        log.warning(
            "%d approvals failed together (%s); syncing them one by one",
            len(records),
            describe(exc),
        )
        return {r.source_id: _sync(rt, flows, [r], read_at)[r.source_id] for r in records}
    reason = "; ".join(done)
    return {r.source_id: Handled(EventStatus.DONE, reason) for r in records}


def wanting(rt: Runtime, connector: str) -> list[Flow]:
    """Enabled flows with a webhook trigger that read approvals from `connector`, by name."""
    return sorted(
        (
            flow
            for flow in rt.config.flows.values()
            if flow.enabled
            and flow.trigger.webhook
            and flow.source.connector == connector
            and flow.source.stream == APPROVALS
        ),
        key=lambda flow: flow.name,
    )
