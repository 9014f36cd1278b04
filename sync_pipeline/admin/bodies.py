"""What the admin API accepts: request bodies and query strings, checked by marshmallow.

A body that is not a JSON object is malformed (400); one with a wrong type, a value out of
range or a key it does not know is invalid (422), naming each key. Names of who asked are
cleaned (no NUL, no lone surrogate) and bounded, as they are stored.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from sync_pipeline.errors import AdminRefused
from sync_pipeline.untrusted import clean_text

MAX_ID = 2**31 - 1  # the ids are PostgreSQL integers
MAX_NAME_CHARS = 100
MAX_REASON_CHARS = 500
DEFAULT_BY = "admin-api"  # who asked, when the request does not say


class Text(fields.String):
    """A string cleaned for PostgreSQL and stripped."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return clean_text(super()._deserialize(value, attr, data, **kwargs).strip())


class JsonBool(fields.Boolean):
    """JSON true or false: not 0, 1, "yes" or "on"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class WholeNumber(fields.Integer):
    """A JSON integer (2 or 2.0, as JSON Schema counts them): not true, "2" or 2.5."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def _json_bool() -> JsonBool:
    return JsonBool(load_default=False)


def _query_bool() -> fields.Boolean:
    """`true` or `false` in a query string."""
    return fields.Boolean(load_default=False, truthy={"true"}, falsy={"false"})


def _by() -> Text:
    return Text(
        load_default=DEFAULT_BY, validate=validate.Length(1, MAX_NAME_CHARS), allow_none=False
    )


class Body(Schema):
    class Meta:
        unknown = RAISE


class RunBody(Body):
    even_if_disabled = _json_bool()


class ResyncBody(Body):
    since = Text(load_default=None, allow_none=True, validate=validate.Length(1, 40))
    dry_run = _json_bool()
    by = _by()


class PauseBody(Body):
    reason = Text(load_default=None, allow_none=True, validate=validate.Length(0, MAX_REASON_CHARS))
    by = _by()

    @post_load
    def _no_empty_reason(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {**data, "reason": data["reason"] or None}


class ResumeBody(Body):
    by = _by()


class CursorBody(Body):
    value = Text(required=True, allow_none=True, validate=validate.Length(1, 40))
    by = _by()


class ReplayBody(Body):
    flow = Text(load_default=None, allow_none=True, validate=validate.Length(1, 200))
    ids = fields.List(
        WholeNumber(validate=validate.Range(1, MAX_ID)),
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 1000),
    )


class SettleBody(Body):
    verdict = fields.String(required=True, validate=validate.OneOf(["done", "retry"]))
    by = _by()


class Query(Schema):
    class Meta:
        unknown = RAISE  # a parameter it does not know is a mistake to say, not to ignore


class LettersQuery(Query):
    flow = Text(load_default=None, validate=validate.Length(1, 200))
    all = _query_bool()
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 10_000))


class EffectsQuery(Query):
    status = fields.String(
        load_default="unknown", validate=validate.OneOf(["unknown", "pending", "failed", "done"])
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 10_000))


class AlertsQuery(Query):
    all = _query_bool()


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """The checked values, or AdminRefused 422 naming every bad key."""
    if not isinstance(data, dict):
        raise AdminRefused(400, "malformed", "expected a JSON object")
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        raise AdminRefused(422, "invalid", _problems(exc.messages)) from None
    return loaded


def _problems(messages: Any, prefix: str = "") -> str:
    if isinstance(messages, dict):
        return "; ".join(
            _problems(v, f"{prefix}{k}.") for k, v in sorted(messages.items(), key=str)
        )
    if isinstance(messages, list):
        return f"{prefix.rstrip('.')}: {' '.join(str(m) for m in messages)}"
    return f"{prefix.rstrip('.')}: {messages}"


def path_id(text: str, what: str) -> int:
    """An id from the path: digits within PostgreSQL's integers, else 404 (no such thing)."""
    if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID:
        return int(text)
    raise AdminRefused(404, f"unknown_{what}", f"no {what} {text[:40]!r}")
