"""Monthly quota counters in PostgreSQL: the QuotaStore the runtime hands the connectors.

A charge is one transaction of atomic upserts, one per counter, each of whose WHERE clause
refuses to pass the limit: a refused counter rolls the whole charge back, so concurrent
workers never overspend and a refusal charges nothing (http/quota.py says what is charged).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.http.quota import QuotaCounter
from sync_pipeline.settings import mask_url
from sync_pipeline.state.db import HINT, _reason, engine_for
from sync_pipeline.state.schema import quota_usage


class PostgresQuotaStore:
    """Counters in the `quota_usage` table, shared by every process that uses the database."""

    def __init__(self, database_url: str, connect_timeout_s: float = 3.0) -> None:
        self._engine = engine_for(database_url, connect_timeout_s)  # the process's own pool
        self._where = mask_url(database_url)

    def charge(self, limits: Mapping[QuotaCounter, int], n: int) -> QuotaCounter | None:
        try:
            with self._engine.connect() as conn:
                # Sorted, so two workers charging the same rows lock them in the same order.
                for counter in sorted(limits):
                    limit = limits[counter]
                    # n > limit first: a first insert of the period has no WHERE to stop it.
                    if n > limit or conn.execute(_charge(counter, n, limit)).first() is None:
                        conn.rollback()
                        return counter
                conn.commit()
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None
        return None

    def used(self, counters: Sequence[QuotaCounter]) -> dict[QuotaCounter, int]:
        keys = {(c.vendor, c.app, c.api, c.period): c for c in counters}
        query = sa.select(
            quota_usage.c.vendor,
            quota_usage.c.app,
            quota_usage.c.api,
            quota_usage.c.period,
            quota_usage.c.used,
        ).where(sa.tuple_(*_KEY).in_(list(keys)))
        try:
            with self._engine.connect() as conn:
                found = {(v, a, api, p): int(n) for v, a, api, p, n in conn.execute(query)}
        except sa.exc.OperationalError as exc:
            raise ServiceUnavailable("PostgreSQL", self._where, _reason(exc), HINT) from None
        return {counter: found.get(key, 0) for key, counter in keys.items()}


def most_used(conn: Connection, vendor: str, period: str) -> dict[str, int]:
    """Calls charged this `period` per API ("*" for all APIs together) by the busiest app of
    `vendor`: what the quota alert compares with the configured limits."""
    rows = conn.execute(
        sa.select(quota_usage.c.api, sa.func.max(quota_usage.c.used))
        .where(quota_usage.c.vendor == vendor, quota_usage.c.period == period)
        .group_by(quota_usage.c.api)
    )
    return {str(api): int(used) for api, used in rows}


_KEY = (quota_usage.c.vendor, quota_usage.c.app, quota_usage.c.api, quota_usage.c.period)


def _charge(counter: QuotaCounter, n: int, limit: int) -> sa.Executable:
    """INSERT ... ON CONFLICT DO UPDATE ... WHERE used + n <= limit RETURNING used."""
    stmt = insert(quota_usage).values(
        vendor=counter.vendor, app=counter.app, api=counter.api, period=counter.period, used=n
    )
    total = quota_usage.c.used + stmt.excluded.used
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY), set_={"used": total}, where=total <= limit
    ).returning(quota_usage.c.used)
