"""Transform: source records -> the target's canonical shape, by a declarative mapping.

A record that cannot be mapped (a required field missing, a user with no account on the
target, a status the value map does not know) becomes a dead letter with a reason an operator
can act on; the rest of the batch goes on. Errors of the directory itself (a database that is
down) are not the record's fault and propagate, so the whole batch is retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeAlias, assert_never

from sync_pipeline.errors import RecordError
from sync_pipeline.records import Record
from sync_pipeline.stages import MISSING, Template, as_text, lookup


class UserDirectory(Protocol):
    """Who is who across systems (people matched by employee number, email or mobile)."""

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        """The same person's user id on `to_system`, or None if they have no account there."""
        ...

    def employee_no(self, system: str, user_id: str) -> str | None:
        """For dead-letter reasons: the number HR and the operator know the person by."""
        ...


@dataclass(frozen=True)
class FromField:
    """Copy a value. Without a default, a missing value dead-letters the record."""

    path: str
    default: Any = MISSING


@dataclass(frozen=True)
class ConstField:
    value: Any


@dataclass(frozen=True)
class TemplateField:
    """Text built from source fields. A name without a value dead-letters the record, unless
    the field has a default, which then stands for the whole text (a message with no group
    links to the app instead of to a group)."""

    template: Template
    default: Any = MISSING


@dataclass(frozen=True)
class ValueMapField:
    """Translate a value (OA "approved" -> "Approved"); an unknown value without a default
    dead-letters the record rather than sending something nobody configured."""

    path: str
    table: Mapping[str, Any]
    default: Any = MISSING


@dataclass(frozen=True)
class UserField:
    """A user id (or a list of them) translated between systems. An unmapped user always
    dead-letters the record: a message to the wrong person or to nobody is worse than none."""

    path: str
    from_system: str
    to_system: str
    default: Any = MISSING


@dataclass(frozen=True)
class ExtractField:
    """The part of a text a regular expression finds: its first group, or the whole match
    when it has none (a project id inside a chat group's description, say). No match without
    a default dead-letters the record."""

    path: str
    pattern: re.Pattern[str]
    default: Any = MISSING


FieldSpec: TypeAlias = (
    FromField | ConstField | TemplateField | ValueMapField | UserField | ExtractField
)


@dataclass(frozen=True)
class RecordMapping:
    """Target field name -> how to compute it from the source payload, in order."""

    fields: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class TransformResult:
    records: tuple[Record, ...]  # payloads in the target's canonical shape
    dead: tuple[tuple[Record, str], ...]  # (source record, reason)


def transform(
    batch: Sequence[Record], mapping: RecordMapping, directory: UserDirectory
) -> TransformResult:
    """Map every record of a batch; unmappable records become dead letters with a reason."""
    users = _CachedDirectory(directory)
    records: list[Record] = []
    dead: list[tuple[Record, str]] = []
    for record in batch:
        try:
            payload = {
                name: _value(record, name, spec, users) for name, spec in mapping.fields.items()
            }
        except RecordError as exc:
            dead.append((record, exc.reason))
            continue
        records.append(replace(record, payload=payload))
    return TransformResult(records=tuple(records), dead=tuple(dead))


def _value(record: Record, name: str, spec: FieldSpec, users: _CachedDirectory) -> Any:
    source = record.payload
    match spec:
        case ConstField(value):
            return value
        case FromField(path, default):
            value = lookup(source, path)
            return _or_default(record, path, name, default) if _absent(value) else value
        case TemplateField(template, default):
            if not (missing := template.missing(source)):
                return template.render(source)
            if default is MISSING:
                reason = f"missing field {missing[0]} (for the template of {name})"
                raise RecordError(record.source_id, reason)
            return default
        case ValueMapField(path, table, default):
            value = lookup(source, path)
            if _absent(value):
                return _or_default(record, path, name, default)
            if str(value) in table:
                return table[str(value)]
            if default is MISSING:
                reason = f"{path} {value!r} is not in the value map of {name}"
                raise RecordError(record.source_id, reason)
            return default
        case UserField(path, from_system, to_system, default):
            value = lookup(source, path)
            if _absent(value):
                return _or_default(record, path, name, default)
            if isinstance(value, list | tuple):
                return [users.map(record, str(v), from_system, to_system) for v in value]
            return users.map(record, str(value), from_system, to_system)
        case ExtractField(path, pattern, default):
            value = lookup(source, path)
            found = None if _absent(value) else pattern.search(as_text(value))
            if found is not None:
                return found.group(1) if pattern.groups else found.group(0)
            if default is MISSING:
                reason = f"{path} has nothing matching {pattern.pattern!r} (for {name})"
                raise RecordError(record.source_id, reason)
            return default
        case _:
            assert_never(spec)


def needs(spec: FieldSpec) -> tuple[str, ...]:
    """The source paths a field cannot do without: one that has no value dead-letters the
    record (config/flow.py checks them against fields some messages lack)."""
    match spec:
        case ConstField():
            return ()
        case TemplateField(template, default):
            return template.names if default is MISSING else ()
        case (
            FromField(path, default)
            | ValueMapField(path, _, default)
            | UserField(path, _, _, default)
            | ExtractField(path, _, default)
        ):
            return (path,) if default is MISSING else ()
        case _:
            assert_never(spec)


def _absent(value: Any) -> bool:
    return value is None or value is MISSING


def _or_default(record: Record, path: str, name: str, default: Any) -> Any:
    if default is MISSING:
        raise RecordError(record.source_id, f"missing required field {path} (for {name})")
    return default


class _CachedDirectory:
    """One directory question per person per batch: approvers repeat across records."""

    def __init__(self, directory: UserDirectory) -> None:
        self._directory = directory
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def map(self, record: Record, user_id: str, from_system: str, to_system: str) -> str:
        key = (from_system, user_id, to_system)
        if key not in self._cache:
            self._cache[key] = self._directory.map_user(from_system, user_id, to_system)
        mapped = self._cache[key]
        if mapped is None:
            employee = self._directory.employee_no(from_system, user_id)
            who = f"{_system_name(from_system)} user {user_id}"
            who += f" (employee {employee})" if employee else ""
            raise RecordError(record.source_id, f"no {to_system} user for {who}")
        return mapped


def _system_name(system: str) -> str:
    return "OA" if system == "oa" else system
