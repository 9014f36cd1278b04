"""One record never stops a batch: run stages over a batch, and when they raise, set apart
the records they raise on.

A pure stage raises only on what it was given, so a batch that makes the stages raise holds
a record they cannot handle (a value nested deeper than a renderer recurses, a value of a type
no mapping expected): each record is tried alone, the ones that raise come back with the
reason, and the stages run once more over the rest, so their batch-wide logic (dedupe's last
copy wins) still holds. Transient errors are never a record's fault and propagate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sync_pipeline.errors import Transient
from sync_pipeline.records import DeadRecord, Record

T = TypeVar("T")
Dead = tuple[DeadRecord, ...]


def isolated(
    batch: Sequence[Record],
    stages: Callable[[Sequence[Record]], T],
    why: Callable[[Exception], str],
) -> tuple[T, Dead]:
    """`stages` over the batch, or over the records they do not raise on alone; the records
    they raise on come back with the reason `why` gives for the error, and its class."""
    try:
        return stages(batch), ()
    except Transient:
        raise
    except Exception:  # noqa: BLE001 - traced to its records below
        dead = _raising_alone(batch, stages, why)
    rest = [record for record in batch if all(record is not d.record for d in dead)]
    return stages(rest), dead


def _raising_alone(
    batch: Sequence[Record],
    stages: Callable[[Sequence[Record]], object],
    why: Callable[[Exception], str],
) -> Dead:
    dead: list[DeadRecord] = []
    for record in batch:
        try:
            stages([record])
        except Transient:
            raise
        except Exception as exc:  # noqa: BLE001 - this record's dead letter says why
            dead.append(DeadRecord(record, why(exc), type(exc).__name__))
    return tuple(dead)
