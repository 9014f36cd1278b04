"""Effect keys: each remote effect happens once, whatever Celery redelivers (DESIGN.md section 3).

1. `claim` inserts the key as `pending` and commits BEFORE the vendor is called.
2. The vendor is called with its own dedupe handle derived from the key where one exists.
3. `finish` records `done` (+ the vendor's object id) or `failed` in one transaction with the
   id map.
4. A redelivered task that finds `done` does nothing; one that finds `pending` does not know the
   outcome and must retry only under the vendor's dedupe handle, look the effect up, or park it
   as `unknown` for reconciliation. Never resend blindly; never drop silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import effects


class EffectStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Effect:
    key: str
    status: EffectStatus
    vendor_ref: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    # When the key last changed hands or status: for a pending key, when the attempt making
    # it claimed it (its in-flight window starts there, not at the key's first claim).
    claimed_at: datetime
    source_id: str | None = None
    kind: str | None = None
    recipient: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int = 0  # the number an operator names it by
    flow: str = ""
    target_system: str = ""


@dataclass(frozen=True)
class About:
    """What an effect is, kept beside its key: which source record it serves, what kind of
    effect (card, message, oa_action, ...) and for whom. Card updates find the cards of a
    record by it."""

    source_id: str | None = None
    kind: str | None = None
    recipient: str | None = None
    # Kept with the key from the attempt that makes it on (the intent of an OA decision, for
    # settling a lost answer), and in its done record with the vendor's handles.
    detail: Mapping[str, Any] = field(default_factory=dict)


def claim(
    conn: Connection,
    flow: str,
    target_system: str,
    keys: Sequence[str],
    about: Mapping[str, About] | None = None,
) -> dict[str, Effect]:
    """Insert missing keys as pending (attempts bumped for every claim) and return all of them.

    A failed key is taken again: pending, its claim time now, so that an attempt reading it
    while this one calls the vendor sees it in flight instead of making it a second time. A
    pending, done or unknown key keeps its status and claim time: it is not ours to take.
    The caller commits this transaction before calling the vendor; an attempt whose claim
    raced another's finds `attempts` bumped twice (see pipeline/effects.py).
    """
    if not keys:
        return {}
    about = about or {}
    stmt = insert(effects).values(
        [
            {
                "key": k,
                "flow": flow,
                "target_system": target_system,
                "status": EffectStatus.PENDING,
                "source_id": about.get(k, About()).source_id,
                "kind": about.get(k, About()).kind,
                "recipient": about.get(k, About()).recipient,
                "detail": dict(about.get(k, About()).detail) or sa.null(),
            }
            for k in keys
        ]
    )
    conn.execute(stmt.on_conflict_do_nothing(index_elements=[effects.c.key]))
    failed = effects.c.status == EffectStatus.FAILED.value
    conn.execute(
        effects.update()
        .where(effects.c.key.in_(list(keys)), effects.c.status != EffectStatus.DONE.value)
        .values(
            attempts=effects.c.attempts + 1,
            status=sa.case((failed, EffectStatus.PENDING.value), else_=effects.c.status),
            updated_at=sa.case((failed, sa.func.now()), else_=effects.c.updated_at),
        )
    )
    return get(conn, keys)


def release(conn: Connection, keys: Sequence[str], reason: str) -> None:
    """Claims an attempt took and never tried (a rate limit stopped it before them) back to
    failed: nothing was sent, so the next attempt makes them at once instead of waiting out
    an in-flight window for a call nobody is making."""
    if not keys:
        return
    conn.execute(
        effects.update()
        .where(effects.c.key.in_(list(keys)), effects.c.status == EffectStatus.PENDING.value)
        .values(status=EffectStatus.FAILED.value, last_error=reason, updated_at=sa.func.now())
    )


def _effect(row: Any) -> Effect:
    return Effect(
        row.key,
        EffectStatus(row.status),
        row.vendor_ref,
        int(row.attempts),
        row.last_error,
        row.created_at,
        row.updated_at,
        row.source_id,
        row.kind,
        row.recipient,
        dict(row.detail or {}),
        int(row.id),
        row.flow,
        row.target_system,
    )


def get(conn: Connection, keys: Sequence[str]) -> dict[str, Effect]:
    rows = conn.execute(sa.select(effects).where(effects.c.key.in_(list(keys))))
    return {row.key: _effect(row) for row in rows}


def finish(
    conn: Connection,
    key: str,
    status: EffectStatus,
    vendor_ref: str | None = None,
    error: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record the vendor's answer; a `done` effect is never changed again.

    `detail` keeps the vendor's handles that later effects need (a card's response_code and
    task_id, a message id): never a secret, never a whole response body.
    """
    values: dict[str, Any] = {
        "status": status.value,
        "vendor_ref": vendor_ref,
        "last_error": error,
        "updated_at": sa.func.now(),
    }
    if detail:
        values["detail"] = dict(detail)
    conn.execute(
        effects.update()
        .where(effects.c.key == key, effects.c.status != EffectStatus.DONE.value)
        .values(**values)
    )


