"""Access tokens shared through Redis: one fetch for many workers, refresh ahead, safe drop."""

from __future__ import annotations

import threading
import time

import redis

from sync_pipeline.errors import SyncError, VendorUnavailable
from sync_pipeline.http.tokens import TokenCache
from tests.conftest import wait_for


class CountingFetch:
    """A token endpoint: each fetch hands out a new token and is counted."""

    def __init__(self, ttl_s: float = 7200.0, slow_s: float = 0.0) -> None:
        self.ttl_s, self.slow_s = ttl_s, slow_s
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, float]:
        time.sleep(self.slow_s)
        with self._lock:
            self.count += 1
            return f"tok-{self.count}", self.ttl_s


def test_given_five_workers_at_once_when_no_token_is_cached_then_one_fetch(
    redis_url: str,
) -> None:
    fetch = CountingFetch(slow_s=0.3)
    start = threading.Barrier(5)
    tokens: list[str] = []

    def worker() -> None:
        cache = TokenCache(redis.Redis.from_url(redis_url), "token:wecom:app", fetch)
        start.wait()
        tokens.append(cache.get())

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert fetch.count == 1
    assert tokens == ["tok-1"] * 5


def test_given_a_token_near_expiry_then_it_is_refreshed_before_it_expires(
    redis_client: redis.Redis,
) -> None:
    seen_at_refresh: list[bytes | str | None] = []
    inner = CountingFetch(ttl_s=2.0)

    def fetch() -> tuple[str, float]:
        seen_at_refresh.append(redis_client.hget("token:k", "token"))
        return inner()

    cache = TokenCache(redis_client, "token:k", fetch, refresh_margin_s=1.0)
    assert cache.get() == "tok-1"

    wait_for(lambda: cache.get() == "tok-2", deadline_s=5, interval_s=0.05, what="refresh")

    assert seen_at_refresh == [None, b"tok-1"]  # the old token was still cached and valid


def test_given_a_fresh_token_then_get_does_not_fetch(redis_client: redis.Redis) -> None:
    fetch = CountingFetch()
    cache = TokenCache(redis_client, "token:k", fetch)

    assert [cache.get() for _ in range(3)] == ["tok-1"] * 3
    assert fetch.count == 1


def test_invalidate_drops_only_the_token_still_cached(redis_client: redis.Redis) -> None:
    fetch = CountingFetch()
    cache = TokenCache(redis_client, "token:k", fetch)
    cache.get()

    assert cache.invalidate("tok-from-a-slow-worker") is False
    assert cache.get() == "tok-1"
    assert cache.invalidate("tok-1") is True
    assert cache.get() == "tok-2"


def test_given_a_client_decoding_responses_then_tokens_still_work(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    cache = TokenCache(client, "token:k", CountingFetch())

    assert cache.get() == "tok-1"
    assert cache.invalidate("tok-1") is True


def test_given_the_token_endpoint_fails_during_an_early_refresh_then_the_valid_token_serves(
    redis_client: redis.Redis,
) -> None:
    answers: list[tuple[str, float] | SyncError] = [
        ("tok-1", 2.0),
        VendorUnavailable("wecom", "503"),
        ("tok-2", 2.0),
    ]

    def fetch() -> tuple[str, float]:
        answer = answers.pop(0)
        if isinstance(answer, SyncError):
            raise answer
        return answer

    cache = TokenCache(redis_client, "token:k", fetch, refresh_margin_s=1.0)
    assert cache.get() == "tok-1"
    wait_for(lambda: redis_client.pttl("token:k") <= 1000, deadline_s=5, interval_s=0.05)

    assert cache.get() == "tok-1"  # the refresh failed; the token is still valid
    assert cache.get() == "tok-2"  # the next call tries again


def test_given_a_token_read_once_then_the_next_calls_reuse_it_without_redis(
    redis_client: redis.Redis,
) -> None:
    fetch = CountingFetch()
    cache = TokenCache(redis_client, "token:k", fetch, memo_s=60.0)
    cache.get()
    first = cache.get()  # read from Redis, and remembered
    redis_client.delete("token:k")

    again = cache.get()

    assert again == first == "tok-1"
    assert fetch.count == 1


def test_given_a_rejected_token_then_the_memo_forgets_it_with_the_cache(
    redis_client: redis.Redis,
) -> None:
    fetch = CountingFetch()
    cache = TokenCache(redis_client, "token:k", fetch, memo_s=60.0)
    cache.get()
    rejected = cache.get()

    cache.invalidate(rejected)

    assert cache.get() == "tok-2"
    assert fetch.count == 2


def test_given_memo_zero_then_every_call_reads_redis(redis_client: redis.Redis) -> None:
    fetch = CountingFetch()
    cache = TokenCache(redis_client, "token:k", fetch, memo_s=0.0)
    cache.get()
    redis_client.delete("token:k")

    assert cache.get() == "tok-2"
