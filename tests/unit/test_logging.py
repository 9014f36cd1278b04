"""No secret reaches a log line."""

from __future__ import annotations

import logging

import pytest

from sync_pipeline.logging import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connecting to postgresql://app:s3cret@db:5432/x", "s3cret"),
        ("GET /cgi-bin/gettoken?corpid=ww1&corpsecret=topsecret", "topsecret"),
        ('{"app_secret": "abc123", "app_id": "cli_1"}', "abc123"),
        ("access_token=tok.en-value&x=1", "tok.en-value"),
    ],
)
def test_redact_removes_the_secret(text: str, secret: str) -> None:
    assert secret not in redact(text)


def test_redact_keeps_ordinary_text() -> None:
    assert redact("synced 12 approvals for flow approvals_to_wecom") == (
        "synced 12 approvals for flow approvals_to_wecom"
    )


def test_filter_redacts_lazy_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("broker %s", "redis://:hunter2@cache:6379/0")

    assert "hunter2" not in caplog.text
    assert "redis://:***@cache:6379/0" in caplog.text
