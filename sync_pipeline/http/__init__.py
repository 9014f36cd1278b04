"""The HTTP layer every connector shares: session, tokens, rate limits, retry, breaker, quotas.

Connectors build one `HttpClient` per (vendor, app) and pass their `classify`; everything
shared between workers (tokens, rate-limit windows, breaker state) lives in Redis, and monthly
quota counters behind a `QuotaStore` the runtime hands in (PostgreSQL, state/quotas.py).
Nothing here knows Celery or PostgreSQL.
"""

from sync_pipeline.http.breaker import BreakerState, CircuitBreaker
from sync_pipeline.http.client import (
    Auth,
    AuthParts,
    Classify,
    HttpClient,
    Response,
    bearer,
    header_token,
    query_token,
)
from sync_pipeline.http.quota import QuotaBudget, QuotaCounter, QuotaStore
from sync_pipeline.http.ratelimit import RateLimiter, RateLimitKey
from sync_pipeline.http.retry import RetryPolicy
from sync_pipeline.http.session import DEFAULT_TIMEOUT, Timeout, make_session
from sync_pipeline.http.tokens import RefreshTokenStore, TokenCache, TokenProvider

__all__ = [
    "DEFAULT_TIMEOUT",
    "Auth",
    "AuthParts",
    "BreakerState",
    "CircuitBreaker",
    "Classify",
    "HttpClient",
    "QuotaBudget",
    "QuotaCounter",
    "QuotaStore",
    "RateLimitKey",
    "RateLimiter",
    "RefreshTokenStore",
    "Response",
    "RetryPolicy",
    "Timeout",
    "TokenCache",
    "TokenProvider",
    "bearer",
    "header_token",
    "make_session",
    "query_token",
]
