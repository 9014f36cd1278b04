"""The one way connectors call a vendor: breaker, quota, rate limit, token, send, classify, retry.

Per attempt: the circuit breaker may refuse; the monthly quota is charged; the shared rate
limiter grants a slot; the shared token cache gives a token; the request goes out with a
(connect, read) timeout; the connector's `classify` turns (status, body, headers) into None or
a `SyncError`. `TokenExpired` drops the token and retries exactly once; other `Transient`
errors follow the `RetryPolicy`; anything else is raised at once.

"Was it sent?" decides what a failure means (DESIGN.md section 3): a connect error never
reached the vendor (`VendorUnavailable`, safe to retry); a timeout or a broken answer after
sending may have taken effect, so unless the caller marks the call `idempotent` it becomes
`OutcomeUnknown`, which is never resent here. Nothing secret leaves this module: errors carry
vendor, code and API name only (never the URL, whose query may hold `access_token`, nor a
body), and requests' own exceptions, which print the URL, are dropped rather than chained.
"""

from __future__ import annotations

import json as jsonlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from sync_pipeline import metrics
from sync_pipeline.errors import (
    OutcomeUnknown,
    ServiceUnavailable,
    SyncError,
    TokenExpired,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http.breaker import CircuitBreaker
from sync_pipeline.http.quota import QuotaBudget
from sync_pipeline.http.ratelimit import RateLimiter, RateLimitKey, Window
from sync_pipeline.http.retry import RetryPolicy
from sync_pipeline.http.session import DEFAULT_TIMEOUT, Timeout
from sync_pipeline.http.tokens import TokenProvider
from sync_pipeline.logging import redact

log = logging.getLogger(__name__)

Classify = Callable[[int, Mapping[str, Any], Mapping[str, str]], SyncError | None]
Response = tuple[int, Mapping[str, Any], Mapping[str, str]]  # status, JSON body, headers
_sent = threading.local()  # requests this thread has sent, through any client


def requests_sent() -> int:
    """Requests this thread has sent so far. A caller that finds it unchanged across a call
    that raised knows nothing reached a vendor during it (DESIGN.md section 3)."""
    return int(getattr(_sent, "count", 0))


@dataclass(frozen=True)
class AuthParts:
    """Where a token goes on one request: headers, query parameters, or both."""

    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


Auth = Callable[[str], AuthParts]


def bearer(token: str) -> AuthParts:
    """`Authorization: Bearer <token>` (Feishu, Slack, Matrix, Agora)."""
    return AuthParts(headers={"Authorization": f"Bearer {token}"})


def query_token(name: str = "access_token") -> Auth:
    """The token as a query parameter (WeCom, DingTalk old API)."""
    return lambda token: AuthParts(params={name: token})


def header_token(name: str) -> Auth:
    """The token in a header of its own (DingTalk new API: x-acs-dingtalk-access-token)."""
    return lambda token: AuthParts(headers={name: token})


class HttpClient:
    """Calls one vendor app at `base_url`; one client per (vendor, app) per worker process.

    A vendor that serves one app's API from two hosts (DingTalk: api. and oapi.dingtalk.com)
    names the other host per request (`request(base_url=...)`), so the app keeps one token,
    one breaker, one quota and one set of rate limits whichever host a call goes to.
    """

    def __init__(
        self,
        vendor: str,
        app: str,
        base_url: str,
        *,
        session: requests.Session,
        redis: redis.Redis,
        classify: Classify,
        token_provider: TokenProvider | None = None,
        limits: Mapping[str, Sequence[Window]] | None = None,
        quota: QuotaBudget | None = None,
        breaker: CircuitBreaker | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        rate_limit_wait_s: float | None = None,
    ) -> None:
        self.vendor, self.app = vendor, app
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._redis = redis
        self._classify = classify
        self._tokens = token_provider
        self._limiter = RateLimiter(redis, limits or {})
        self._quota = quota
        self.breaker = breaker or CircuitBreaker(redis, vendor, app)
        self.retry_policy = retry_policy or RetryPolicy()
        self.timeout = timeout
        # The longest a call waits for a rate-limit slot in-process; beyond it the task retries.
        self.rate_limit_wait_s = (
            self.retry_policy.max_sleep_s if rate_limit_wait_s is None else rate_limit_wait_s
        )
        self._calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()

    def request(
        self,
        method: str,
        path: str,
        *,
        api: str,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        base_url: str | None = None,
        tokens: TokenProvider | None = None,
    ) -> Response:
        """Send until answered, retrying per policy; raises the last `SyncError`.

        `api` names the quota and rate-limit bucket. `idempotent` says a resend cannot double
        an effect (a read, or a write carrying the vendor's dedupe handle). `auth` places the
        token; None sends no token (the token endpoint itself). `base_url`: the app's other
        host, for this request only (None: the client's). `tokens`: where this request's token
        comes from, for this request only (None: the client's; a token bound to one user).
        """
        url = f"{(base_url or self.base_url).rstrip('/')}/{path.lstrip('/')}"
        where = path.split("?", 1)[0]  # for logs: never the query, which may hold a token
        attempt = 1
        token_refreshed = False
        tokens = tokens if tokens is not None else self._tokens
        while True:
            token, breaker_held = self._before_send(api, auth, tokens)
            outcome = self._send(
                method,
                url,
                api=api,
                idempotent=idempotent,
                params=params,
                json=json,
                data=data,
                headers=headers,
                auth=auth,
                token=token,
            )
            self._record_for_breaker(outcome, breaker_held)
            if not isinstance(outcome, SyncError):
                return outcome
            error = outcome
            self._count_error(api, error)
            if (
                isinstance(error, TokenExpired)
                and token
                and tokens is not None
                and not token_refreshed
            ):
                token_refreshed = True
                with self._redis_errors():
                    tokens.invalidate(token)
                log.info("%s %s %s: token rejected, refreshing once", self.vendor, method, where)
                continue
            delay = self.retry_policy.next_delay(attempt, error)
            if delay is None:
                raise error from None
            log.warning(
                "%s %s %s attempt %d failed (%s); retrying in %.2f s",
                self.vendor,
                method,
                where,
                attempt,
                redact(str(error)),
                delay,
            )
            time.sleep(delay)
            attempt += 1

    def call_counts(self) -> dict[str, int]:
        """Requests sent so far, per API (retries included): what the vendor's meters saw."""
        with self._calls_lock:
            return dict(self._calls)

    @property
    def calls(self) -> int:
        with self._calls_lock:
            return sum(self._calls.values())

    def _before_send(
        self, api: str, auth: Auth | None, tokens: TokenProvider | None
    ) -> tuple[str | None, bool]:
        """Token, breaker, quota, rate limit: each may refuse before anything is sent.
        Returns the token (None without auth) and whether the breaker held any state.

        The token comes first: fetching it is a call of its own through the breaker. Taken
        after the breaker, a half-open breaker's one probe would be this call's, and the
        token fetch inside it would be refused, so a vendor whose outage outlived the token
        would never be probed back (the probe would wait on the fetch it blocks)."""
        token = None
        if auth is not None and tokens is not None:
            with self._redis_errors():
                token = tokens.get()
        with self._redis_errors():
            breaker_held = self.breaker.before_call()
        if self._quota is not None:
            self._quota.spend(api)
        with self._redis_errors():
            try:
                waited = self._limiter.acquire(
                    RateLimitKey(self.vendor, self.app, api), deadline_s=self.rate_limit_wait_s
                )
            except VendorError as refused:  # RateLimited: a wait longer than we may wait
                self._count_error(api, refused)
                raise
            if waited > 0:
                metrics.rate_limit_waits.labels(self.vendor, api).inc()
                metrics.rate_limit_wait_seconds.labels(self.vendor, api).inc(waited)
        return token, breaker_held

    def _send(
        self,
        method: str,
        url: str,
        *,
        api: str,
        idempotent: bool,
        params: Mapping[str, Any] | None,
        json: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        auth: Auth | None,
        token: str | None,
    ) -> Response | SyncError:
        """One request; returns the answer or the error it amounts to, never raises."""
        all_params = dict(params or {})
        all_headers = dict(headers or {})
        if auth is not None and token is not None:
            parts = auth(token)
            all_params.update(parts.params)
            all_headers.update(parts.headers)
        with self._calls_lock:
            self._calls[api] += 1
        metrics.vendor_calls.labels(self.vendor, api).inc()
        _sent.count = requests_sent() + 1
        try:
            response = self._session.request(
                method,
                url,
                params=all_params,
                json=json,
                data=data,
                headers=all_headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.ReadTimeout:
            return self._unanswered(api, "read_timeout", idempotent)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError):
            return self._unanswered(api, "bad_body", idempotent)
        except requests.ConnectionError as exc:  # ConnectTimeout included
            if _never_sent(exc):
                return VendorUnavailable(self.vendor, "connect_error", api)
            return self._unanswered(api, "connection_lost", idempotent)
        except requests.RequestException as exc:  # built wrongly (URL, header): a bug of ours
            return VendorRejected(self.vendor, "bad_request", f"{api}: {type(exc).__name__}")
        body = _json_object(response)
        status, answer_headers = response.status_code, response.headers
        if body is None:
            # Not JSON: a gateway's 502 page, a throttle, a truncated answer. Let the status
            # speak first; a "success" we cannot read is no success.
            return self._classify(status, {}, answer_headers) or self._unanswered(
                api, "bad_body", idempotent
            )
        return self._classify(status, body, answer_headers) or (status, body, answer_headers)

    def _count_error(self, api: str, error: SyncError) -> None:
        """One failed call, by the vendor's own code (or ours: connect_error, read_timeout)."""
        code = error.code if isinstance(error, VendorError) else type(error).__name__
        metrics.vendor_errors.labels(self.vendor, api, str(code)[:64]).inc()

    def _unanswered(self, api: str, code: str, idempotent: bool) -> VendorError:
        """Sent, no usable answer: safe to resend only if the caller said so."""
        if idempotent:
            return VendorUnavailable(self.vendor, code, api)
        return OutcomeUnknown(self.vendor, code, api)

    def _record_for_breaker(self, outcome: Response | SyncError, held: bool) -> None:
        """Down or silent counts as a failure; any real answer, even a refusal, as a success
        (which costs nothing when the breaker held nothing to reset)."""
        with self._redis_errors():
            if isinstance(outcome, VendorUnavailable | OutcomeUnknown):
                self.breaker.record_failure()
            else:
                self.breaker.record_success(held)

    @contextmanager
    def _redis_errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ServiceUnavailable(
                "Redis", _redis_location(self._redis), type(exc).__name__
            ) from None


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection was never made (refused, unreachable, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one


BARE = "_bare"


def _json_object(response: requests.Response) -> Mapping[str, Any] | None:
    """The body as a JSON object; {} for 204 No Content; None when it is not JSON.

    A JSON answer that is not an object (E9 lists answer a bare array, their Count twins a bare
    integer) arrives as {BARE: value}, so classify and the connector still see a mapping.
    """
    if response.status_code == 204:
        return {}
    try:
        body = jsonlib.loads(response.content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return body if isinstance(body, dict) else {BARE: body}


def _redis_location(client: redis.Redis) -> str:
    """host:port/db of a client, with no password to mask."""
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
