"""Errors survive Celery's JSON round trip (rebuilt as cls(*args)) and carry `retryable`."""

from __future__ import annotations

import pytest

from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    PagingLoop,
    RateLimited,
    RecordError,
    ServiceUnavailable,
    SyncError,
    TokenExpired,
    Transient,
    VendorRejected,
    VendorUnavailable,
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
