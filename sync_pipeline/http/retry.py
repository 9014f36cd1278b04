"""When to retry a vendor call in-process, and after how long: a policy as an immutable value.

The error's class decides whether to retry at all (DESIGN.md section 3): only `Transient`
errors, and never `OutcomeUnknown`: a request that was sent and got no answer may have taken
effect, so only the effect-key protocol in the write step may send it again. `TokenExpired`
is the client's business (refresh, then exactly one retry). The vendor's own wait hint wins
over our backoff; a wait longer than `max_sleep_s` is not slept here but handed up with the
error, so the Celery task retries with that countdown (or parks it) instead of holding a worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sync_pipeline.errors import OutcomeUnknown, SyncError, TokenExpired, VendorError

_random = random.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first call; jitter is "full jitter" (uniform in [0, backoff])."""

    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    jitter: bool = True
    max_sleep_s: float = 30.0  # longer waits go back to the task as the error's retry_after

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first call, so it is at least 1")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_sleep_s < 0:
            raise ValueError("backoff and sleep limits are seconds, not negative")

    def next_delay(self, attempt: int, error: SyncError) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: raise `error` now.

        `attempt` is the 1-based number of the attempt that just failed with `error`.
        """
        if not error.retryable or isinstance(error, OutcomeUnknown | TokenExpired):
            return None
        if attempt >= self.max_attempts:
            return None
        hint = error.retry_after if isinstance(error, VendorError) else None
        delay = max(0.0, hint) if hint is not None else self.backoff_s(attempt)
        return delay if delay <= self.max_sleep_s else None

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff after failed attempt `attempt`, capped, with full jitter."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(attempt - 1, 60))
        return _random.uniform(0.0, ceiling) if self.jitter else ceiling
