"""Connector options: what each vendor's connector reads under `options:`, typed and bounded.

Each connector class declares its options as `OPTIONS`, an `OptionsSchema` written beside the
code that reads them (connectors/<vendor>.py), and the config reads it through
connectors/registry.py without making a connector. So a misspelt option, a value of the wrong
type or out of range is refused at load with the file and the key, like every other setting,
instead of being accepted and then ignored or failing when a connector is made.

A value may be `{env: NAME}` or `{file: path}` (differs per environment, not secret): its
name is checked at load, its value once it is read, by the same schema. A loaded schema
returns a frozen dataclass (a `ConnectorOptions`), which the connector reads as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, post_load

from sync_pipeline.config import StrictSchema

REQUIRED = "expected a value (required)"
DIGITS = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class ConnectorOptions:
    """The base of each vendor's validated options (the dataclass its OPTIONS schema builds)."""


class OptionsSchema(StrictSchema):
    """Options of one connector (or one nested option): every name it reads, each typed, and
    `BUILDS`, the frozen dataclass `load` returns. An unknown name is refused with the names
    there are; a required one that is absent says so."""

    BUILDS: ClassVar[Callable[..., object]]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        known = ", ".join(sorted(self.fields))
        self.error_messages = {
            **self.error_messages,
            "unknown": f"unknown option; expected one of {known}",
        }
        for field in self.fields.values():
            field.error_messages = {**field.error_messages, "required": REQUIRED}

    @post_load
    def _build(self, data: dict[str, Any], partial: Any = None, **_: Any) -> object:
        """The dataclass; a partial load (references not read yet) only checks."""
        return data if partial else self.BUILDS(**data)


class Text(fields.Field[str]):
    """A non-empty text; a number is taken as its digits (ids such as an agent id are written
    either way, and a value read from the environment is always text)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValidationError("expected a text")
        text = str(value)
        if not text.strip():
            raise ValidationError("expected a non-empty text")
        return text


class Whole(fields.Field[int]):
    """A whole number, written as one or (from the environment) as its digits; never a bool
    or a fraction, which int() would quietly turn into one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and DIGITS.fullmatch(value.strip()):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("expected a whole number")
        return value


class Texts(fields.List[str]):
    """A list of non-empty texts, kept as a tuple."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Text(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return tuple(super()._deserialize(value, attr, data, **kwargs))


class Url(fields.Url):
    """An http(s) URL, checked as `base_url` is."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(schemes={"http", "https"}, require_tld=False, **kwargs)


def is_reference(value: Any) -> bool:
    """`{env: NAME}` or `{file: path}`: a value read when the environment is."""
    return isinstance(value, Mapping) and set(value) in ({"env"}, {"file"})


def check_written(schema: type[OptionsSchema], written: Mapping[str, Any]) -> None:
    """Check the options as written, before the environment is read: unknown names, and the
    type and range of every literal value; a reference's value is checked once it is read,
    by loading `schema`. Raises ValidationError with every problem."""
    checker = schema()
    references = [name for name, value in written.items() if is_reference(value)]
    problems: dict[str, Any] = {
        name: [checker.error_messages["unknown"]]
        for name in references
        if name not in checker.fields
    }
    literals = {name: value for name, value in written.items() if name not in references}
    try:
        checker.load(literals, partial=tuple(references))
    except ValidationError as exc:
        problems |= exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    if problems:
        raise ValidationError(problems)
