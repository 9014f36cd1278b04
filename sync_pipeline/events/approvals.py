"""approval_changed events: re-read the approval from its source, then sync it to every flow
that takes webhooks from that source, through the pull's own stages and effect keys.

What an event says (status, version) is only a hint: deliveries come late, twice and out of
order. The handler reads the record as it is now, so every delivery converges on the source's
current state, and the effect keys it shares with the scheduled pull make each effect happen
once, whichever of them gets there first. A lost event is the pull's to repair.
"""

from __future__ import annotations

from sync_pipeline import steps
from sync_pipeline.config.flow import Flow
from sync_pipeline.connectors.base import ReadsOne
from sync_pipeline.events import Handled
from sync_pipeline.records import InboundEvent
from sync_pipeline.runtime import Runtime
from sync_pipeline.state.inbound import EventStatus

APPROVALS = "approvals"  # the stream every source connector reads its approvals from


def handle(rt: Runtime, event: InboundEvent) -> Handled:
    """Sync the named record to each flow that wants it; one run of trigger "webhook" each."""
    flows = wanting(rt, event.connector)
    if not flows:
        reason = f"no enabled flow takes approval webhooks from {event.connector}"
        return Handled(EventStatus.IGNORED, reason)
    source_id = str(event.data.get("source_id") or "")
    if not source_id:
        return Handled(EventStatus.IGNORED, "the event names no record")
    source = rt.connector(event.connector)
    if not isinstance(source, ReadsOne):
        reason = f"{event.connector} cannot re-read one record; the next pull syncs {source_id}"
        return Handled(EventStatus.IGNORED, reason)
    read_at = steps.read_clock(rt)  # before the read: what it returns is true as of then
    record = source.read_one(APPROVALS, source_id)
    if record is None:
        reason = f"approval {source_id} is gone or out of sight at {event.connector}"
        return Handled(EventStatus.IGNORED, reason)
    done = []
    for flow in flows:
        run_id, counts = steps.sync_records(rt, flow.name, [record], read_at)
        done.append(
            f"{flow.name} run {run_id}: {counts.written} written, {counts.skipped} skipped,"
            f" {counts.dead} dead-lettered"
        )
    return Handled(EventStatus.DONE, "; ".join(done))


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
