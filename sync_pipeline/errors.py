"""The one exception hierarchy of sync_pipeline, and the one place that decides about errors.
Imports nothing from the project.

SyncError                  retryable = False
+ ConfigError              unusable config: file, key path, what was expected
  + ConfigErrors           problems in more than one file
+ RecordError              one bad record -> dead letter; the batch goes on
  + TemplateFailed         a rest connector's template failed on one record's data
+ VendorError
  + VendorRejected         the vendor refused this request; a retry gets the same answer
  + QuotaExhausted         a monthly call quota would be exceeded: stop the run, not retry
  + PagingLoop             a source handed back a page token already followed: stop the run
+ StaleFence               a newer pull holds the flow: this one stops without committing
+ LeaseHeld                another worker's live lease holds this work: leave it to it
+ CursorRegression         code tried to move a cursor backwards
+ Refused                  a webhook delivery answered 4xx and never enqueued
+ AdminRefused             an admin API request answered 4xx and not acted on
+ MigrationError           the schema could not be migrated
+ Transient                retryable = True; mixed into concrete classes, as dlt does
  + ServiceUnavailable     Redis/Postgres unreachable: URL named, password masked
  + VendorUnavailable, RateLimited, TokenExpired, OutcomeUnknown   (also VendorError)

Every class says, as class attributes (dlt's `PipelineStepFailed` keeps the same facts):
`retryable` (a task retries it, with `backoff_s`), `run_status` (the status a run it ends
gets once no retry is left), `about_record` (dead-letter the record and go on, or stop the
run), `exit_code` (syncctl's) and `next_step` (the operator's next command). Call sites ask
the class (`retryable`, `run_status`) rather than choosing by isinstance chains.

Constructors pass every argument (never a secret) to ``super().__init__`` so that Celery,
which rebuilds a JSON-serialized exception as ``cls(*args)``, gets the same object back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import ClassVar

MAX_BACKOFF_S = 60.0  # the longest exponential backoff between two tries
# The longest countdown a task is given: far below the broker's visibility timeout, past which
# Redis delivers the task again (DESIGN.md section 4); longer waits belong in PostgreSQL.
MAX_COUNTDOWN_S = 300.0


class RunStatus(StrEnum):
    """The status of a run (state/runs.py stores it); an error names the one it ends a run in."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"  # ended on purpose before the end: quota reached, superseded


class SyncError(Exception):
    """Base of every error the product raises on purpose."""

    retryable: ClassVar[bool] = False
    exit_code: ClassVar[int] = 1
    # About one record (its content, its recipient): it is dead-lettered and the batch goes on.
    # Otherwise about the run (config, quota, a server): it stops or retries the run.
    about_record: ClassVar[bool] = False
    run_status: ClassVar[RunStatus] = RunStatus.FAILED
    next_step: ClassVar[str] = "see the worker's log, then: syncctl run FLOW --wait"


class Transient(SyncError):
    """Time may fix it: a retry with backoff is the right answer."""

    retryable = True
    next_step = "none: it is retried; if it lasts, see the worker's log and: syncctl status"
    # False when the retry only waits for another attempt's outcome, a wait that attempt's own
    # window bounds: it spends none of the caller's retries (errors.EffectInFlight).
    spends_retries: ClassVar[bool] = True


class ConfigError(SyncError):
    """A configuration file or variable is unusable; every problem is listed at once."""

    exit_code = 2
    next_step = "fix the file, then: syncctl check"

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(file, [list(p) for p in problems])
        self.file = file
        self.problems = [(str(key), str(expected)) for key, expected in problems]

    def __str__(self) -> str:
        return "\n".join(f"{self.file}: {key}: {expected}" for key, expected in self.problems)


