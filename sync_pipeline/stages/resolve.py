"""Resolve: for two-way flows, decide per field what a source change may overwrite.

Compared field by field against the payload as of our last sync of the pair (the common
base): a source record equal to the base is our own write coming back (an echo) and is
dropped, which is what stops two-way ping-pong; a field only one side changed goes through; a
field both sides changed is settled by field ownership first, then by the flow's policy.
Comparing whole records instead would lose a concurrent edit of another field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sync_pipeline.records import Record
from sync_pipeline.stages import MISSING


class Policy(StrEnum):
    SOURCE_WINS = "source_wins"
    TARGET_WINS = "target_wins"
    NEWEST_WINS = "newest_wins"  # by version; a tie keeps the target, so nothing ping-pongs
    MANUAL = "manual"  # both changed: report a conflict, write neither value


class Side(StrEnum):
    SOURCE = "source"
    TARGET = "target"


@dataclass(frozen=True)
class TargetState:
    """The counterpart of a source record on the target, in the same canonical shape."""

    payload: Mapping[str, Any]  # the target object now
    version: str  # its version: ISO-8601 UTC time or a revision number
    synced: Mapping[str, Any] | None  # the pair as of our last sync either way; None: never


@dataclass(frozen=True)
class Conflict:
    record: Record
    field: str
    source_value: Any
    target_value: Any


@dataclass(frozen=True)
class ResolveResult:
    to_write: tuple[Record, ...]  # payload: the target's object with the winning fields
    skipped: tuple[Record, ...]  # echoes, and changes the target already has or wins over
    conflicts: tuple[Conflict, ...]  # MANUAL policy: fields both sides changed differently


def resolve(
    batch: Sequence[Record],
    target_state: Mapping[str, TargetState],
    policy: Policy,
    ownership: Mapping[str, Side],
) -> ResolveResult:
    """Split a batch of mapped source records into writes, skips and conflicts."""
    to_write: list[Record] = []
    skipped: list[Record] = []
    conflicts: list[Conflict] = []
    for record in batch:
        state = target_state.get(record.source_id)
        if state is None:  # nothing on the target yet: create it whole
            to_write.append(record)
            continue
        wins: dict[str, Any] = {}
        clashes: list[Conflict] = []
        for name, value in record.payload.items():
            there = state.payload.get(name, MISSING)
            if value == there or not _changed(state.synced, name, value):
                continue
            winner = _winner(record, state, name, policy, ownership)
            if winner is Side.SOURCE:
                wins[name] = value
            elif winner is None:
                clashes.append(Conflict(record, name, value, there))
        conflicts.extend(clashes)
        if wins:
            to_write.append(replace(record, payload={**state.payload, **wins}))
        elif not clashes:
            skipped.append(record)
    return ResolveResult(tuple(to_write), tuple(skipped), tuple(conflicts))


def _changed(synced: Mapping[str, Any] | None, name: str, value: Any) -> bool:
    """Whether `value` differs from the last sync; for the source, False means our own echo."""
    return synced is None or synced.get(name, MISSING) != value


def _winner(
    record: Record, state: TargetState, name: str, policy: Policy, ownership: Mapping[str, Side]
) -> Side | None:
    """Which side's value stands for a field the source changed; None: a manual conflict."""
    if name in ownership:
        return ownership[name]
    target_changed = _changed(state.synced, name, state.payload.get(name, MISSING))
    if not target_changed or policy is Policy.SOURCE_WINS:
        return Side.SOURCE
    if policy is Policy.TARGET_WINS:
        return Side.TARGET
    if policy is Policy.NEWEST_WINS:
        return Side.SOURCE if _newer(record.version, state.version) else Side.TARGET
    return None


def _newer(a: str, b: str) -> bool:
    """Versions compare as numbers when both are digits, else as ISO-8601 UTC text."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a > b
