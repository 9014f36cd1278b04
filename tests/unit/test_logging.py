"""No secret reaches a log line."""

from __future__ import annotations

import logging

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

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


def test_redact_reads_text_utf8_cannot_carry() -> None:
    assert redact("\ud800\x00 password=hunter2") == "\ufffd\ufffd password=***"


# -- a secret embedded anywhere is masked -------------------------------------------------------
SECRET_KEYS = (
    "access_token",
    "tenant_access_token",
    "appSecret",
    "corpsecret",
    "password",
    "token",
    "EncodingAESKey",
    "encrypt_key",
    "aes_key",
    "secret",
)


def _outside_text(exclude: str = "") -> st.SearchStrategy[str]:
    """Any text at all, the characters `exclude` names left out."""
    return st.text(st.characters(exclude_characters=exclude), max_size=40)


def _secret(stop: str) -> st.SearchStrategy[str]:
    """A secret: a marker no other part holds, then characters that do not end it (`stop`,
    NUL, lone surrogates and whitespace end it)."""
    rest = st.text(
        st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), exclude_characters=stop),
        max_size=30,
    )
    return rest.map(lambda tail: "S3CR3T" + tail)


@settings(max_examples=300, deadline=None)
@given(
    before=_outside_text(),
    scheme=st.sampled_from(["redis", "postgresql", "amqp", "rediss", "sentinel", "x+y.z-1"]),
    user=st.text(st.sampled_from("abcxyz019_"), max_size=8),
    secret=_secret(stop="@"),
    after=_outside_text(),
)
def test_given_a_url_with_a_password_anywhere_the_password_is_masked(
    before: str, scheme: str, user: str, secret: str, after: str
) -> None:
    assume("S3CR3T" not in before + after)
    text = f"{before}{scheme}://{user}:{secret}@db.internal:5432/x{after}"

    assert "S3CR3T" not in redact(text)


@settings(max_examples=300, deadline=None)
@given(
    before=_outside_text(),
    key=st.sampled_from(SECRET_KEYS).flatmap(
        lambda key: st.sampled_from([key, key.upper(), key.lower()])
    ),
    separator=st.sampled_from(["=", ":", ": ", " = ", '": "', "':'", "=\t"]),
    secret=_secret(stop="\"'&,}"),
    end=st.sampled_from(["", "&", ",", "}", '"', "'", " ", "\n"]),
    after=_outside_text(),
)
def test_given_a_secret_field_anywhere_its_value_is_masked(
    before: str, key: str, separator: str, secret: str, end: str, after: str
) -> None:
    assume("S3CR3T" not in before + after)
    text = f"{before}{key}{separator}{secret}{end}{after}"

    assert "S3CR3T" not in redact(text)
