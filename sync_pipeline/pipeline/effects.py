"""The effect protocol: the one way every remote write is made, exactly once (DESIGN.md section 3).

Every remote effect (a message, a card, a card update, an approval center's instance or task,
an OA todo, a project comment, a decision made in the OA as its approver) goes through `make`:

1. claim: its key is inserted as `pending` and committed before any vendor call;
2. attempt: the call carries the vendor's dedupe handle derived from the key, where the vendor
   has one (the connector derives it);
3. record: the vendor's answer (`done` and its object id, or `failed` and why) is committed
   before the next effect of the batch is attempted.

A key found `done` is not made again. A key found `pending` may have reached the vendor, and
its outcome is not known:
- another attempt that claimed it inside its in-flight window may still be making it: a
  patient caller (events, which never run alone) waits for that attempt (`EffectInFlight`);
- otherwise it is resent only under the vendor's dedupe handle and inside the vendor's
  dedupe window; past it (or with no window) it is looked up at the vendor where the
  connector can (`connectors.base.LooksUpEffects`): there, it is recorded done without a
  call; not there, it is made now; no longer makeable, it failed;
- and where it can be neither resent nor looked up, it is parked as `unknown` for an operator
  (`syncctl effects list`, `syncctl effects settle`): never resent blindly, never dropped, and
  the rest of the batch goes on.

Retry by the kind of error: a connect error never reached the vendor, a refusal or a quota
fails the effect, a lost answer (OutcomeUnknown) leaves it pending for the retry above.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from sync_pipeline.config.flow import Flow
from sync_pipeline.connectors.base import (
    Connector,
    DecidesApprovals,
    DecisionRequest,
    LooksUpEffects,
)
from sync_pipeline.errors import EffectInFlight, OutcomeUnknown, SyncError, WriteFailed
from sync_pipeline.failures import about_record, describe
from sync_pipeline.http.client import requests_sent
from sync_pipeline.logging import log_context
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import WriteRequest, WriteResult, WriteStatus
from sync_pipeline.state import deadletters
from sync_pipeline.state import effects as keys

log = logging.getLogger(__name__)

# How long a pending effect may still be on its way to the vendor: a call with its in-process
# retries (4 attempts of at most ~13 s, backoffs of at most 20 s) ends well within it.
IN_FLIGHT_S = 120.0
IN_FLIGHT_POLL_S = 5.0  # how often a caller waiting for another attempt's effect looks again
MIN_WAIT_S = 0.5  # past the end of a window, so the look after it finds the window over
REFUSED = "VendorRejected"  # the error class of a refused effect's dead letter (replay.py)
PARKED_REASON = "outcome unknown; parked for reconciliation"
CRASH_WINDOW = "crash window: the answer was lost and the vendor can neither dedupe nor be asked"


class Via(StrEnum):
    """How an effect's outcome came about in this call."""

    SENT = "sent"  # the vendor was called now
    FOUND = "found"  # looked up at the vendor: an earlier attempt had made it (or could not)
    ALREADY = "already"  # recorded done (or parked) before this call; nothing was asked
    PARKED = "parked"  # outcome unknown: parked now for an operator


@dataclass(frozen=True)
class Outcome:
    """What became of one effect: DONE (with the vendor's object id) or REJECTED (why)."""

    status: WriteStatus
    via: Via
    target_id: str | None = None
    reason: str = ""

    @property
    def fresh(self) -> int:
        """1 when this call recorded the effect made (sent now, or found made), else 0."""
        return int(self.status is WriteStatus.DONE and self.via is not Via.ALREADY)


class Effector(Protocol):
    """One kind of remote effect, as the protocol makes it."""

    @property
    def system(self) -> str:
        """The vendor the effects are made at, as effect keys name it ("wecom", "oa")."""
        ...

    @property
    def name(self) -> str:
        """The connector's name, for errors."""
        ...

    def attempt(self, request: WriteRequest) -> WriteResult: ...

    def dedupe_window_s(self) -> float | None: ...

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None: ...


class Unanswerable(StrEnum):
    """The vendor cannot be asked whether the effect is there."""

    NO_LOOKUP = "no_lookup"


