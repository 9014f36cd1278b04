"""Reconciliation: what a flow's target holds, compared with what we wrote there, and repaired
through the effect protocol (`syncctl reconcile FLOW [--repair]`, and Beat's `reconcile:`).

What should exist at the target is what the id map says we wrote: each record of the flow
linked to a target object, planned again from the payload we last handled (the flow's own
notify rules, `plan_writes`), gives the object a write leaves (`ReadsBack.expected_view`).
The target is read page by page through its own read APIs:
- our side, a page of id-map links at a time: the vendor's own check first, where it has one
  (Feishu `external_instances/check` names the instances whose update time differs), then
  those it names read back and compared field by field: not there is MISSING, not as
  written is DIFFERENT;
- its side, a page of the objects of ours it lists at a time (Feishu: the instances of our
  definition): one no id-map link names is EXTRA.
A record edited in the source but not pulled yet is not drift: the next pull syncs it.

`--repair` sends every fix as an ordinary effect (`effects.make`): its key is claimed in
PostgreSQL before the vendor is called and recorded after. A missing or different object is
written again from the payload as the target's `repair_request` makes the write (Feishu: whole,
the same write a first sync makes; DingTalk: on our handle less the todos it no longer has
open, so the same instance gets them again), and the id map keeps what it left; an extra one
is removed as its vendor removes one. The key is derived from the reconciliation, the object, the
kind of drift and what was found there: its task redelivered derives the same keys, done
already, and a repair run again finds nothing to repair (the first fixed it), so neither
sends anything the second time; the same object drifting again later is a new finding of a
new reconciliation, repaired again.

It reads a flow's target and writes through the same effect keys as its pulls, so it takes
neither the flow's lock nor its fence: like a resync, it goes beside the scheduled pulls.
One reconciliation of a flow runs at a time (state/reconciles.start: a second is refused,
naming the running one); a paused flow's target is not repaired (ReconcilePaused). The
worker at one holds its lease (Leased.RECONCILE): one whose worker died is sent again by the
sweeper, and goes over the target again from the start (its repairs' keys are the same).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlalchemy as sa

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import Config
from sync_pipeline.connectors.base import ReadsBack, TargetView
from sync_pipeline.connectors.registry import capabilities
from sync_pipeline.errors import ConfigError, ReconcilePaused
from sync_pipeline.failures import describe
from sync_pipeline.pipeline.effects import Unanswerable, Writes, make, writes_of
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import (
    Notification,
    NotifyKind,
    Record,
    WriteOp,
    WriteRequest,
    WriteResult,
    WriteStatus,
)
from sync_pipeline.stages.plan import effect_key, plan_writes
from sync_pipeline.state import controls, reconciles
from sync_pipeline.state import effects as keys
from sync_pipeline.state.reconciles import Drift, DriftKind, Reconcile
from sync_pipeline.state.schema import id_map

log = logging.getLogger(__name__)

SCHEDULED_BY = "schedule"  # requested_by of a reconciliation Beat asked for
REPAIR_KIND = "reconcile_repair"  # the effect kind of a repair, in the effects table


def refusal(config: Config, flow: Flow) -> str | None:
    """Why the flow cannot be reconciled, or None when it can."""
    if config.reads_back(flow):
        return None
    target = flow.target
    vendor = config.connectors[target.connector].vendor
    can = capabilities(vendor).get(target.stream)
    why = can.no_read_back if can is not None and can.no_read_back else "no read API for it"
    return (
        f"{flow.name} cannot be reconciled: the {vendor.value} connector cannot read back"
        f" stream {target.stream} ({why})"
    )


@dataclass(frozen=True)
class _Fix:
    """A drifted object: the write planned for it, and what the target holds (None: not there)."""

    request: WriteRequest
    held: TargetView | None


@dataclass(frozen=True)
class _Expected:
    """An object we wrote, as it should stand, and the write that makes it so."""

    view: TargetView
    request: WriteRequest
    source_id: str


def run_reconcile(rt: Runtime, reconcile_id: int) -> Reconcile:
    """Compare (and with `repair`, repair) the flow's target; the report is recorded in the
    reconciliation's row, which is returned. Errors propagate for the task to record."""
    rec = _get(rt, reconcile_id)
    if rec.done:
        return rec
    flow = rt.flow(rec.flow)
    if rec.repair:
        with rt.engine.connect() as conn:
            if controls.paused(conn, flow.name) is not None:
                raise ReconcilePaused(flow.name)
    target = _reader(rt, flow)
    stream = flow.target.stream
    drift: list[Drift] = []
    fixes: dict[str, _Fix] = {}  # target id -> what is planned there, and what stands
    checked = 0
    for page in _expected_pages(rt, flow, target):
        checked += len(page)
        by_id = {e.view.target_id: e for e in page}
        suspects = target.suspects(stream, [e.request for e in page]) & set(by_id)
        asked = [by_id[t].request for t in sorted(suspects)]
        found = target.read_back(stream, asked) if suspects else {}
        for target_id in sorted(suspects):
            expected = by_id[target_id]
            held = found.get(target_id)
            differs = _differs(expected.view, held)
            if held is None:
                drift.append(Drift(DriftKind.MISSING, target_id, expected.source_id))
            elif differs:
                drift.append(Drift(DriftKind.DIFFERENT, target_id, expected.source_id, differs))
            else:
                continue
            fixes[target_id] = _Fix(expected.request, held)
    listed = 0
    token: str | None = None
    while True:
        listing = target.list_back(stream, token, flow.page_size)
        listed += len(listing.views)
        known = _linked(rt, flow, [v.target_id for v in listing.views])
        drift += [
            Drift(DriftKind.EXTRA, v.target_id, None)
            for v in listing.views
            if v.target_id not in known
        ]
        if listing.next_token is None:
            break
        token = listing.next_token
    if rec.repair and drift:
        drift = _repair(rt, flow, target, drift, fixes, reconcile_id)
    with rt.engine.begin() as conn:
        reconciles.finish(conn, reconcile_id, checked, listed, drift)
    log.info(
        "reconcile %s of %s: %d compared, %d listed, %d not in step, %d repaired",
        reconcile_id,
        flow.name,
        checked,
        listed,
        len(drift),
        sum(1 for d in drift if d.repaired),
    )
    return _get(rt, reconcile_id)


