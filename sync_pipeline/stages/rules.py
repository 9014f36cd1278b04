"""Rules: declarative conditions deciding which records and events sync or notify.

Conditions are frozen values built (and validated) from the flow config; `evaluate` reads a
payload and, for `ChangedTo`, the payload as it was last synced, which the caller takes from
the id map. Keyword and regex tests read a text field; `In` also answers "sender in", "group
in" and "department in" (the config spells those as `sender_in` and so on).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, assert_never

from sync_pipeline.records import Record
from sync_pipeline.stages import MISSING, as_text, lookup


@dataclass(frozen=True)
class Equals:
    path: str
    value: Any


@dataclass(frozen=True)
class In:
    """The value is one of `values`; a list value (several departments) matches if any does."""

    path: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ChangedTo:
    """The value is now one of `values` and was something else before. A record never synced
    before has no "before", so it counts as changed: it is new in that state."""

    path: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Keywords:
    path: str
    words: tuple[str, ...]
    case_sensitive: bool = False


@dataclass(frozen=True)
class Regex:
    path: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Flag:
    """The message carries a flag ("important", "decision") in its list of flags."""

    name: str
    path: str = "flags"


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


Rule: TypeAlias = Equals | In | ChangedTo | Keywords | Regex | Flag | AllOf | AnyOf | Not


def evaluate(
    rule: Rule, payload: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> bool:
    """Whether `payload` satisfies `rule`; `previous` is the payload last synced, if any."""
    match rule:
        case Equals(path, value):
            return bool(lookup(payload, path) == value)
        case In(path, values):
            return _is_in(lookup(payload, path), values)
        case ChangedTo(path, values):
            now = lookup(payload, path)
            before = MISSING if previous is None else lookup(previous, path)
            return now != before and _is_in(now, values)
        case Keywords(path, words, case_sensitive):
            text = as_text(lookup(payload, path))
            if not case_sensitive:
                text, words = text.casefold(), tuple(w.casefold() for w in words)
            return any(word in text for word in words)
        case Regex(path, pattern):
            return pattern.search(as_text(lookup(payload, path))) is not None
        case Flag(name, path):
            flags = lookup(payload, path)
            return isinstance(flags, list | tuple) and name in flags
        case AllOf(rules):
            return all(evaluate(r, payload, previous) for r in rules)
        case AnyOf(rules):
            return any(evaluate(r, payload, previous) for r in rules)
        case Not(inner):
            return not evaluate(inner, payload, previous)
        case _:
            assert_never(rule)


def _is_in(value: Any, values: tuple[Any, ...]) -> bool:
    if isinstance(value, list | tuple):
        return any(v in values for v in value)
    return value is not MISSING and value in values


def paths(rule: Rule) -> tuple[str, ...]:
    """Every payload path the rule reads, in order: config checks each names a mapped field,
    since a misspelt one would never match (or, under `not`, always)."""
    match rule:
        case Equals(path) | In(path) | ChangedTo(path) | Keywords(path) | Regex(path):
            return (path,)
        case Flag(_, path):
            return (path,)
        case AllOf(rules) | AnyOf(rules):
            return tuple(p for r in rules for p in paths(r))
        case Not(inner):
            return paths(inner)
        case _:
            assert_never(rule)


def uses_previous(rule: Rule) -> bool:
    """Whether the rule needs the previous payload (config refuses it where there is none)."""
    match rule:
        case ChangedTo():
            return True
        case AllOf(rules) | AnyOf(rules):
            return any(uses_previous(r) for r in rules)
        case Not(inner):
            return uses_previous(inner)
        case _:
            return False


@dataclass(frozen=True)
class FilterResult:
    kept: tuple[Record, ...]
    skipped: tuple[Record, ...]  # matched no rule: counted as skipped, never silently lost


def filter_batch(
    batch: Sequence[Record], rule: Rule | None, previous: Mapping[str, Mapping[str, Any]]
) -> FilterResult:
    """Keep the records the flow's rule accepts; no rule keeps all.

    `previous` maps source id -> the payload last synced for it (from the id map).
    """
    if rule is None:
        return FilterResult(kept=tuple(batch), skipped=())
    kept: list[Record] = []
    skipped: list[Record] = []
    for record in batch:
        accepted = evaluate(rule, record.payload, previous.get(record.source_id))
        (kept if accepted else skipped).append(record)
    return FilterResult(kept=tuple(kept), skipped=tuple(skipped))
