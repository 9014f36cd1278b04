"""HttpClient: the per-attempt flow, retries by error class, and no secret in any error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from sync_pipeline.errors import (
    OutcomeUnknown,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http.breaker import BreakerState, CircuitBreaker
from sync_pipeline.http.client import HttpClient, bearer, header_token, query_token
from sync_pipeline.http.retry import RetryPolicy
from sync_pipeline.http.session import make_session
from sync_pipeline.http.tokens import TokenCache
from tests.conftest import wait_for
from tests.http.conftest import Answer, ScriptedServer, classify

SECRET = "SECRET-TOKEN"
FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05, jitter=False)


class Fetch:
    """The token endpoint: hands out SECRET-TOKEN-1, -2, ... and counts fetches."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> tuple[str, float]:
        self.count += 1
        return f"{SECRET}-{self.count}", 7200.0


@pytest.fixture
def fetch() -> Fetch:
    return Fetch()


MakeClient = Callable[..., HttpClient]


@pytest.fixture
def make_client(redis_client: redis.Redis, fetch: Fetch) -> MakeClient:
    def make(base_url: str, **overrides: Any) -> HttpClient:
        options: dict[str, Any] = {
            "session": make_session(connect_retries=1, connect_backoff_s=0.01),
            "redis": redis_client,
            "classify": classify,
            "token_provider": TokenCache(redis_client, "token:test:app1", fetch),
            "breaker": CircuitBreaker(redis_client, "test", "app1", failure_threshold=50),
            "retry_policy": FAST,
            "timeout": (1.0, 0.3),
        }
        options.update(overrides)
        return HttpClient("test", "app1", base_url, **options)

    return make