def done_for_source(
    conn: Connection, flow: str, source_id: str, kind: str | None = None
) -> list[Effect]:
    """The effects made for one source record (e.g. every card sent for an approval), oldest
    first."""
    query = sa.select(effects).where(
        effects.c.flow == flow,
        effects.c.source_id == source_id,
        effects.c.status == EffectStatus.DONE.value,
    )
    if kind is not None:
        query = query.where(effects.c.kind == kind)
    return [_effect(row) for row in conn.execute(query.order_by(effects.c.created_at))]


def tried_for_source(
    conn: Connection, flow: str, source_id: str, kind: str, recipient: str | None = None
) -> list[Effect]:
    """Every effect of one kind claimed for a source record, whatever its status, oldest
    first: an OA action still pending may have reached the OA, so it counts too."""
    query = sa.select(effects).where(
        effects.c.flow == flow, effects.c.source_id == source_id, effects.c.kind == kind
    )
    if recipient is not None:
        query = query.where(effects.c.recipient == recipient)
    return [_effect(row) for row in conn.execute(query.order_by(effects.c.created_at))]


def of_sources(
    conn: Connection, flow: str, source_ids: Sequence[str], kinds: Sequence[str]
) -> list[Effect]:
    """Every effect of these kinds claimed for these source records, whatever its status,
    oldest first: one query for a batch (the cards of decided requests, their updates)."""
    if not source_ids:
        return []
    query = sa.select(effects).where(
        effects.c.flow == flow,
        effects.c.source_id.in_(list(source_ids)),
        effects.c.kind.in_(list(kinds)),
    )
    return [_effect(row) for row in conn.execute(query.order_by(effects.c.created_at))]


def count_by_status(conn: Connection, flow: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(effects.c.status, sa.func.count())
        .where(effects.c.flow == flow)
        .group_by(effects.c.status)
    )
    return {str(status): int(n) for status, n in rows}


# -- what an operator sees and settles (`syncctl effects`) ---------------------------------------
def listed(conn: Connection, status: EffectStatus, limit: int) -> list[Effect]:
    """The newest `limit` effects with `status`, oldest first."""
    newest = (
        sa.select(effects)
        .where(effects.c.status == status.value)
        .order_by(effects.c.updated_at.desc(), effects.c.id.desc())
        .limit(limit)
    )
    return sorted((_effect(row) for row in conn.execute(newest)), key=lambda e: e.id)


def by_id(conn: Connection, effect_id: int) -> Effect | None:
    row = conn.execute(sa.select(effects).where(effects.c.id == effect_id)).one_or_none()
    return None if row is None else _effect(row)


def settle(conn: Connection, effect_id: int, status: EffectStatus, note: str) -> bool:
    """An operator's verdict on a parked (unknown) effect: DONE, they saw it at the vendor;
    FAILED, it is not there and may be made again (a failed key is claimed again). False when
    the effect is not parked (unknown) any more."""
    changed = conn.execute(
        effects.update()
        .where(effects.c.id == effect_id, effects.c.status == EffectStatus.UNKNOWN.value)
        .values(status=status.value, last_error=note, updated_at=sa.func.now())
    )
    return changed.rowcount == 1
