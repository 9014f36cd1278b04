"""A circuit breaker per (vendor, app), its state shared by all workers in Redis.

When a vendor is down, twenty workers retrying on their own would hammer it and each burn its
retries; one shared breaker opens after `failure_threshold` consecutive failures seen by any
worker, fails calls fast while open, and after `reset_timeout_s` lets exactly one probe call
through (half-open): its success closes the circuit, its failure opens it again.

Why not pybreaker's CircuitRedisStorage: it reads state with `bytes.decode` (breaks on clients
with `decode_responses=True`), stores the opening time in whole seconds from each host's clock,
and lets every worker probe at once when half-open. Here each transition is one Lua script
timed by the Redis server's clock.

A busy worker makes many calls a second, and a breaker that held nothing (no failure counted)
a moment ago almost always holds nothing now: such a check is trusted for `clean_for_s` (1 s)
without asking Redis again. So a circuit another worker opens is seen here that much later at
most; this process's own failure is counted in Redis at once and ends the trust.
"""

from __future__ import annotations

import time
from enum import StrEnum

import redis

from sync_pipeline.errors import VendorUnavailable

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
"""

# ARGV[1] = probe timeout ms. Returns {1 closed | 2 probe | 0 refused, ms until a try may pass,
# 1 if the breaker holds any state (failures counted, open, probing), else 0}.
_BEFORE_CALL = (
    _NOW_MS
    + """
if open_until == 0 then return {1, 0, redis.call('EXISTS', KEYS[1])} end
if now < open_until then return {0, open_until - now} end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return {0, probe_until - now} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
return {2, 0}
"""
)

# ARGV = threshold, reset timeout ms, key lifetime ms. Returns 1 if this failure opened it.
_RECORD_FAILURE = (
    _NOW_MS
    + """
if open_until > now then return 0 end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if open_until > 0 or failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[2]))
  redis.call('HDEL', KEYS[1], 'probe_until')
  return 1
end
return 0
"""
)

_STATE = (
    _NOW_MS
    + """
if open_until == 0 then return 0 end
if now < open_until then return 1 end
return 2
"""
)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one (vendor, app); any answered call resets the count."""

    def __init__(
        self,
        redis_client: redis.Redis,
        vendor: str,
        app: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        probe_timeout_s: float | None = None,
        key_prefix: str = "breaker",
        clean_for_s: float = 1.0,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._redis = redis_client
        self.vendor, self.app = vendor, app
        self.key = f"{key_prefix}:{vendor}:{app}"
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        # A probe whose worker died must not keep the circuit half-open for ever.
        self.probe_timeout_s = reset_timeout_s if probe_timeout_s is None else probe_timeout_s
        self.clean_for_s = clean_for_s
        self._clean_until = 0.0  # monotonic time until which a clean check is trusted
        self._before_call = redis_client.register_script(_BEFORE_CALL)
        self._record_failure = redis_client.register_script(_RECORD_FAILURE)
        self._state = redis_client.register_script(_STATE)

    def before_call(self) -> bool:
        """Let the call through, or raise VendorUnavailable("circuit_open") while open.

        Returns whether the breaker held any state (counted failures, a probe): False means
        a success of this call has nothing to reset (`record_success(held=False)`).
        """
        if time.monotonic() < self._clean_until:
            return False
        verdict, wait_ms, *held = self._before_call(
            keys=[self.key], args=[_ms(self.probe_timeout_s)]
        )
        if int(verdict) == 0:
            raise VendorUnavailable(
                self.vendor,
                "circuit_open",
                f"app {self.app}: calls paused after repeated failures",
                retry_after=int(wait_ms) / 1000,
            )
        holds = int(verdict) != 1 or bool(held and int(held[0]))
        if not holds:
            self._clean_until = time.monotonic() + self.clean_for_s
        return holds

    def record_success(self, held: bool = True) -> None:
        """The vendor answered: close the circuit and forget past failures.

        `held` False (before_call saw a clean breaker) skips the round trip: there is nothing
        to forget, unless another worker's call failed meanwhile, whose failure then still
        counts, as it would had that call ended after this one.
        """
        if held:
            self._redis.delete(self.key)

    def record_failure(self) -> bool:
        """The vendor did not answer usefully; True if this failure opened the circuit."""
        self._clean_until = 0.0
        keep_ms = _ms(self.reset_timeout_s + self.probe_timeout_s) + 3_600_000
        opened = self._record_failure(
            keys=[self.key],
            args=[self.failure_threshold, _ms(self.reset_timeout_s), keep_ms],
        )
        return bool(opened)

    def state(self) -> BreakerState:
        """For status output; HALF_OPEN means the next call may probe."""
        code = int(self._state(keys=[self.key]))
        return (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)[code]


def circuits_open(redis_client: redis.Redis, vendor: str, key_prefix: str = "breaker") -> int:
    """How many of `vendor`'s breakers (one per app) are open or probing: its calls fail
    fast, or wait for one probe to succeed. Read by the alert evaluator (pipeline/alerts.py)."""
    opened = 0
    for key in redis_client.scan_iter(match=f"{key_prefix}:{vendor}:*", count=100):
        if int(redis_client.hget(key, "open_until") or 0) > 0:
            opened += 1
    return opened


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
