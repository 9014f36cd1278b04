"""The circuit breaker per (vendor, app), shared by all workers through Redis."""

from __future__ import annotations

import pytest
import redis

from sync_pipeline.errors import VendorUnavailable
from sync_pipeline.http.breaker import BreakerState, CircuitBreaker, circuits_open
from sync_pipeline.http.client import HttpClient
from sync_pipeline.http.retry import RetryPolicy
from sync_pipeline.http.session import make_session
from tests.conftest import wait_for
from tests.http.conftest import Answer, ScriptedServer, classify


def breaker(client: redis.Redis, reset_s: float = 30.0) -> CircuitBreaker:
    return CircuitBreaker(client, "wecom", "app1", failure_threshold=3, reset_timeout_s=reset_s)


def test_given_threshold_consecutive_failures_then_it_opens(redis_client: redis.Redis) -> None:
    worker_a, worker_b = breaker(redis_client), breaker(redis_client)
    worker_a.record_failure()
    worker_b.record_failure()
    assert worker_a.state() == BreakerState.CLOSED

    assert worker_b.record_failure() is True

    with pytest.raises(VendorUnavailable) as refused:
        worker_a.before_call()
    assert refused.value.code == "circuit_open"
    assert refused.value.retry_after is not None
    assert 0 < refused.value.retry_after <= 30.0


def test_given_a_success_between_failures_then_it_stays_closed(
    redis_client: redis.Redis,
) -> None:
    cb = breaker(redis_client)
    for outcome in ("fail", "fail", "ok", "fail", "fail"):
        cb.record_failure() if outcome == "fail" else cb.record_success()

    assert cb.state() == BreakerState.CLOSED
    cb.before_call()


def test_given_a_clean_breaker_then_a_call_has_nothing_to_reset(
    redis_client: redis.Redis,
) -> None:
    cb = breaker(redis_client)

    assert cb.before_call() is False


def test_given_a_clean_check_then_another_workers_open_circuit_is_seen_shortly_after(
    redis_client: redis.Redis,
) -> None:
    worker_a = CircuitBreaker(
        redis_client, "wecom", "app1", failure_threshold=1, reset_timeout_s=30, clean_for_s=0.2
    )
    worker_b = breaker(redis_client)
    worker_a.before_call()  # clean: trusted for a moment
    for _ in range(3):
        worker_b.record_failure()

    def refused() -> bool:
        try:
            worker_a.before_call()
        except VendorUnavailable:
            return True
        return False

    assert wait_for(refused, deadline_s=5, interval_s=0.05, what="the open circuit seen")


def test_given_its_own_failure_then_a_worker_asks_redis_again(redis_client: redis.Redis) -> None:
    cb = CircuitBreaker(
        redis_client, "wecom", "app1", failure_threshold=1, reset_timeout_s=30, clean_for_s=60
    )
    cb.before_call()

    cb.record_failure()

    with pytest.raises(VendorUnavailable):
        cb.before_call()


def test_given_a_failure_then_the_next_call_resets_it_on_success(
    redis_client: redis.Redis,
) -> None:
    cb = breaker(redis_client)
    cb.record_failure()
    cb.record_failure()

    held = cb.before_call()
    cb.record_success(held)

    assert held is True
    cb.record_failure()
    cb.record_failure()
    assert cb.state() == BreakerState.CLOSED  # the count started again from nought


def test_given_the_reset_timeout_passed_then_one_probe_passes_and_decides(
    redis_client: redis.Redis, redis_url: str
) -> None:
    cb = breaker(redis_client, reset_s=0.5)
    other_worker = breaker(redis.Redis.from_url(redis_url, decode_responses=True), reset_s=0.5)
    for _ in range(3):
        cb.record_failure()
    wait_for(lambda: cb.state() == BreakerState.HALF_OPEN, deadline_s=5, interval_s=0.05)

    cb.before_call()  # the probe
    with pytest.raises(VendorUnavailable):
        other_worker.before_call()  # only one probe at a time
    cb.record_failure()
    assert cb.state() == BreakerState.OPEN  # a failed probe opens it again

    wait_for(lambda: cb.state() == BreakerState.HALF_OPEN, deadline_s=5, interval_s=0.05)
    other_worker.before_call()
    other_worker.record_success()
    assert cb.state() == BreakerState.CLOSED


def test_given_a_down_vendor_then_the_client_stops_calling_it_and_probes_later(
    server: ScriptedServer, redis_client: redis.Redis
) -> None:
    server.script("/list", Answer(status=503, body=b"<html>busy</html>"))
    http = HttpClient(
        "wecom",
        "app1",
        server.url,
        session=make_session(),
        redis=redis_client,
        classify=classify,
        breaker=breaker(redis_client, reset_s=0.5),
        retry_policy=RetryPolicy(max_attempts=1),
    )
    codes = []
    for _ in range(6):
        with pytest.raises(VendorUnavailable) as failed:
            http.request("GET", "/list", api="list", idempotent=True)
        codes.append(failed.value.code)

    assert codes == ["503", "503", "503", "circuit_open", "circuit_open", "circuit_open"]
    assert len(server.calls("/list")) == 3

    server.script("/list", Answer())
    wait_for(lambda: http.breaker.state() == BreakerState.HALF_OPEN, deadline_s=5)
    status, _, _ = http.request("GET", "/list", api="list", idempotent=True)

    assert status == 200
    assert http.breaker.state() == BreakerState.CLOSED
    assert len(server.calls("/list")) == 4


def test_given_breakers_of_a_vendor_then_the_open_ones_are_counted_until_a_success(
    redis_client: redis.Redis,
) -> None:
    """What the vendor_down alert reads (pipeline/alerts.py): open or probing counts, failures
    below the threshold do not, and another vendor's breaker is not this one's."""
    opened, counting = breaker(redis_client), CircuitBreaker(redis_client, "wecom", "app2")
    other = CircuitBreaker(redis_client, "feishu", "app1", failure_threshold=1)
    for _ in range(3):
        opened.record_failure()
    counting.record_failure()
    other.record_failure()

    assert circuits_open(redis_client, "wecom") == 1

    opened.record_success()
    assert circuits_open(redis_client, "wecom") == 0