class ConfigErrors(ConfigError):
    """Problems in more than one file. `errors` has one ConfigError per file; str() prints
    every line of each. Arguments are plain lists, so Celery can rebuild it from JSON."""

    def __init__(self, per_file: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> None:
        self.errors = [ConfigError(file, problems) for file, problems in per_file]
        SyncError.__init__(self, [[e.file, [list(p) for p in e.problems]] for e in self.errors])
        self.file = ", ".join(e.file for e in self.errors)
        self.problems = [p for e in self.errors for p in e.problems]

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class ServiceUnavailable(Transient):
    """Redis or PostgreSQL cannot be reached. `url` is already masked."""

    exit_code = 2
    next_step = "start the server or fix its URL, then: syncctl check"

    def __init__(self, service: str, url: str, reason: str, hint: str = "") -> None:
        super().__init__(service, url, reason, hint)
        self.service, self.url, self.reason, self.hint = service, url, reason, hint

    def __str__(self) -> str:
        text = f"cannot reach {self.service} at {self.url}: {self.reason.rstrip('. ')}"
        return f"{text}. {self.hint}" if self.hint else text


class RecordError(SyncError):
    """One record cannot be synced; it goes to the dead-letter table and the batch goes on."""

    about_record = True
    next_step = "fix the record or the mapping, then: syncctl dlq replay --flow FLOW"

    def __init__(self, record_id: str, reason: str) -> None:
        super().__init__(record_id, reason)
        self.record_id, self.reason = record_id, reason

    def __str__(self) -> str:
        return f"record {self.record_id}: {self.reason}"


class TemplateFailed(RecordError):
    """A template of a rest connector's description (config/declarative.py) could not be
    rendered with one record's data (a missing field in a filter, a date that is not one): that
    record is dead-lettered with the template and the reason, and the others go on."""

    next_step = "fix the record or the description's template, then: syncctl dlq replay --flow FLOW"

    def __init__(self, template: str, reason: str) -> None:
        SyncError.__init__(self, template, reason)
        self.record_id, self.template, self.reason = "", template, reason

    def __str__(self) -> str:
        return f"the template {self.template!r} failed on this record's data: {self.reason}"


class VendorError(SyncError):
    """A remote API answered with an error, or did not answer."""

    def __init__(
        self, vendor: str, code: str, detail: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(vendor, code, detail, retry_after)
        self.vendor, self.code, self.detail, self.retry_after = vendor, code, detail, retry_after

    def __str__(self) -> str:
        return f"{self.vendor} {self.code}" + (f": {self.detail}" if self.detail else "")


class VendorRejected(VendorError):
    """The request itself is wrong (params, permissions): fix data or config, then replay."""

    about_record = True
    next_step = "fix the data or the config, then: syncctl dlq replay --flow FLOW"


class QuotaExhausted(VendorError):
    """Spending more calls would exceed a vendor quota (DingTalk: 10,000 calls a month).

    Raised before the call, so a run stops with a clear status instead of burning retries
    against a vendor that will refuse until the period ends (DESIGN.md section 7).
    """

    run_status = RunStatus.STOPPED
    next_step = "raise the quota or wait for the next period, then: syncctl run FLOW --wait"

    def __init__(self, vendor: str, api: str, limit: int, period: str) -> None:
        scope = "all APIs" if api == "*" else api
        detail = (
            f"the {period} quota of {limit} calls for {scope} is spent; "
            "raise the quota or wait for the next period"
        )
        super().__init__(vendor, "quota_exhausted", detail)
        self.args = (vendor, api, limit, period)  # Celery rebuilds it as cls(*args)
        self.api, self.limit, self.period = api, limit, period


class PagingLoop(VendorError):
    """A source handed back a page token this read had followed already. The same token reads
    the same page (Connector.read_page), so following it would go round forever: the run stops
    instead, and a retry would loop the same way."""

    def __init__(self, vendor: str, stream: str, code: str = "page_token_repeated") -> None:
        detail = f"stream {stream}: a page token came back after it was followed"
        super().__init__(vendor, code, detail)
        self.args = (vendor, stream, code)  # Celery rebuilds it as cls(*args)
        self.stream = stream


class VendorUnavailable(VendorError, Transient):
    """The vendor is down or answered 5xx; the request did not take effect."""


class RateLimited(VendorError, Transient):
    """The vendor throttled us; `retry_after` is its own wait hint in seconds, if it gave one."""


class TokenExpired(VendorError, Transient):
    """The cached access token is no longer accepted: refresh it, then retry once."""


class OutcomeUnknown(VendorError, Transient):
    """Sent, no answer. Retrying is safe only because every write carries an idempotency key."""


class StaleFence(SyncError):
    """A newer pull holds this flow; this one must stop without committing."""

    run_status = RunStatus.STOPPED
    next_step = "none: the newer pull carries on from the committed cursor"

    def __init__(self, flow: str, fence: int, current: int) -> None:
        super().__init__(flow, fence, current)
        self.flow, self.fence, self.current = flow, fence, current

    def __str__(self) -> str:
        return f"flow {self.flow}: fence {self.fence} superseded by {self.current}"


class LeaseHeld(SyncError):
    """Another holder's live lease covers this work (a page, a run): this copy of the task
    leaves it to that holder, which finishes it (pipeline/leases.py). Not a failure."""

    next_step = "none: the lease's holder finishes the work"

    def __init__(self, kind: str, work_id: int, holder: str) -> None:
        super().__init__(kind, work_id, holder)
        self.kind, self.work_id, self.holder = kind, work_id, holder

    def __str__(self) -> str:
        return f"{self.kind} {self.work_id} is held by {self.holder}"


class CursorRegression(SyncError):
    """Code tried to move a cursor backwards; only an admin resync may (cursors.reset)."""

    next_step = "report it as a bug; the cursor was left where it was"

    def __init__(self, flow: str, current: str, proposed: str) -> None:
        super().__init__(flow, current, proposed)
        self.flow, self.current, self.proposed = flow, current, proposed

    def __str__(self) -> str:
        return f"flow {self.flow}: cursor would move back from {self.current} to {self.proposed}"


class Reason(StrEnum):
    """Why the webhook service refused a delivery (the label of its refusal counter)."""

    BAD_SIGNATURE = "bad_signature"  # forged: signature, token or ciphertext does not check
    STALE = "stale"  # signed too long ago (or in the future): outside the window
    REPLAY = "replay"  # this very signed request was seen inside its window
    MALFORMED = "malformed"  # not what the vendor sends: unparseable, fields missing
    INCOMPLETE = "incomplete"  # the body never arrived whole: the client went, or its deadline


REFUSAL_STATUS = {
    Reason.BAD_SIGNATURE: 401,
    Reason.STALE: 401,
    Reason.REPLAY: 409,
    Reason.MALFORMED: 400,
    Reason.INCOMPLETE: 400,
}


class Refused(SyncError):
    """A delivery the webhook service answers with a 4xx, counts, and never enqueues."""

    next_step = "check the webhook's secrets and the sender's clock: syncctl check"

    def __init__(self, reason: Reason, detail: str, status: int | None = None) -> None:
        super().__init__(reason, detail, status)
        self.reason, self.detail = reason, detail
        self.status = REFUSAL_STATUS[reason] if status is None else status

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def retryable(error: BaseException) -> bool:
    """Whether a retry may succeed: the class says so (anything not ours: no)."""
    return isinstance(error, SyncError) and error.retryable


def run_status(error: BaseException) -> RunStatus:
    """The status a run ends in when `error` stops it for good (anything not ours: failed)."""
    return error.run_status if isinstance(error, SyncError) else RunStatus.FAILED


def next_step(error: BaseException) -> str:
    """The operator's next command after `error`."""
    return error.next_step if isinstance(error, SyncError) else SyncError.next_step


def backoff_s(error: BaseException, tries: int) -> float:
    """How long to wait before trying again after `tries` tries (0: the first failed): the
    vendor's own wait (`retry_after`) when it gave one, else exponential from 2 s up to
    MAX_BACKOFF_S; never past MAX_COUNTDOWN_S. The one formula of tasks and events."""
    wait = getattr(error, "retry_after", None)
    if isinstance(wait, int | float) and math.isfinite(wait) and wait >= 0:
        return float(min(wait, MAX_COUNTDOWN_S))
    return min(2.0 ** min(tries + 1, 16), MAX_BACKOFF_S)


class MigrationError(SyncError):
    """The schema could not be brought to the current version."""

    next_step = "fix what the message names, then: syncctl migrate"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"migration failed: {self.reason}"


class EffectInFlight(Transient):
    """Another attempt is making some of these effects: not a failure. Wait for its outcome
    (`retry_after`: the next look, never past the effects' in-flight window), then settle from
    what the effect records. The wait spends no retry: the window bounds it."""

    spends_retries = False

    def __init__(self, flow: str, count: int, retry_after: float | None = None) -> None:
        super().__init__(flow, count, retry_after)
        self.flow, self.count, self.retry_after = flow, count, retry_after

    def __str__(self) -> str:
        return f"{self.flow}: {self.count} effect(s) are being made by another attempt"


class FlowPaused(Transient):
    """The flow is paused (`syncctl flow pause`): its events wait, queued, and are looked at
    again every `retry_after` seconds; the wait spends none of their tries."""

    spends_retries = False
    next_step = "none: it waits; resume the flow with: syncctl flow resume FLOW"

    def __init__(self, flow: str, retry_after: float = 60.0) -> None:
        super().__init__(flow, retry_after)
        self.flow, self.retry_after = flow, retry_after

    def __str__(self) -> str:
        return f"{self.flow} is paused: its events wait until it is resumed"


class ReconcileRunning(SyncError):
    """A reconciliation of the flow is running already: one at a time (state/reconciles.py)."""

    next_step = "wait for it: syncctl status; then reconcile again"
    exit_code = 2

    def __init__(self, flow: str, running_id: int, by: str, since: str) -> None:
        super().__init__(flow, running_id, by, since)
        self.flow, self.running_id, self.by, self.since = flow, running_id, by, since

    def __str__(self) -> str:
        return (
            f"reconcile #{self.running_id} of {self.flow} (asked by {self.by}, running since"
            f" {self.since} UTC) is running; one at a time: wait for it, then ask again"
        )


class ReconcilePaused(SyncError):
    """A repair of a paused flow's target: refused, as its pulls are (state/controls.py)."""

    next_step = "resume the flow with: syncctl flow resume FLOW; then repair again"
    exit_code = 2

    def __init__(self, flow: str) -> None:
        super().__init__(flow)
        self.flow = flow

    def __str__(self) -> str:
        return (
            f"{self.flow} is paused, so its target is not repaired (a reconcile without"
            f" --repair still reports); resume it with: syncctl flow resume {self.flow}"
        )


class WriteFailed(Transient):
    """A connector answered a write with a transient failure (its result, not an exception):
    the effect is recorded failed, and the write is retried later under the same key."""

    def __init__(self, connector: str, reason: str) -> None:
        super().__init__(connector, reason)
        self.connector, self.reason = connector, reason

    def __str__(self) -> str:
        return f"{self.connector}: {self.reason}"


class AdminRefused(SyncError):
    """A request the admin API answers with a 4xx naming why (`code`), and never acts on: an
    unknown flow (404), a flow that may not do it now (409), a malformed request (400, 422)."""

    exit_code = 2
    next_step = "see the answer's error: it says what to change"

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status, code, detail)
        self.status, self.code, self.detail = status, code, detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
