"""Monthly quotas counted in PostgreSQL (the runtime's QuotaStore): a run stops before it
would overspend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis
import sqlalchemy as sa

from sync_pipeline.errors import QuotaExhausted
from sync_pipeline.http.client import HttpClient
from sync_pipeline.http.quota import QuotaBudget
from sync_pipeline.http.session import make_session
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.quotas import PostgresQuotaStore
from sync_pipeline.state.schema import quota_usage
from tests.http.conftest import ScriptedServer, classify


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


def used(database_url: str) -> dict[tuple[str, str], int]:
    query = sa.select(quota_usage.c.api, quota_usage.c.period, quota_usage.c.used)
    with engine_for(database_url).connect() as conn:
        return {(api, period): int(n) for api, period, n in conn.execute(query)}


def test_given_a_spent_quota_then_spend_raises_before_exceeding_it(db: str) -> None:
    budget = QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {"*": 3})
    for _ in range(3):
        budget.spend("listids")

    with pytest.raises(QuotaExhausted) as stopped:
        budget.spend("listids")

    assert (stopped.value.api, stopped.value.limit) == ("*", 3)
    assert stopped.value.retryable is False
    assert budget.remaining("listids") == 0
    assert used(db) == {("*", budget.period()): 3}


def test_given_concurrent_spenders_then_they_never_overspend(db: str) -> None:
    budget = QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {"*": 100})
    granted: list[int] = []

    def spender() -> None:
        for _ in range(25):
            try:
                budget.spend("listids")
            except QuotaExhausted:
                continue
            granted.append(1)

    threads = [threading.Thread(target=spender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(granted) == 100
    assert used(db) == {("*", budget.period()): 100}


def test_given_an_api_quota_and_a_shared_one_then_a_refusal_charges_neither(db: str) -> None:
    budget = QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {"*": 10, "attendance": 2})
    budget.spend("attendance")
    budget.spend("listids", n=3)

    with pytest.raises(QuotaExhausted) as stopped:
        budget.spend("attendance", n=2)  # "*" has room for 2 more; "attendance" has 1

    assert stopped.value.api == "attendance"
    period = budget.period()
    assert used(db) == {("*", period): 4, ("attendance", period): 1}  # "*" was rolled back
    assert budget.remaining("attendance") == 1
    assert budget.remaining("listids") == 6  # "*" meters every API
    assert QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {}).remaining("listids") is None


def test_given_a_new_month_then_the_count_starts_again(db: str) -> None:
    now = [datetime(2026, 11, 30, 23, 59, tzinfo=UTC)]
    budget = QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {"*": 1}, now=lambda: now[0])
    budget.spend("listids")
    with pytest.raises(QuotaExhausted):
        budget.spend("listids")

    now[0] = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    budget.spend("listids")

    assert used(db) == {("*", "2026-11"): 1, ("*", "2026-12"): 1}


def test_quota_exhausted_survives_a_celery_round_trip() -> None:
    error = QuotaExhausted("dingtalk", "*", 10_000, "2026-11")

    rebuilt = type(error)(*error.args)

    assert str(rebuilt) == str(error)
    assert (rebuilt.vendor, rebuilt.api, rebuilt.limit, rebuilt.period) == (
        "dingtalk",
        "*",
        10_000,
        "2026-11",
    )


def test_given_a_client_with_a_quota_then_it_stops_before_the_call_that_would_exceed(
    db: str, server: ScriptedServer, redis_client: redis.Redis
) -> None:
    http = HttpClient(
        "dingtalk",
        "app1",
        server.url,
        session=make_session(),
        redis=redis_client,
        classify=classify,
        quota=QuotaBudget(PostgresQuotaStore(db), "dingtalk", "app1", {"*": 2}),
    )
    http.request("GET", "/listids", api="listids", idempotent=True)
    http.request("GET", "/listids", api="listids", idempotent=True)

    with pytest.raises(QuotaExhausted):
        http.request("GET", "/listids", api="listids", idempotent=True)

    assert len(server.calls("/listids")) == 2
