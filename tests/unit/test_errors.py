"""Errors survive Celery's JSON round trip (rebuilt as cls(*args)) and carry, as class facts,
whether to retry, the run status they lead to and the operator's next command; one backoff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.errors import (
    MAX_BACKOFF_S,
    MAX_COUNTDOWN_S,
    ConfigError,
    ConfigErrors,
    CursorRegression,
    MigrationError,
    OutcomeUnknown,
    PagingLoop,
    QuotaExhausted,
    RateLimited,
    Reason,
    RecordError,
    Refused,
    RunStatus,
    ServiceUnavailable,
    StaleFence,
    SyncError,
    TokenExpired,
    Transient,
    VendorRejected,
    VendorUnavailable,
    backoff_s,
    next_step,
    retryable,
    run_status,
)

EXAMPLES: list[SyncError] = [
    ConfigError("flows/a.yaml", [("source.stream", "Missing data for required field.")]),
    ServiceUnavailable("Redis", "redis://127.0.0.1:1", "connection refused", "check REDIS_URL"),
    RecordError("R000001", "no IM user mapped for E00042"),
    VendorRejected("wecom", "301025", "bad window"),
    VendorUnavailable("feishu", "503"),
    RateLimited("feishu", "99991400", "frequency limit", retry_after=3.0),
    TokenExpired("dingtalk", "42001"),
    OutcomeUnknown("wecom", "read timeout"),
    PagingLoop("feishu", "approvals"),
    QuotaExhausted("dingtalk", "*", 10_000, "month"),
    ConfigErrors([("flows/a.yaml", [("mode", "bad")]), ("connectors.yaml", [("x", "y")])]),
    StaleFence("approvals", 3, 4),
    CursorRegression("approvals", "2026-03-02T09:30:00Z", "2026-03-01T00:00:00Z"),
    Refused(Reason.MALFORMED, "TaskId is missing"),
    MigrationError("revision 0009 is unknown"),
]


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_rebuilt_from_args_equals_original(error: SyncError) -> None:
    rebuilt = type(error)(*error.args)

    assert str(rebuilt) == str(error)
    assert rebuilt.args == error.args


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (VendorRejected("x", "1"), False),
        (RecordError("1", "bad"), False),
        (RateLimited("x", "429"), True),
        (TokenExpired("x", "401"), True),
        (OutcomeUnknown("x", "timeout"), True),
        (PagingLoop("x", "approvals"), False),
        (ServiceUnavailable("Redis", "u", "r"), True),
    ],
)
def test_retryable_is_a_class_fact(error: SyncError, retryable: bool) -> None:
    assert error.retryable is retryable
    assert isinstance(error, Transient) is retryable


def test_service_unavailable_reads_as_one_line() -> None:
    error = ServiceUnavailable("Redis", "redis://h:1", "Connection refused.", "Check REDIS_URL.")

    assert str(error) == "cannot reach Redis at redis://h:1: Connection refused. Check REDIS_URL."
    assert "\n" not in str(error)


def test_a_paging_loop_names_the_source_and_stream_on_one_line() -> None:
    error = PagingLoop("feishu", "approvals")

    assert str(error) == (
        "feishu page_token_repeated: stream approvals: a page token came back after it was followed"
    )


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_error_names_the_operators_next_command(error: SyncError) -> None:
    assert "syncctl" in error.next_step or error.next_step.startswith(("none:", "report"))
    assert next_step(error) == error.next_step


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (QuotaExhausted("dingtalk", "*", 10_000, "month"), RunStatus.STOPPED),
        (StaleFence("approvals", 3, 4), RunStatus.STOPPED),
        (VendorRejected("wecom", "301025"), RunStatus.FAILED),
        (ConfigError("flows/a.yaml", []), RunStatus.FAILED),
        (RateLimited("feishu", "99991400"), RunStatus.FAILED),  # once its retries are spent
        (KeyError("status"), RunStatus.FAILED),  # not ours: a bug
    ],
    ids=lambda v: type(v).__name__,
)
def test_the_error_class_decides_the_status_of_the_run_it_ends(
    error: Exception, status: RunStatus
) -> None:
    assert run_status(error) is status


def test_errors_not_ours_are_never_retried() -> None:
    assert not retryable(KeyError("status"))
    assert retryable(VendorUnavailable("feishu", "503"))


def test_the_vendors_own_wait_is_the_backoff() -> None:
    assert backoff_s(RateLimited("feishu", "99991400", retry_after=7.5), tries=5) == 7.5


def test_a_vendors_wait_is_capped_below_the_visibility_timeout() -> None:
    assert backoff_s(RateLimited("dingtalk", "60", retry_after=86_400), 0) == MAX_COUNTDOWN_S


def test_without_a_vendors_wait_the_backoff_doubles_from_two_seconds() -> None:
    waits = [backoff_s(VendorUnavailable("wecom", "-1"), tries) for tries in range(7)]

    assert waits == [2.0, 4.0, 8.0, 16.0, 32.0, MAX_BACKOFF_S, MAX_BACKOFF_S]


@given(st.integers(min_value=0, max_value=10_000))
def test_the_backoff_never_exceeds_its_cap(tries: int) -> None:
    assert 0 < backoff_s(OutcomeUnknown("wecom", "timeout"), tries) <= MAX_BACKOFF_S