def fail(rt: Runtime, reconcile_id: int, error: Exception) -> None:
    with rt.engine.begin() as conn:
        reconciles.fail(conn, reconcile_id, describe(error))


def _reader(rt: Runtime, flow: Flow) -> ReadsBack:
    why = refusal(rt.config, flow)
    target = rt.connector(flow.target.connector)
    if why is not None or not isinstance(target, ReadsBack):
        raise ConfigError(str(rt.settings.config_dir / "flows"), [(flow.name, why or "?")])
    return target


def _expected_pages(rt: Runtime, flow: Flow, target: ReadsBack) -> Iterator[list[_Expected]]:
    """The objects the id map says we wrote, a page of links at a time (keyset by row id)."""
    after = 0
    while True:
        with rt.engine.connect() as conn:
            rows = conn.execute(
                sa.select(id_map.c.id, id_map.c.source_id, id_map.c.source_version)
                .add_columns(id_map.c.payload, id_map.c.target_id)
                .where(
                    id_map.c.flow == flow.name,
                    id_map.c.target_id.is_not(None),
                    id_map.c.payload.is_not(None),
                    id_map.c.id > after,
                )
                .order_by(id_map.c.id)
                .limit(flow.page_size)
            ).all()
        if not rows:
            return
        after = int(rows[-1].id)
        page: list[_Expected] = []
        for row in rows:
            record = Record(row.source_id, row.source_version or "", "", row.payload)
            planned = plan_writes(flow.name, [record], flow.notify, {}, target=flow.target.stream)
            for plain in planned:
                request = replace(plain, target_id=row.target_id)  # what we hold of it
                view = target.expected_view(flow.target.stream, request)
                if view is not None:
                    page.append(_Expected(view, request, row.source_id))
        yield page


def _linked(rt: Runtime, flow: Flow, target_ids: Sequence[str]) -> set[str]:
    """Which of these target objects an id-map link of the flow names."""
    if not target_ids:
        return set()
    with rt.engine.connect() as conn:
        found = conn.execute(
            sa.select(id_map.c.target_id).where(
                id_map.c.flow == flow.name, id_map.c.target_id.in_(list(target_ids))
            )
        ).scalars()
        return {str(t) for t in found}


def _differs(expected: TargetView, held: TargetView | None) -> dict[str, tuple[str, str]]:
    """Each field of `expected` that `held` does not have the same: (expected, found)."""
    if held is None:
        return {}
    found = held.as_dict()
    return {k: (v, found.get(k, "")) for k, v in expected.fields if found.get(k, "") != v}