@dataclass(frozen=True)
class Writes:
    """Writes to a connector's stream (the target of a flow, or an IM's messages)."""

    connector: Connector
    stream: str
    name: str
    system: str

    def attempt(self, request: WriteRequest) -> WriteResult:
        return self.connector.write(self.stream, request)

    def dedupe_window_s(self) -> float | None:
        return self.connector.dedupe_window_s(self.stream)

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None:
        return _look_up(self.connector, self.stream, request)


@dataclass(frozen=True)
class Decides:
    """Approvals decided in their source as the approver (connectors.base.DecidesApprovals):
    not idempotent at the vendor, so never resent; a lost answer is looked up."""

    source: DecidesApprovals
    stream: str
    name: str
    system: str

    def attempt(self, request: WriteRequest) -> WriteResult:
        decision = DecisionRequest.of(request)
        self.source.decide(
            self.stream, decision.source_id, decision.decision, decision.as_user, decision.comment
        )
        at = {"at": datetime.now(UTC).isoformat()}
        return WriteResult(request.effect_key, WriteStatus.DONE, decision.as_user, extra=at)

    def dedupe_window_s(self) -> float | None:
        return None

    def look_up(self, request: WriteRequest) -> WriteResult | Unanswerable | None:
        return _look_up(self.source, self.stream, request)


def _look_up(
    connector: object, stream: str, request: WriteRequest
) -> WriteResult | Unanswerable | None:
    if isinstance(connector, LooksUpEffects) and connector.looks_up(stream):
        return connector.look_up(stream, request)
    return Unanswerable.NO_LOOKUP


def writes_of(rt: Runtime, flow: Flow) -> Writes:
    """The effector of a flow's target."""
    target = flow.target.connector
    system = rt.config.connectors[target].system
    return Writes(rt.connector(target), flow.target.stream, target, system)


@dataclass(frozen=True)
class Letters:
    """Where refused effects are dead-lettered as their answers come: a flow's run."""

    flow: str
    run_id: int


@dataclass(frozen=True)
class Settled:
    """What `make` came to: the outcome of each effect it settled, by key; the effects
    another attempt is making (left to it); refusals dead-lettered now."""

    outcomes: Mapping[str, Outcome]
    waiting: tuple[keys.Effect, ...] = ()
    dead: int = 0


def make(
    rt: Runtime,
    flow: str,
    effector: Effector,
    requests: Sequence[WriteRequest],
    *,
    patient: bool = False,
    about: Mapping[str, keys.About] | None = None,
    letters: Letters | None = None,
) -> Settled:
    """Claim, attempt and record each effect, exactly once (module docstring).

    A key another attempt claimed while we claimed it (a pull and an event, or two events, on
    one record at once) is left to that attempt; so is, when `patient`, a key another attempt
    claimed within its in-flight window and has not finished: both are returned as `waiting`.
    `about` says what each effect is (kind, recipient, and a detail kept with it from its
    claim, which its done record keeps too); by default it is read from the request. With
    `letters`, refusals are dead-lettered as they come. Raises a Transient error (after
    recording what is known) when the vendor should be tried again later; the effects made
    are not repeated by the retry, and the keys this call claimed but never tried are
    released, not left in flight.
    """
    if not requests:
        return Settled({})
    about = {r.effect_key: (about or {}).get(r.effect_key) or about_of(r) for r in requests}
    wanted = [r.effect_key for r in requests]
    outcomes: dict[str, Outcome] = {}
    waiting: list[keys.Effect] = []
    dead = 0
    # One connection for the batch's transactions (each still commits on its own).
    with rt.engine.connect() as conn:
        with conn.begin():  # committed before any vendor call
            before = keys.get(conn, wanted)
            claimed = keys.claim(conn, flow, effector.system, wanted, about)
        for n, request in enumerate(requests):
            key = request.effect_key
            prior = before.get(key)
            if claimed_by_another(prior, claimed[key], patient):
                waiting.append(claimed[key])
                continue
            try:
                with log_context(flow=flow, record_id=request.source_id):
                    outcome = _settle(conn, effector, request, prior, about[key])
            except Exception:
                _release(conn, requests[n + 1 :], before, claimed, patient)
                raise
            outcomes[key] = outcome
            if outcome.status is WriteStatus.REJECTED and letters is not None:
                letter = (request.source_id, request.to_json(), outcome.reason, REFUSED)
                with conn.begin():
                    dead += deadletters.add(conn, letters.flow, letters.run_id, [letter])
    return Settled(outcomes, tuple(waiting), dead)


