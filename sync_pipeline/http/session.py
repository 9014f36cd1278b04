"""A `requests.Session` every connector shares: pooled, always timed out, never keeps cookies.

urllib3's `Retry` here covers connect errors only: the request never left, so a retry is always
safe, even for a write. Anything that fails after the request was sent is left to the caller
(`sync_pipeline.http.retry`), which knows whether the call is idempotent (DESIGN.md section 3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from http.cookiejar import Cookie, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.request import Request

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sync_pipeline.logging import RedactingFilter

Timeout = tuple[float, float]  # (connect, read) seconds

DEFAULT_TIMEOUT: Timeout = (3.0, 30.0)

# urllib3 logs request URLs, query and all (`/gettoken?corpsecret=...`, `?access_token=...`),
# at DEBUG and, when it retries a connect, at WARNING. A filter on these loggers themselves
# redacts every record, whichever handler ends up writing it.
URL_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")


class RejectAllCookies(DefaultCookiePolicy):
    """Neither store nor send cookies: Weaver E9 mixes users up on stale session cookies."""

    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Request) -> bool:
        return False


class TimeoutAdapter(HTTPAdapter):
    """An adapter that puts a (connect, read) timeout on every request that lacks one.

    requests waits forever by default; one hung vendor socket would hold a worker slot until
    Celery's hard time limit kills the child.
    """

    def __init__(self, timeout: Timeout, **kwargs: Any) -> None:
        self.timeout = timeout
        super().__init__(**kwargs)

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, *args, **kwargs)


def connect_only_retry(attempts: int, backoff_s: float) -> Retry:
    """Retry connect errors for every method; never reads, statuses or redirects."""
    return Retry(
        total=None,
        connect=attempts,
        read=False,  # re-raise read errors as they are, so requests reports ReadTimeout
        status=0,
        redirect=0,
        other=0,
        allowed_methods=None,  # the request never left: safe for POST too
        backoff_factor=backoff_s,
        raise_on_status=False,
        raise_on_redirect=False,
        respect_retry_after_header=False,
    )


def make_session(
    *,
    timeout: Timeout = DEFAULT_TIMEOUT,
    pool_connections: int = 10,
    pool_maxsize: int = 20,
    connect_retries: int = 2,
    connect_backoff_s: float = 0.2,
) -> requests.Session:
    """A session for one worker process; `pool_maxsize` bounds its sockets per host."""
    session = requests.Session()
    adapter = TimeoutAdapter(
        timeout,
        pool_connections=pool_connections,
        pool_maxsize=pool_maxsize,
        max_retries=connect_only_retry(connect_retries, connect_backoff_s),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.cookies.set_policy(RejectAllCookies())
    # With trust_env, requests reads the environment again on every call (proxies, CA bundle,
    # .netrc). Without proxies or a .netrc, the only thing it can find is a CA bundle, which
    # is read here once instead, as requests would use it.
    session.trust_env = environment_configures_http(os.environ, Path.home())
    bundle = ca_bundle(os.environ)
    if not session.trust_env and bundle:
        session.verify = bundle
    redact_url_logs()
    return session


def environment_configures_http(env: Mapping[str, str], home: Path) -> bool:
    """Whether requests must read the environment per call: a proxy (any `*_proxy` variable,
    either case, which applies per URL) or a .netrc (per host)."""
    if any(name.lower().endswith("_proxy") and value for name, value in env.items()):
        return True
    if env.get("NETRC"):
        return True
    return any((home / name).exists() for name in (".netrc", "_netrc"))


def ca_bundle(env: Mapping[str, str]) -> str | None:
    """The CA bundle requests takes from the environment (its own order), if any."""
    return env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or None


def redact_url_logs() -> None:
    """Put the redacting filter on urllib3's URL-logging loggers, once."""
    for name in URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
