"""Access tokens cached in Redis, shared by every worker of every host.

Vendors throttle their token endpoints (WeCom `gettoken`) and some hand out a new token per
fetch, so a per-process cache would fetch once per prefork child and churn tokens. Here one
worker fetches under a short Redis lock while the others wait briefly and read what it stored.
A token is refreshed `refresh_margin_s` before it expires, by one worker, while the rest keep
using the still-valid one. What a process read from Redis serves its next calls for at most
`memo_s` (never past the refresh margin), so a busy worker does not ask Redis for the token on
every vendor call; a token the vendor rejects is dropped from the memo with the cache entry,
and a token another worker dropped fails one call here at most, which the client's refresh
and single retry absorb. Tokens are secrets: never logged, never in exception args, never
in PostgreSQL; Redis is ours and only caches them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
from redis.lock import Lock

from sync_pipeline.errors import SyncError, VendorUnavailable

log = logging.getLogger(__name__)

# KEYS[1] = cache hash. Returns {token, remaining ms, refresh margin ms} or nil.
_READ = """
local token = redis.call('HGET', KEYS[1], 'token')
if not token then return nil end
local margin = redis.call('HGET', KEYS[1], 'margin_ms') or '0'
return {token, redis.call('PTTL', KEYS[1]), margin}
"""

# KEYS[1] = cache hash, ARGV[1] = token. Deletes only if that token is still the cached one.
_COMPARE_AND_DELETE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TokenProvider(Protocol):
    """What `HttpClient` needs of a token source."""

    def get(self) -> str:
        """A token valid for at least a little while yet."""
        ...

    def invalidate(self, token: str) -> bool:
        """Drop `token` if it is still the current one; True if it was dropped."""
        ...


class RefreshTokenStore(Protocol):
    """Where a connector's rotating OAuth2 refresh token lives between fetches: durable (the
    runtime's PostgreSQL, state/refresh_tokens.py), because a provider that rotates it
    accepts only the newest, so a lost one strands the connector. A store that cannot be
    reached raises ServiceUnavailable; a value comes back exactly as it was put."""

    def get(self, connector: str, seal: str) -> str | None:
        """The newest refresh token put for `connector` (None: none yet). `seal` is the
        secret it was put with, which the store may keep it sealed under."""
        ...

    def put(self, connector: str, token: str, seal: str) -> None:
        """Keep `token` as `connector`'s newest, committed before this returns."""
        ...


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TokenCache:
    """One app's access token, cached in Redis under `key`.

    `fetch` calls the vendor's token endpoint and returns (token, seconds it stays valid).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        key: str,
        fetch: Callable[[], tuple[str, float]],
        refresh_margin_s: float = 300.0,
        *,
        vendor: str = "token",
        lock_timeout_s: float = 15.0,
        wait_s: float = 20.0,
        memo_s: float = 5.0,
    ) -> None:
        self._redis = redis_client
        self.key = key
        self._fetch = fetch
        self.refresh_margin_s = refresh_margin_s
        self.vendor = vendor
        self.lock_timeout_s = lock_timeout_s  # longer than one fetch, with its HTTP timeout
        self.wait_s = wait_s  # how long a loser waits for the winner's fetch
        self.memo_s = memo_s  # how long this process reuses a token it read, 0 for never
        self._memo: tuple[str, float] | None = None  # (token, monotonic time it serves until)
        self._read = redis_client.register_script(_READ)
        self._compare_and_delete = redis_client.register_script(_COMPARE_AND_DELETE)

    def get(self) -> str:
        """The cached token, refreshed first when it is missing or about to expire."""
        memo = self._memo
        if memo is not None and time.monotonic() < memo[1]:
            return memo[0]
        cached = self._cached()
        if cached is not None:
            token, fresh = cached
            if fresh:
                return token
            # Still valid, only due for refresh: one worker refreshes, the rest go on.
            lock = self._lock()
            if not lock.acquire(blocking=False):
                return token
            try:
                return self._refresh_if_due()
            except SyncError as exc:
                # The token endpoint failing early is no reason to fail a call it still serves.
                log.warning(
                    "early refresh of %s failed (%s); using the current token", self.key, exc
                )
                return token
            finally:
                self._release(lock)
        lock = self._lock()
        if not lock.acquire(blocking=True, blocking_timeout=self.wait_s):
            raise VendorUnavailable(self.vendor, "token_busy", "another worker's fetch hangs")
        try:
            return self._refresh_if_due()
        finally:
            self._release(lock)

    def invalidate(self, token: str) -> bool:
        """Drop `token` only if still cached: a slow worker must not drop a fresh one."""
        memo = self._memo
        if memo is not None and memo[0] == token:
            self._memo = None
        return bool(self._compare_and_delete(keys=[self.key], args=[token]))

    def _cached(self) -> tuple[str, bool] | None:
        """(token, fresh) from Redis; fresh means not yet inside the refresh margin. A fresh
        token is remembered for memo_s, or until its refresh margin, whichever comes first."""
        found = self._read(keys=[self.key])
        if not found:
            return None
        token, remaining_ms, margin_ms = _text(found[0]), int(found[1]), int(_text(found[2]))
        if remaining_ms == -2:  # expired between HGET and PTTL
            return None
        fresh = remaining_ms < 0 or remaining_ms > margin_ms
        if fresh and self.memo_s > 0:
            until_margin_s = self.memo_s if remaining_ms < 0 else (remaining_ms - margin_ms) / 1000
            self._memo = (token, time.monotonic() + min(self.memo_s, until_margin_s))
        return token, fresh

    def _refresh_if_due(self) -> str:
        """Under the lock: re-read (the winner before us may have stored one), else fetch."""
        cached = self._cached()
        if cached is not None and cached[1]:
            return cached[0]
        token, ttl_s = self._fetch()
        ttl_ms = max(1000, int(ttl_s * 1000))
        # A short-lived token still gets half its life before refresh, not none of it.
        margin_ms = min(int(self.refresh_margin_s * 1000), ttl_ms // 2)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.hset(self.key, mapping={"token": token, "margin_ms": margin_ms})
            pipe.pexpire(self.key, ttl_ms)
            pipe.execute()
        log.info("fetched a new access token for %s, valid %d s", self.key, ttl_ms // 1000)
        return token

    def _lock(self) -> Lock:
        return Lock(
            self._redis,
            f"{self.key}:lock",
            timeout=self.lock_timeout_s,
            sleep=0.05,
            thread_local=False,
        )

    @staticmethod
    def _release(lock: Lock) -> None:
        """Release, tolerating a lock that expired while a slow fetch ran."""
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("token lock %s expired before release", lock.name)
