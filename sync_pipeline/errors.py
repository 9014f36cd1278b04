"""The one exception hierarchy of sync_pipeline. Imports nothing from the project.

SyncError                  retryable = False
+ ConfigError              unusable config: file, key path, what was expected
+ RecordError              one bad record -> dead letter; the batch goes on
+ VendorError
  + VendorRejected         the vendor refused this request; a retry gets the same answer
  + QuotaExhausted         a monthly call quota would be exceeded: stop the run, not retry
  + PagingLoop             a source handed back a page token already followed: stop the run
+ Transient                retryable = True; mixed into concrete classes, as dlt does
  + ServiceUnavailable     Redis/Postgres unreachable: URL named, password masked
  + VendorUnavailable, RateLimited, TokenExpired, OutcomeUnknown   (also VendorError)

Constructors pass every argument (never a secret) to ``super().__init__`` so that Celery,
which rebuilds a JSON-serialized exception as ``cls(*args)``, gets the same object back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class SyncError(Exception):
    """Base of every error the product raises on purpose."""

    retryable: ClassVar[bool] = False
    exit_code: ClassVar[int] = 1
    # About one record (its content, its recipient): it is dead-lettered and the batch goes on.
    # Otherwise about the run (config, quota, a server): it stops or retries the run.
    about_record: ClassVar[bool] = False


class Transient(SyncError):
    """Time may fix it: a retry with backoff is the right answer."""

    retryable = True
    # False when the retry only waits for another attempt's outcome, a wait that attempt's own
    # window bounds: it spends none of the caller's retries (errors.EffectInFlight).
    spends_retries: ClassVar[bool] = True


class ConfigError(SyncError):
    """A configuration file or variable is unusable; every problem is listed at once."""

    exit_code = 2

    def __init__(self, file: str, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(file, [list(p) for p in problems])
        self.file = file
        self.problems = [(str(key), str(expected)) for key, expected in problems]

    def __str__(self) -> str:
        return "\n".join(f"{self.file}: {key}: {expected}" for key, expected in self.problems)


class ServiceUnavailable(Transient):
    """Redis or PostgreSQL cannot be reached. `url` is already masked."""

    exit_code = 2

    def __init__(self, service: str, url: str, reason: str, hint: str = "") -> None:
        super().__init__(service, url, reason, hint)
        self.service, self.url, self.reason, self.hint = service, url, reason, hint

    def __str__(self) -> str:
        text = f"cannot reach {self.service} at {self.url}: {self.reason.rstrip('. ')}"
        return f"{text}. {self.hint}" if self.hint else text


class RecordError(SyncError):
    """One record cannot be synced; it goes to the dead-letter table and the batch goes on."""

    about_record = True

    def __init__(self, record_id: str, reason: str) -> None:
        super().__init__(record_id, reason)
        self.record_id, self.reason = record_id, reason

    def __str__(self) -> str:
        return f"record {self.record_id}: {self.reason}"


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


class QuotaExhausted(VendorError):
    """Spending more calls would exceed a vendor quota (DingTalk: 10,000 calls a month).

    Raised before the call, so a run stops with a clear status instead of burning retries
    against a vendor that will refuse until the period ends (DESIGN.md section 7).
    """

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


class MigrationError(SyncError):
    """The schema could not be brought to the current version."""

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


class WriteFailed(Transient):
    """A connector answered a write with a transient failure (its result, not an exception):
    the effect is recorded failed, and the write is retried later under the same key."""

    def __init__(self, connector: str, reason: str) -> None:
        super().__init__(connector, reason)
        self.connector, self.reason = connector, reason

    def __str__(self) -> str:
        return f"{self.connector}: {self.reason}"
