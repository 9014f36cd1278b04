"""Logging set-up with a redacting filter: no secret reaches a log line (invariant 4).

The filter masks passwords in URLs and values of well-known secret fields in every formatted
message, including arguments passed lazily (ruff's G rules keep them lazy so this sees them).

Redaction runs on every log line, and log lines carry outside text (ids, titles, vendor
errors), so its cost must not depend on what that text holds. Python's `re` backtracks: the
URL pattern tried at every position of a 40,000-character word took 19 s. The patterns run on
RE2 (google-re2), whose automata never backtrack: time is linear in the text, guaranteed by
the engine rather than by a careful reading of each pattern (`syncctl bench redact` measures
it). RE2 has no lookaround, so the URL pattern takes the `@` and puts it back.

Every line carries the context it was logged in (`log_context`: flow, run id, task id, record
id, where known), set by the worker for each task and by the pipeline for each record. With
SYNC_LOG_FORMAT=json each line is one JSON object (ts, level, logger, msg and the context
fields that are set); otherwise a readable line, the context in brackets at its end.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
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


@dataclass(frozen=True)
class LogContext:
    """What a log line is about, where known."""

    flow: str | None = None
    run_id: int | None = None
    task_id: str | None = None
    record_id: str | None = None

    def fields(self) -> dict[str, str | int]:
        """The fields that are set, in declaration order."""
        found = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in found if value is not None}


CONTEXT_FIELDS = tuple(f.name for f in fields(LogContext))
_NO_CONTEXT = LogContext()
_context: contextvars.ContextVar[LogContext] = contextvars.ContextVar(
    "sync_log_context",
    default=_NO_CONTEXT,
)


def current_context() -> LogContext:
    return _context.get()


@contextlib.contextmanager
def log_context(**changes: Any) -> Iterator[LogContext]:
    """Lines logged inside the block carry `changes` on top of the context around it."""
    token = _context.set(replace(_context.get(), **changes))
    try:
        yield _context.get()
    finally:
        _context.reset(token)


def set_log_context(context: LogContext) -> contextvars.Token[LogContext]:
    """Set the context until `reset_log_context(token)` (for signal pairs such as Celery's
    task_prerun / task_postrun, where no block encloses the work)."""
    return _context.set(context)


def reset_log_context(token: contextvars.Token[LogContext]) -> None:
    _context.reset(token)


class ContextFilter(logging.Filter):
    """Puts the current LogContext's fields on each record (as attributes, None when unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, getattr(context, name))
        return True


def _record_context(record: logging.LogRecord) -> dict[str, Any]:
    found = ((name, getattr(record, name, None)) for name in CONTEXT_FIELDS)
    return {name: value for name, value in found if value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts (UTC, ISO 8601), level, logger, msg, the context fields that
    are set, and exc (the traceback, redacted) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **_record_context(record),
        }
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [flow=... run_id=... task_id=... record_id=...]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _record_context(record)
        if not context:
            return text
        tags = " ".join(f"{name}={value}" for name, value in context.items())
        first, newline, rest = text.partition("\n")
        return f"{first} [{tags}]{newline}{rest}"


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record's message after formatting its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Root logging to stderr in `log_format` ("text" or "json"), with the context and the
    redacting filter on every handler."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())
        if type(handler) is logging.StreamHandler:  # ours, not a test harness's capture
            handler.setFormatter(formatter(log_format))
    root.setLevel(level)
    # Alembic narrates every migration step at INFO; `syncctl migrate` and the workers report
    # the outcome in one line of their own. Its details stay a SYNC_LOG_LEVEL=DEBUG away.
    quiet = root.level > logging.DEBUG
    logging.getLogger("alembic").setLevel(logging.WARNING if quiet else logging.DEBUG)
