"""The QuotaStore the runtime hands the connectors: PostgreSQL's `quota_usage`, shared by every
process and kept whatever becomes of the store object (http/quota.py says what is charged)."""

from __future__ import annotations

import pytest

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.http.quota import QuotaCounter, QuotaStore
from sync_pipeline.processes import free_port
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.quotas import PostgresQuotaStore

MONTH = QuotaCounter("dingtalk", "app1", "*", "2026-11")
APPROVALS = QuotaCounter("dingtalk", "app1", "approval", "2026-11")


@pytest.fixture
def db(database_url: str) -> str:
    migrate(database_url)
    return database_url


def test_the_postgresql_store_is_a_quota_store(db: str) -> None:
    assert isinstance(PostgresQuotaStore(db), QuotaStore)


def test_given_charges_through_one_store_then_another_store_reads_the_same_counts(
    db: str,
) -> None:
    first = PostgresQuotaStore(db)
    assert first.charge({MONTH: 10, APPROVALS: 5}, 2) is None
    assert first.charge({MONTH: 10}, 3) is None

    second = PostgresQuotaStore(db)

    assert second.used([MONTH, APPROVALS]) == {MONTH: 5, APPROVALS: 2}


def test_given_a_limit_reached_through_one_store_then_another_store_is_refused(db: str) -> None:
    assert PostgresQuotaStore(db).charge({MONTH: 4}, 4) is None

    refused = PostgresQuotaStore(db).charge({MONTH: 4}, 1)

    assert refused == MONTH
    assert PostgresQuotaStore(db).used([MONTH]) == {MONTH: 4}


def test_given_one_counter_refuses_then_no_counter_is_charged(db: str) -> None:
    store = PostgresQuotaStore(db)
    assert store.charge({APPROVALS: 1}, 1) is None

    refused = store.charge({MONTH: 10, APPROVALS: 1}, 1)

    assert refused == APPROVALS
    assert store.used([MONTH, APPROVALS]) == {MONTH: 0, APPROVALS: 1}


def test_given_a_charge_larger_than_the_limit_then_the_first_charge_is_refused(db: str) -> None:
    store = PostgresQuotaStore(db)

    assert store.charge({MONTH: 3}, 4) == MONTH
    assert store.used([MONTH]) == {MONTH: 0}


def test_given_counters_never_charged_then_they_hold_zero(db: str) -> None:
    other_month = QuotaCounter("dingtalk", "app1", "*", "2026-12")
    PostgresQuotaStore(db).charge({MONTH: 10}, 1)

    assert PostgresQuotaStore(db).used([other_month]) == {other_month: 0}


def test_given_postgresql_unreachable_then_a_charge_says_so_without_the_password() -> None:
    store = PostgresQuotaStore(f"postgresql://u:s3cret@127.0.0.1:{free_port()}/x", 1.0)

    with pytest.raises(ServiceUnavailable) as down:
        store.charge({MONTH: 10}, 1)

    assert "s3cret" not in str(down.value)
    assert down.value.service == "PostgreSQL"