def _settle(
    conn: Connection,
    effector: Effector,
    request: WriteRequest,
    before: keys.Effect | None,
    about: keys.About,
) -> Outcome:
    """One effect that is ours to settle, its answer committed on `conn` (outside a
    transaction) before returning."""
    if before is not None and before.status is keys.EffectStatus.DONE:
        return Outcome(WriteStatus.DONE, Via.ALREADY, before.vendor_ref)
    if before is not None and before.status is keys.EffectStatus.UNKNOWN:
        return Outcome(WriteStatus.REJECTED, Via.ALREADY, reason=PARKED_REASON)
    if before is not None and before.status is keys.EffectStatus.PENDING:
        # An earlier attempt may have reached the vendor. Resend only under the vendor's own
        # dedupe handle and inside its window; else ask the vendor; else park it.
        window = effector.dedupe_window_s()
        if window is None or age_s(before) > window:
            found = effector.look_up(request)
            if found is Unanswerable.NO_LOOKUP:
                _record(conn, request, keys.EffectStatus.UNKNOWN, error=CRASH_WINDOW)
                reason = (
                    "an earlier attempt may have been delivered (no vendor dedupe to resend"
                    " under, no way to look it up): check the target, then replay"
                )
                return Outcome(WriteStatus.REJECTED, Via.PARKED, reason=reason)
            if isinstance(found, WriteResult):  # kept with what the earlier attempt meant
                earlier = replace(about, detail={**about.detail, **before.detail})
                return _recorded(conn, effector, request, found, earlier, Via.FOUND)
            # not at the vendor: making it now is safe
    if about.detail:
        with conn.begin():  # the intent, for settling a lost answer later
            keys.finish(conn, request.effect_key, keys.EffectStatus.PENDING, detail=about.detail)
    sent_before = requests_sent()
    try:
        result = effector.attempt(request)
    except OutcomeUnknown:
        raise  # stays pending: the retry resends under the vendor's handle, looks it up, or parks
    except Exception as exc:  # noqa: BLE001 - _raised re-raises errors about the run
        return _raised(conn, request, exc, sent=requests_sent() > sent_before)
    return _recorded(conn, effector, request, result, about, Via.SENT)


def _recorded(
    conn: Connection,
    effector: Effector,
    request: WriteRequest,
    result: WriteResult,
    about: keys.About,
    via: Via,
) -> Outcome:
    status = {
        WriteStatus.DONE: keys.EffectStatus.DONE,
        WriteStatus.REJECTED: keys.EffectStatus.FAILED,
        WriteStatus.FAILED: keys.EffectStatus.FAILED,
    }[result.status]
    detail = {**about.detail, **result.extra} if status is keys.EffectStatus.DONE else {}
    _record(conn, request, status, result.target_id, result.reason, detail)
    if result.status is WriteStatus.FAILED:
        raise WriteFailed(effector.name, result.reason)
    return Outcome(result.status, via, result.target_id, result.reason)


