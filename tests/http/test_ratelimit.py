"""Rate limits shared by every worker through Redis, several windows per key."""

from __future__ import annotations

import threading

import pytest
import redis

from sync_pipeline.errors import RateLimited
from sync_pipeline.http.client import HttpClient
from sync_pipeline.http.ratelimit import RateLimiter, RateLimitKey
from sync_pipeline.http.session import make_session
from tests.http.conftest import ScriptedServer, classify

KEY = RateLimitKey("dingtalk", "app1", "listids")


def test_given_two_clients_on_one_redis_then_calls_never_exceed_the_window(
    server: ScriptedServer, redis_url: str
) -> None:
    limit = 5

    def client() -> HttpClient:
        return HttpClient(
            "dingtalk",
            "app1",
            server.url,
            session=make_session(),
            redis=redis.Redis.from_url(redis_url),
            classify=classify,
            limits={"listids": [(limit, 1)]},
        )

    def send_six(http: HttpClient) -> None:
        for _ in range(6):
            http.request("GET", "/listids", api="listids", idempotent=True)

    threads = [threading.Thread(target=send_six, args=(client(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    arrivals = sorted(call.at for call in server.calls("/listids"))
    assert len(arrivals) == 12
    # Any limit + 1 consecutive arrivals span at least the window, less delivery jitter;
    # without the shared limiter all twelve arrive within milliseconds.
    spans = [arrivals[i + limit] - arrivals[i] for i in range(len(arrivals) - limit)]
    assert min(spans) >= 0.9


def test_given_several_windows_then_the_tightest_one_decides(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, {"listids": [(10, 1), (3, 2)]})
    for _ in range(3):
        limiter.acquire(KEY, deadline_s=0)

    with pytest.raises(RateLimited) as refused:
        limiter.acquire(KEY, deadline_s=0)

    assert refused.value.code == "local"
    assert refused.value.retry_after is not None
    assert 1.0 < refused.value.retry_after <= 2.0  # the 2-second window, not the 1-second one


def test_given_a_full_window_then_acquire_waits_for_the_slot(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, {"*": [(2, 1)]})
    limiter.acquire(KEY, deadline_s=0)
    limiter.acquire(KEY, deadline_s=0)

    waited = limiter.acquire(KEY, deadline_s=5)

    assert waited > 0.5  # slept until the first slot left the window, then went on


def test_given_unlisted_apis_then_each_has_its_own_bucket_of_the_default_windows(
    redis_client: redis.Redis,
) -> None:
    limiter = RateLimiter(redis_client, {"*": [(1, 60)]})
    limiter.acquire(KEY, deadline_s=0)

    limiter.acquire(RateLimitKey("dingtalk", "app1", "attendance"), deadline_s=0)
    limiter.acquire(RateLimitKey("dingtalk", "app2", "listids"), deadline_s=0)
    with pytest.raises(RateLimited):
        limiter.acquire(KEY, deadline_s=0)


def test_given_a_client_decoding_responses_then_limits_still_apply(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url, decode_responses=True), {"*": [(1, 60)]})
    limiter.acquire(KEY, deadline_s=0)

    with pytest.raises(RateLimited):
        limiter.acquire(KEY, deadline_s=0)


def test_given_no_windows_then_calls_are_unlimited(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, {"other": [(1, 60)]})

    waited = [limiter.acquire(KEY, deadline_s=0) for _ in range(50)]  # any wait would raise

    assert max(waited) < 0.5  # no call slept for a slot
