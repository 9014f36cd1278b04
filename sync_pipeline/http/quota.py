"""Monthly call quotas per (vendor, app, API), counted where no worker can overspend them.

Per-second and per-minute caps are the rate limiter's (Redis may forget them; they refill
anyway). A monthly quota must survive restarts and a Redis flush (DESIGN.md section 1), and
when it runs out the vendor refuses until the month ends (DingTalk standard edition: 10,000
metered calls a month, error 90020), so each call is charged *before* it is sent, and a
charge that would pass the limit is refused whole. A run that would exceed it stops with
`QuotaExhausted` instead of burning retries (DESIGN.md section 7).

The counters live behind `QuotaStore`: the HTTP layer and the connectors know nothing of
PostgreSQL. The runtime hands them `state.quotas.PostgresQuotaStore` in the ConnectorContext.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from sync_pipeline.errors import QuotaExhausted

ALL_APIS = "*"  # a quota every call counts against, whatever its API


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, order=True)
class QuotaCounter:
    """The calls of one (vendor, app) charged to `api` in one period. Ordered, so that two
    workers charging the same counters take them in the same order."""

    vendor: str
    app: str
    api: str  # an API's name, or ALL_APIS
    period: str  # a calendar month in UTC: "2026-11"


@runtime_checkable
class QuotaStore(Protocol):
    """Where the counters live: shared by every worker, kept across restarts and a Redis
    flush. A store that cannot be reached raises ServiceUnavailable."""

    def charge(self, limits: Mapping[QuotaCounter, int], n: int) -> QuotaCounter | None:
        """Add `n` to every counter in `limits`, all or none, never taking one past its limit.
        None when all were charged; otherwise a counter that refused, and none was charged."""
        ...

    def used(self, counters: Sequence[QuotaCounter]) -> Mapping[QuotaCounter, int]:
        """How many calls each of `counters` holds (0 for one never charged)."""
        ...


class QuotaBudget:
    """Monthly limits of one (vendor, app): {"*": 10_000} or per API, {"approval": 5_000}.

    A call to `api` is charged to its own quota, if it has one, and to "*", if set; an API
    with neither is not metered. Periods are calendar months in UTC ("2026-11").
    """

    def __init__(
        self,
        store: QuotaStore,
        vendor: str,
        app: str,
        monthly: Mapping[str, int],
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self.vendor, self.app = vendor, app
        self.monthly = dict(monthly)
        self._now = now

    def period(self) -> str:
        return self._now().astimezone(UTC).strftime("%Y-%m")

    def spend(self, api: str, n: int = 1) -> None:
        """Charge `n` calls, or raise QuotaExhausted and charge nothing."""
        limits = self._limits(api, self.period())
        if not limits:
            return
        refused = self._store.charge(limits, n)
        if refused is not None:
            raise QuotaExhausted(self.vendor, refused.api, limits[refused], refused.period)

    def remaining(self, api: str) -> int | None:
        """Calls left this month for `api` (the tighter of its own and "*"); None: unmetered."""
        limits = self._limits(api, self.period())
        if not limits:
            return None
        used = self._store.used(sorted(limits))
        return min(limit - used.get(counter, 0) for counter, limit in limits.items())

    def _limits(self, api: str, period: str) -> dict[QuotaCounter, int]:
        """The counters a call to `api` is charged to this period, with their limits."""
        return {
            QuotaCounter(self.vendor, self.app, name, period): self.monthly[name]
            for name in (api, ALL_APIS)
            if name in self.monthly
        }