def _record(
    conn: Connection,
    request: WriteRequest,
    status: keys.EffectStatus,
    vendor_ref: str | None = None,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    with conn.begin():
        keys.finish(conn, request.effect_key, status, vendor_ref, error or None, detail)


def _raised(conn: Connection, request: WriteRequest, exc: Exception, *, sent: bool) -> Outcome:
    """What an attempt that raised comes to (DESIGN.md section 3).

    Our own errors say whether the effect was made: the HTTP layer raises OutcomeUnknown
    (handled by the caller) when a request may have taken effect, and its other errors, a
    vendor's refusal, a quota or the config mean it was not, so the effect failed. Any other
    error (a bug, content the connector did not expect) failed the effect when no request had
    left, and is parked as unknown when one had: it may come after the vendor made the
    effect, which is then never resent blindly. An error about this record is its refusal;
    an error about the run propagates, for the run to stop or retry.
    """
    reason = describe(exc)
    parked = sent and not isinstance(exc, SyncError)
    status = keys.EffectStatus.UNKNOWN if parked else keys.EffectStatus.FAILED
    _record(conn, request, status, error=reason)
    if not about_record(exc):
        raise exc
    log.warning("effect for %s failed on its content: %s", request.source_id, reason)
    if parked:
        reason = f"outcome unknown after {reason}: check the target, then replay"
        return Outcome(WriteStatus.REJECTED, Via.PARKED, reason=reason)
    return Outcome(WriteStatus.REJECTED, Via.SENT, reason=reason)


def _release(
    conn: Connection,
    untried: Sequence[WriteRequest],
    before: Mapping[str, keys.Effect],
    claimed: Mapping[str, keys.Effect],
    patient: bool,
) -> None:
    """Give back the keys this attempt took (new, or failed before) and never tried, so that
    nobody waits out an in-flight window for a call nobody is making. A key another attempt
    holds, or one pending before (a crash being recovered), stays as it was."""
    taken = []
    for request in untried:
        prior = before.get(request.effect_key)
        ours = not claimed_by_another(prior, claimed[request.effect_key], patient)
        if ours and (prior is None or prior.status is not keys.EffectStatus.PENDING):
            taken.append(request.effect_key)  # a done or unknown key is left alone by release
    with conn.begin():
        keys.release(conn, taken, "not tried: an earlier effect of its batch stopped it")


def claimed_by_another(prior: keys.Effect | None, claimed: keys.Effect, patient: bool) -> bool:
    """Whether another attempt may be making this effect right now.

    Claiming bumps `attempts` once per claim: more than one bump since our read means another
    attempt claimed it between our read and our claim. A pending key from before is a crash
    to recover from, except for a patient caller while the key is inside its in-flight window.
    """
    if claimed.attempts > (0 if prior is None else prior.attempts) + 1:
        return True
    return patient and prior is not None and in_flight_left_s(prior) > 0


def in_flight_left_s(effect: keys.Effect) -> float:
    """Seconds the attempt that claimed a pending effect may still be making it; 0 when it is
    not pending or that attempt's window is over (it crashed, or lost its answer)."""
    if effect.status is not keys.EffectStatus.PENDING:
        return 0.0
    age = (datetime.now(UTC) - effect.claimed_at).total_seconds()
    return max(0.0, IN_FLIGHT_S - age)


def waiting_on(flow: str, waiting: Sequence[keys.Effect]) -> EffectInFlight:
    """The error for effects another attempt is making: look again after IN_FLIGHT_POLL_S,
    or just after the first window ends if that comes sooner."""
    ends = min((in_flight_left_s(e) for e in waiting), default=0.0)
    return EffectInFlight(flow, len(waiting), min(IN_FLIGHT_POLL_S, ends + MIN_WAIT_S))


def age_s(effect: keys.Effect) -> float:
    """Seconds since the effect was first claimed (the vendor's window starts at the send)."""
    return (datetime.now(UTC) - effect.created_at).total_seconds()


def about_of(request: WriteRequest) -> keys.About:
    """What a planned effect is, for the effects table (card updates look cards up)."""
    note = request.notification
    return keys.About(source_id=request.source_id, kind=note.kind.value, recipient=note.to)


# -- a flow's planned writes ---------------------------------------------------------------------
@dataclass(frozen=True)
class Made:
    """What making a batch of effects came to."""

    written: int  # effects made by this call (0 for those found already done)
    dead: int  # refusals dead-lettered now
    target_ids: Mapping[str, str] = field(default_factory=dict)  # source id -> target object


def make_effects(
    rt: Runtime,
    flow: Flow,
    requests: Sequence[WriteRequest],
    run_id: int,
    *,
    patient: bool = False,
) -> Made:
    """Make a flow's planned writes on its target (`make`): refusals and parked effects are
    the run's dead letters, and effects another attempt is making raise `EffectInFlight`
    once the others are made; the retry settles from what that attempt recorded."""
    if not requests:
        return Made(0, 0, {})
    settled = make(
        rt,
        flow.name,
        writes_of(rt, flow),
        requests,
        patient=patient,
        letters=Letters(flow.name, run_id),
    )
    if settled.waiting:
        raise waiting_on(flow.name, settled.waiting)
    written = 0
    target_ids: dict[str, str] = {}
    for request in requests:
        outcome = settled.outcomes.get(request.effect_key)
        if outcome is None or outcome.status is not WriteStatus.DONE:
            continue
        written += outcome.fresh
        if outcome.target_id:
            target_ids.setdefault(request.source_id, outcome.target_id)
    return Made(written, settled.dead, target_ids)