# -- repair ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Repairs:
    """The effector of repairs (effects.Effector): writes again what is missing or different,
    removes what is extra. Every one is safe to send again (an upsert, a removal), and a lost
    answer is settled by reading the object back."""

    writes: Writes  # the flow's target, as its pulls write it
    target: ReadsBack  # the same connector, reading back
    removals: frozenset[str]  # effect keys of removals
    wanted: Mapping[str, TargetView]  # effect key -> the object a write leaves

    @property
    def stream(self) -> str:
        return self.writes.stream

    @property
    def name(self) -> str:
        return self.writes.name

    @property
    def system(self) -> str:
        return self.writes.system

    def attempt(self, request: WriteRequest) -> WriteResult:
        if request.effect_key in self.removals:
            target_id = request.target_id or request.source_id
            return self.target.remove_back(self.stream, target_id, request)
        return self.writes.attempt(request)  # as the target's repair_request made it

    def dedupe_window_s(self) -> float | None:
        return None

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None:
        if request.effect_key in self.removals:
            target_id = request.target_id or request.source_id
            done = target_id not in self.target.read_back(self.stream, [request])
        else:
            wanted = self.wanted[request.effect_key]
            target_id = wanted.target_id
            held = self.target.read_back(self.stream, [request]).get(target_id)
            done = held is not None and not _differs(wanted, held)
        if done:
            return WriteResult(request.effect_key, WriteStatus.DONE, target_id)
        return None  # not made: making it now is safe


def _repair(
    rt: Runtime,
    flow: Flow,
    target: ReadsBack,
    drift: Sequence[Drift],
    fixes: Mapping[str, _Fix],
    reconcile_id: int,
) -> list[Drift]:
    """Each drift fixed as an effect with its own key (module docstring); the drift comes
    back marked repaired where its effect is done."""
    requests: list[WriteRequest] = []
    about: dict[str, keys.About] = {}
    removals: set[str] = set()
    wanted: dict[str, TargetView] = {}
    key_of: dict[int, str] = {}
    now = datetime.now(UTC).isoformat()
    for n, d in enumerate(drift):
        key = effect_key(
            flow.name,
            f"{flow.target.connector}/{flow.target.stream}",
            d.target_id,
            f"{reconcile_id}:{_finding(d)}",
            REPAIR_KIND,
            d.kind.value,
        )
        key_of[n] = key
        if d.kind is DriftKind.EXTRA:
            note = Notification(NotifyKind.APPROVAL_CENTER, None, {"at": now})
            request = WriteRequest(key, d.target_id, WriteOp.UPDATE, note, d.target_id)
            removals.add(key)
        else:
            fix = fixes[d.target_id]
            planned = replace(fix.request, effect_key=key)
            request = target.repair_request(flow.target.stream, planned, fix.held)
            view = target.expected_view(flow.target.stream, fix.request)
            if view is not None:
                wanted[key] = view
        requests.append(request)
        about[key] = keys.About(
            source_id=d.source_id or d.target_id,
            kind=REPAIR_KIND,
            detail={"drift": d.kind.value, "target_id": d.target_id},
        )
    effector = Repairs(writes_of(rt, flow), target, frozenset(removals), wanted)
    settled = make(rt, flow.name, effector, requests, about=about)
    repaired = []
    for n, d in enumerate(drift):
        outcome = settled.outcomes.get(key_of[n])
        done = outcome is not None and outcome.status is WriteStatus.DONE
        repaired.append(replace(d, repaired=done))
        if done and outcome is not None and d.kind is not DriftKind.EXTRA:
            _relink(rt, flow, fixes[d.target_id].request, outcome.target_id)
    return repaired


def _relink(rt: Runtime, flow: Flow, planned: WriteRequest, target_id: str | None) -> None:
    """The id map keeps what a repair left (DingTalk: the handle naming the new tasks), so
    the next pull's write builds on it."""
    if target_id is None or target_id == planned.target_id:
        return
    with rt.engine.begin() as conn:
        conn.execute(
            id_map.update()
            .where(id_map.c.flow == flow.name, id_map.c.source_id == planned.source_id)
            .values(target_id=target_id)
        )


def _finding(drift: Drift) -> str:
    """What was found, as text for the repair's key: the same finding, the same key."""
    found = {k: f for k, (_, f) in sorted(drift.fields.items())}
    text = json.dumps([drift.kind.value, found], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _get(rt: Runtime, reconcile_id: int) -> Reconcile:
    with rt.engine.connect() as conn:
        found = reconciles.get(conn, reconcile_id)
    if found is None:
        raise LookupError(f"reconcile {reconcile_id} does not exist")
    return found


def start(rt: Runtime, flow: str, by: str, *, repair: bool) -> Reconcile:
    """A reconciliation recorded by the worker itself (Beat's schedule)."""
    with rt.engine.begin() as conn:
        return reconciles.start(conn, flow, by, repair=repair)
