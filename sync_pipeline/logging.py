"""Logging set-up with a redacting filter: no secret reaches a log line (invariant 4).

The filter masks passwords in URLs and values of well-known secret fields in every formatted
message, including arguments passed lazily (ruff's G rules keep them lazy so this sees them).
"""

from __future__ import annotations

import logging
import re

_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)", re.I
)
_SECRET_FIELD = re.compile(
    r"(?P<head>[\"']?(?:access_token|accessToken|tenant_access_token|app_secret|appSecret|"
    r"corpsecret|secret|password|token|EncodingAESKey|encrypt_key|aes_key)[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<secret>[^\"'&\s,}]+)",
    re.I,
)


def redact(text: str) -> str:
    """`text` with URL passwords and secret-looking field values replaced by ***."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _SECRET_FIELD.sub(r"\g<head>***", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message after formatting its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Root logging to stderr with the redacting filter on every handler."""
    root = logging.getLogger()
    if not root.handlers:
        stderr = logging.StreamHandler()
        stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; `syncctl migrate` and the workers report
    # the outcome in one line of their own. Its details stay a SYNC_LOG_LEVEL=DEBUG away.
    quiet = root.level > logging.DEBUG
    logging.getLogger("alembic").setLevel(logging.WARNING if quiet else logging.DEBUG)