def test_given_two_503s_then_200_when_reading_then_the_third_call_answers(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script(
        "/list", Answer(status=503), Answer(status=503), Answer(body={"errcode": 0, "n": 7})
    )

    status, body, headers = make_client(server.url).request(
        "GET", "/list", api="list", idempotent=True, params={"cursor": "0"}
    )

    assert (status, body["n"]) == (200, 7)
    assert headers["content-type"] == "application/json"  # case-insensitive headers
    assert len(server.calls("/list")) == 3


def test_given_an_expired_token_then_one_refetch_and_one_retry(
    server: ScriptedServer, make_client: MakeClient, fetch: Fetch
) -> None:
    server.script("/list", Answer(body={"errcode": 42001, "errmsg": "expired"}), Answer())

    make_client(server.url).request("GET", "/list", api="list", idempotent=True, auth=query_token())

    calls = server.calls("/list")
    assert [c.query["access_token"] for c in calls] == [f"{SECRET}-1", f"{SECRET}-2"]
    assert fetch.count == 2


def test_given_the_fresh_token_is_rejected_too_then_token_expired_is_raised(
    server: ScriptedServer, make_client: MakeClient, fetch: Fetch
) -> None:
    server.script("/list", Answer(body={"errcode": 40014, "errmsg": "invalid"}))

    with pytest.raises(TokenExpired):
        make_client(server.url).request("GET", "/list", api="list", idempotent=True, auth=bearer)

    assert len(server.calls("/list")) == 2
    assert fetch.count == 2
    assert server.calls("/list")[1].headers["Authorization"] == f"Bearer {SECRET}-2"


def test_given_429_with_retry_after_then_the_next_call_waits_at_least_that_long(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/send", Answer(status=429, headers={"Retry-After": "1"}), Answer())

    make_client(server.url).request("POST", "/send", api="send", idempotent=True, json={})

    first, second = server.calls("/send")
    assert second.at - first.at >= 1.0


def test_given_a_wait_longer_than_the_policy_sleeps_then_the_task_gets_it(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/send", Answer(status=429, headers={"Retry-After": "120"}))

    with pytest.raises(RateLimited) as throttled:
        make_client(server.url).request("POST", "/send", api="send", idempotent=True, json={})

    assert throttled.value.retry_after == 120.0
    assert len(server.calls("/send")) == 1


def test_given_a_read_timeout_on_a_non_idempotent_post_then_outcome_unknown_and_no_resend(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/approve", Answer(delay_s=1.0))

    with pytest.raises(OutcomeUnknown) as unknown:
        make_client(server.url).request("POST", "/approve", api="approve", idempotent=False)

    assert unknown.value.code == "read_timeout"
    assert len(server.calls("/approve")) == 1


def test_given_a_read_timeout_on_an_idempotent_post_then_it_is_resent(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/send", Answer(delay_s=1.0), Answer(body={"errcode": 0, "msgid": "m1"}))

    _, body, _ = make_client(server.url).request(
        "POST", "/send", api="send", idempotent=True, json={"enable_duplicate_check": 1}
    )

    assert body["msgid"] == "m1"
    assert len(server.calls("/send")) == 2


def test_given_a_closed_port_then_connect_errors_are_retried_then_vendor_unavailable(
    free_port: int, make_client: MakeClient
) -> None:
    with pytest.raises(VendorUnavailable) as down:
        make_client(f"http://127.0.0.1:{free_port}").request(
            "POST", "/approve", api="approve", idempotent=False
        )

    assert down.value.code == "connect_error"


def test_given_a_vendor_coming_up_then_a_non_idempotent_post_is_retried_after_connect_errors(
    free_port: int, make_client: MakeClient
) -> None:
    http = make_client(
        f"http://127.0.0.1:{free_port}",
        retry_policy=RetryPolicy(
            max_attempts=30, backoff_base_s=0.1, backoff_max_s=0.1, jitter=False
        ),
    )
    started: list[ScriptedServer] = []
    # Bound only when the timer fires: until then every connect is refused.
    timer = threading.Timer(0.5, lambda: started.append(ScriptedServer(port=free_port).__enter__()))
    timer.start()
    try:
        status, _, _ = http.request("POST", "/approve", api="approve", idempotent=False, json={})
    finally:
        timer.join()
        started[0].__exit__()

    assert status == 200
    assert len(started[0].calls("/approve")) == 1  # refused attempts never reached it


def test_given_a_body_that_is_not_json_then_reads_retry_and_writes_are_unknown(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script(
        "/page", Answer(body=b'{"errcode": 0, "list": [', headers={"Content-Type": "text/plain"})
    )
    http = make_client(server.url)

    with pytest.raises(VendorUnavailable) as read:
        http.request("GET", "/page", api="page", idempotent=True)
    with pytest.raises(OutcomeUnknown) as write:
        http.request("POST", "/page", api="page", idempotent=False)

    assert (read.value.code, write.value.code) == ("bad_body", "bad_body")
    assert len(server.calls("/page")) == FAST.max_attempts + 1


def test_given_a_gateway_error_page_then_the_status_decides(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/page", Answer(status=502, body=b"<html>Bad Gateway</html>"))

    with pytest.raises(VendorUnavailable) as down:
        make_client(server.url).request("GET", "/page", api="page", idempotent=True)

    assert down.value.code == "502"


def test_given_a_refusal_then_it_is_raised_at_once(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/page", Answer(body={"errcode": 60011, "errmsg": "no privilege"}))

    with pytest.raises(VendorRejected):
        make_client(server.url).request("GET", "/page", api="page", idempotent=True)

    assert len(server.calls("/page")) == 1


def test_calls_are_counted_per_api_with_retries(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    server.script("/a", Answer(status=503), Answer())
    http = make_client(server.url)

    http.request("GET", "/a", api="a", idempotent=True)
    http.request("GET", "/b", api="b", idempotent=True)

    assert http.call_counts() == {"a": 2, "b": 1}
    assert http.calls == 3


def test_given_header_auth_then_the_token_goes_in_that_header(
    server: ScriptedServer, make_client: MakeClient
) -> None:
    make_client(server.url).request(
        "POST",
        "/v1.0/x",
        api="x",
        idempotent=True,
        auth=header_token("x-acs-dingtalk-access-token"),
    )

    assert server.calls("/v1.0/x")[0].headers["x-acs-dingtalk-access-token"] == f"{SECRET}-1"


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def test_no_token_appears_in_any_error_or_log_line(
    server: ScriptedServer,
    free_port: int,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script("/slow", Answer(delay_s=1.0))
    server.script("/junk", Answer(body=b"not json"))
    server.script("/old", Answer(body={"errcode": 42001}))
    http, down = make_client(server.url), make_client(f"http://127.0.0.1:{free_port}")
    attempts = [
        (http, "POST", "/slow?access_token=SECRET-TOKEN-in-path", False),
        (http, "GET", "/slow", True),
        (http, "POST", "/junk", False),
        (http, "GET", "/old", True),
        (down, "GET", "/x", True),
    ]
    errors: list[SyncError] = []
    for client, method, path, idempotent in attempts:
        with pytest.raises(SyncError) as failed:
            client.request(method, path, api="x", idempotent=idempotent, auth=query_token())
        errors.append(failed.value)

    assert [type(e).__name__ for e in errors] == [
        "OutcomeUnknown",
        "VendorUnavailable",
        "OutcomeUnknown",
        "TokenExpired",
        "VendorUnavailable",
    ]
    for error in errors:
        for linked in _chain(error):
            assert SECRET not in str(linked)
            assert SECRET not in repr(linked.args)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_given_a_half_open_breaker_and_no_token_then_the_probe_fetches_it_and_the_call_goes(
    server: ScriptedServer, make_client: MakeClient, redis_client: redis.Redis
) -> None:
    """The token is fetched through the same client (as the connectors do): the breaker's one
    probe is the token fetch, whose success closes the circuit for the call that needed it. A
    vendor down longer than its token's life recovers once it answers."""
    server.script("/token", Answer(body={"errcode": 0, "token": "t-1"}))
    server.script("/list", Answer(body={"errcode": 0, "n": 1}))
    breaker = CircuitBreaker(redis_client, "test", "app1", failure_threshold=1, reset_timeout_s=0.1)
    made: list[HttpClient] = []

    def fetch_token() -> tuple[str, float]:
        _, body, _ = made[0].request("POST", "/token", api="token", idempotent=True)
        return str(body["token"]), 7200.0

    tokens = TokenCache(redis_client, "token:test:probe", fetch_token)
    made.append(make_client(server.url, breaker=breaker, token_provider=tokens))
    breaker.record_failure()  # the vendor was down: open, then half-open
    wait_for(lambda: breaker.state() is BreakerState.HALF_OPEN, 5, 0.02, what="half-open")

    status, body, _ = made[0].request("GET", "/list", api="list", idempotent=True, auth=bearer)

    assert (status, body["n"]) == (200, 1)
    assert breaker.state() is BreakerState.CLOSED
