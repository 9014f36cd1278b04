"""The retry policy: which errors retry in-process, and after how long."""

from __future__ import annotations

import dataclasses

import pytest

from sync_pipeline.errors import (
    OutcomeUnknown,
    RateLimited,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, backoff_base_s=1.0, backoff_max_s=5.0, max_sleep_s=30.0)


def test_given_a_refusal_then_no_retry() -> None:
    assert POLICY.next_delay(1, VendorRejected("wecom", "60011", "no privilege")) is None


def test_given_outcome_unknown_then_no_blind_resend() -> None:
    assert POLICY.next_delay(1, OutcomeUnknown("wecom", "read_timeout")) is None


def test_given_token_expired_then_the_client_not_the_policy_retries() -> None:
    assert POLICY.next_delay(1, TokenExpired("wecom", "42001")) is None


def test_given_attempts_used_up_then_no_retry() -> None:
    assert POLICY.next_delay(4, VendorUnavailable("wecom", "503")) is None


def test_given_a_vendor_wait_hint_then_it_is_the_delay() -> None:
    assert POLICY.next_delay(1, RateLimited("feishu", "99991400", retry_after=7.0)) == 7.0


def test_given_a_wait_hint_longer_than_max_sleep_then_the_task_gets_the_error() -> None:
    assert POLICY.next_delay(1, RateLimited("wecom", "45009", retry_after=60.0)) is None


def test_given_no_hint_then_exponential_backoff_capped() -> None:
    fixed = dataclasses.replace(POLICY, jitter=False)

    delays = [fixed.next_delay(n, VendorUnavailable("wecom", "503")) for n in (1, 2, 3)]

    assert delays == [1.0, 2.0, 4.0]
    assert fixed.backoff_s(10) == 5.0


def test_given_jitter_then_delays_stay_within_zero_and_the_backoff() -> None:
    delays = [POLICY.backoff_s(3) for _ in range(200)]

    assert all(0.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 1


def test_policy_is_an_immutable_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.max_attempts = 9  # type: ignore[misc]
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
