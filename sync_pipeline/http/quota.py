"""Monthly call quotas per (vendor, app, API), counted in PostgreSQL so no worker overspends.

Per-second and per-minute caps are the rate limiter's (Redis may forget them; they refill
anyway). A monthly quota must survive restarts and a Redis flush (DESIGN.md section 1), and
when it runs out the vendor refuses until the month ends (DingTalk standard edition: 10,000
metered calls a month, error 90020), so each call is charged here *before* it is sent, with
one atomic upsert whose WHERE clause refuses to pass the limit. A run that would exceed it
stops with `QuotaExhausted` instead of burning retries (DESIGN.md section 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from sync_pipeline.errors import QuotaExhausted, ServiceUnavailable
from sync_pipeline.settings import mask_url
from sync_pipeline.state.db import HINT, _reason, engine_for
from sync_pipeline.state.schema import quota_usage

ALL_APIS = "*"  # a quota every call counts against, whatever its API


def utc_now() -> datetime:
    return datetime.now(UTC)


class QuotaBudget:
    """Monthly limits of one (vendor, app): {"*": 10_000} or per API, {"approval": 5_000}.

    A call to `api` is charged to its own quota, if it has one, and to "*", if set; an API
    with neither is not metered. Periods are calendar months in UTC ("2026-11").
    """

    def __init__(
        self,
        database_url: str,
        vendor: str,
        app: str,
        monthly: Mapping[str, int],
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self._engine = engine_for(database_url)
        self._where = mask_url(database_url)
        self.vendor, self.app = vendor, app
        self.monthly = dict(monthly)
        self._now = now

    def period(self) -> str:
        return self._now().astimezone(UTC).strftime("%Y-%m")

    def spend(self, api: str, n: int = 1) -> None:
        """Charge `n` calls, or raise QuotaExhausted and charge nothing."""
        period = self.period()
        # Sorted, so two workers charging the same rows lock them in the same order.
        charged = sorted({name for name in (api, ALL_APIS) if name in self.monthly})
        try:
            with self._engine.begin() as conn:
                for name in charged:
                    limit = self.monthly[name]
                    # n > limit first: a first insert of the period has no WHERE to stop it.
                    if (
                        n > limit
                        or conn.execute(self._charge(name, period, n, limit)).first() is None
                    ):
                        raise QuotaExhausted(self.vendor, name, limit, period)  # rolls back
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None

    def remaining(self, api: str) -> int | None:
        """Calls left this month for `api` (the tighter of its own and "*"); None: unmetered."""
        names = [name for name in (api, ALL_APIS) if name in self.monthly]
        if not names:
            return None
        used = self._used(names, self.period())
        return min(self.monthly[name] - used.get(name, 0) for name in names)

    def _charge(self, api: str, period: str, n: int, limit: int) -> sa.Executable:
        """INSERT ... ON CONFLICT DO UPDATE ... WHERE used + n <= limit RETURNING used."""
        stmt = insert(quota_usage).values(
            vendor=self.vendor, app=self.app, api=api, period=period, used=n
        )
        total = quota_usage.c.used + stmt.excluded.used
        return stmt.on_conflict_do_update(
            index_elements=[
                quota_usage.c.vendor,
                quota_usage.c.app,
                quota_usage.c.api,
                quota_usage.c.period,
            ],
            set_={"used": total},
            where=total <= limit,
        ).returning(quota_usage.c.used)

    def _used(self, apis: list[str], period: str) -> dict[str, int]:
        query = sa.select(quota_usage.c.api, quota_usage.c.used).where(
            quota_usage.c.vendor == self.vendor,
            quota_usage.c.app == self.app,
            quota_usage.c.period == period,
            quota_usage.c.api.in_(apis),
        )
        try:
            with self._engine.connect() as conn:
                return {str(api): int(used) for api, used in conn.execute(query)}
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None
