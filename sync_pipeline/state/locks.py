"""The per-flow lock: a Redis lock for speed plus a PostgreSQL fence for safety.

Two Beats, a manual trigger and a slow earlier run must never pull one flow at once. The Redis
lock keeps them apart while Redis lives; if Redis is lost, the next pull takes a new fence in
PostgreSQL, and the old holder's commits fail with StaleFence (see state.cursors).
"""

from __future__ import annotations

import uuid

import redis
from redis.lock import Lock

LOCK_PREFIX = "sync_pipeline:flow-lock:"


def _lock(client: redis.Redis, flow: str, ttl_s: float) -> Lock:
    return Lock(client, LOCK_PREFIX + flow, timeout=ttl_s, blocking=False, thread_local=False)


def acquire(client: redis.Redis, flow: str, ttl_s: float, token: str | None = None) -> str | None:
    """The token (given or made) if the flow was free, else None."""
    token = token or uuid.uuid4().hex
    if _lock(client, flow, ttl_s).acquire(token=token):
        return token
    return None


def extend(client: redis.Redis, flow: str, token: str, ttl_s: float) -> bool:
    """Push the expiry out while the run makes progress; False if the lock is no longer ours."""
    lock = _lock(client, flow, ttl_s)
    lock.local.token = token.encode()
    try:
        return bool(lock.extend(ttl_s, replace_ttl=True))
    except redis.exceptions.LockError:
        return False


def release(client: redis.Redis, flow: str, token: str) -> bool:
    """Release only if the lock still holds our token."""
    lock = _lock(client, flow, 1)
    lock.local.token = token.encode()
    try:
        lock.release()
    except redis.exceptions.LockError:
        return False
    return True


def holder(client: redis.Redis, flow: str) -> str | None:
    value = client.get(LOCK_PREFIX + flow)
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)
