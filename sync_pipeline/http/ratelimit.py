"""Rate limits shared by all workers, in Redis, per (vendor, app, API).

Vendors count calls per app and API across all our processes (DingTalk 20 QPS per app per API,
WeCom 600 calls/min for approval data, Feishu QPS *and* QPM per API), so the limiter must be
shared, and one key may carry several windows at once. The moving windows come from `limits`
(its Redis storage runs each check-and-take as one Lua script). A caller sleeps the computed
wait instead of spinning, and is told `RateLimited` when the wait is longer than it allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from sync_pipeline.errors import RateLimited

log = logging.getLogger(__name__)

DEFAULT_API = "*"  # the limits of an API not listed by name
Window = tuple[int, int]  # (calls, per seconds)


@dataclass(frozen=True)
class RateLimitKey:
    vendor: str
    app: str
    api: str

    @property
    def identifiers(self) -> tuple[str, str, str]:
        return (self.vendor, self.app, self.api)


class RateLimiter:
    """Windows per API, e.g. {"approval": [(20, 1), (600, 60)], "*": [(20, 1)]}.

    An API not listed takes the "*" windows in a bucket of its own; without "*" it is
    unlimited. Taking a slot in each window is not one transaction: when a later window is
    full, the slots already taken stay spent, which only ever slows us down, never overspends.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        windows: Mapping[str, Sequence[Window]],
        *,
        key_prefix: str = "ratelimit",
    ) -> None:
        storage = RedisStorage(
            "redis://", connection_pool=redis_client.connection_pool, key_prefix=key_prefix
        )
        self._strategy = MovingWindowRateLimiter(storage)
        self._items = {api: [_item(calls, per) for calls, per in ws] for api, ws in windows.items()}

    def acquire(self, key: RateLimitKey, deadline_s: float) -> float:
        """Wait for a slot in every window of `key`; returns the seconds waited (0.0 when a
        slot was free at once).

        Raises RateLimited(vendor, "local", retry_after=wait) instead of waiting longer than
        `deadline_s`, so a task can be retried later rather than hold a worker.
        """
        items = self._items.get(key.api, self._items.get(DEFAULT_API, []))
        started = time.monotonic()
        slept = False
        while True:
            wait = self._wait_s(items, key)
            if wait <= 0 and all(self._strategy.hit(i, *key.identifiers) for i in items):
                return time.monotonic() - started if slept else 0.0
            wait = max(wait, 0.001)  # lost a race for the last slot: look again shortly
            waited = time.monotonic() - started
            if waited + wait > deadline_s:
                raise RateLimited(key.vendor, "local", key.api, retry_after=round(wait, 3))
            log.debug("rate limit %s/%s/%s: waiting %.3f s", *key.identifiers, wait)
            time.sleep(wait)
            slept = True

    def _wait_s(self, items: Sequence[RateLimitItem], key: RateLimitKey) -> float:
        """Seconds until every window has a free slot, 0 if all have one now."""
        wait = 0.0
        for item in items:
            stats = self._strategy.get_window_stats(item, *key.identifiers)
            if stats.remaining <= 0:
                wait = max(wait, stats.reset_time - time.time())
        return wait


def _item(calls: int, per_s: int) -> RateLimitItem:
    if calls < 1 or per_s < 1:
        raise ValueError(f"a rate limit needs calls >= 1 and seconds >= 1, got {calls}/{per_s}")
    return RateLimitItemPerSecond(calls, per_s)
