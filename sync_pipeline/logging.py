"""Logging set-up with a redacting filter: no secret reaches a log line (invariant 4).

The filter masks passwords in URLs and values of well-known secret fields in every formatted
message, including arguments passed lazily (ruff's G rules keep them lazy so this sees them).

Redaction runs on every log line, and log lines carry outside text (ids, titles, vendor
errors), so its cost must not depend on what that text holds. Python's `re` backtracks: the
URL pattern tried at every position of a 40,000-character word took 19 s. The patterns run on
RE2 (google-re2), whose automata never backtrack: time is linear in the text, guaranteed by
the engine rather than by a careful reading of each pattern (`syncctl bench redact` measures
it). RE2 has no lookaround, so the URL pattern takes the `@` and puts it back.
"""

from __future__ import annotations

import logging
from typing import Any

import re2

from sync_pipeline.untrusted import clean_text

# What Python's `\s` matches in a str (str.isspace), which RE2's ASCII `\s` does not all cover.
_SPACE = rb"\t-\r\x1c-\x1f\x85\p{Z}"
# Group 1 is what stays before the ***. Both run on UTF-8 bytes: RE2's wrapper maps every
# match's offsets back to str positions otherwise, at several times the cost per match.
_URL_PASSWORD: Any = re2.compile(
    rb"(?i)([a-z][a-z0-9+.-]*://[^:/@" + _SPACE + rb"]*:)[^@" + _SPACE + rb"]+@"
)
_SECRET_FIELD: Any = re2.compile(
    rb"(?i)([\"']?(?:access_token|accessToken|tenant_access_token|app_secret|appSecret|"
    rb"corpsecret|secret|password|token|EncodingAESKey|encrypt_key|aes_key)[\"']?"
    rb"[" + _SPACE + rb"]*[:=][" + _SPACE + rb"]*[\"']?)[^\"'&,}" + _SPACE + rb"]+"
)


def redact(text: str) -> str:
    """`text` with URL passwords and secret-looking field values replaced by ***, in time
    linear in its length. Code points UTF-8 cannot carry (lone surrogates, which RE2 cannot
    read) and NUL become U+FFFD first, as for any outside text we keep (untrusted.py)."""
    data = clean_text(text).encode("utf-8")
    data = _URL_PASSWORD.sub(lambda found: found.group(1) + b"***@", data)
    data = _SECRET_FIELD.sub(lambda found: found.group(1) + b"***", data)
    return bytes(data).decode("utf-8")


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
