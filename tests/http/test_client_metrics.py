"""HttpClient counts what it does for Prometheus: every request sent, by vendor and API; every
failure, by the vendor's own code; every wait for a rate-limit slot (README, "Metrics")."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from sync_pipeline.errors import VendorRejected
from sync_pipeline.http.client import HttpClient
from sync_pipeline.http.retry import RetryPolicy
from sync_pipeline.http.session import make_session
from tests.http.conftest import Answer, ScriptedServer, classify

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05, jitter=False)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def client(url: str, redis_client: redis.Redis, app: str, **more: Any) -> HttpClient:
    return HttpClient(
        "test",
        app,
        url,
        session=make_session(connect_retries=1, connect_backoff_s=0.01),
        redis=redis_client,
        classify=classify,
        retry_policy=FAST,
        timeout=(1.0, 1.0),
        **more,
    )


def test_every_request_sent_is_counted_by_vendor_and_api_retries_included(
    server: ScriptedServer, redis_client: redis.Redis
) -> None:
    server.script("/list", Answer(status=503), Answer(status=503), Answer())
    labels = {"vendor": "test", "api": "metrics_list"}
    calls = sample("sync_vendor_calls_total", **labels)
    errors = sample("sync_vendor_errors_total", code="503", **labels)

    client(server.url, redis_client, "metrics1").request(
        "GET", "/list", api="metrics_list", idempotent=True
    )

    assert sample("sync_vendor_calls_total", **labels) == calls + 3
    assert sample("sync_vendor_errors_total", code="503", **labels) == errors + 2


def test_a_refusal_is_counted_under_the_vendors_own_code(
    server: ScriptedServer, redis_client: redis.Redis
) -> None:
    server.script("/send", Answer(body={"errcode": 60020, "errmsg": "not allowed"}))
    labels = {"vendor": "test", "api": "metrics_send", "code": "60020"}
    before = sample("sync_vendor_errors_total", **labels)

    with pytest.raises(VendorRejected):
        client(server.url, redis_client, "metrics2").request(
            "POST", "/send", api="metrics_send", idempotent=False
        )

    assert sample("sync_vendor_errors_total", **labels) == before + 1


def test_a_call_that_waits_for_a_rate_limit_slot_is_counted_with_its_seconds(
    server: ScriptedServer, redis_client: redis.Redis
) -> None:
    labels = {"vendor": "test", "api": "metrics_slow"}
    waits = sample("sync_rate_limit_waits_total", **labels)
    seconds = sample("sync_rate_limit_wait_seconds_total", **labels)
    limited = client(
        server.url, redis_client, "metrics3", limits={"metrics_slow": [(1, 1)]}, rate_limit_wait_s=5
    )

    for _ in range(2):
        limited.request("GET", "/slow", api="metrics_slow", idempotent=True)

    assert sample("sync_rate_limit_waits_total", **labels) == waits + 1
    assert sample("sync_rate_limit_wait_seconds_total", **labels) > seconds
