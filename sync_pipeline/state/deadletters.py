"""Dead letters: a record that cannot be synced waits here with its reason until replayed.

A letter is open until a replay finds its cause gone (closed) or the operator discards it
(`discard`: kept, with who and why). Only open letters count, replay and show by default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import dead_letters


@dataclass(frozen=True)
class DeadLetter:
    id: int
    flow: str
    run_id: int | None
    source_id: str
    record: Mapping[str, Any]
    reason: str
    error_class: str
    created_at: datetime
    replay_count: int
    resolved_at: datetime | None = None  # closed by a replay, or discarded, at
    discarded_by: str | None = None
    discard_reason: str | None = None

    @property
    def state(self) -> str:
        """open, closed (a replay found its cause gone) or discarded (by an operator)."""
        if self.discard_reason is not None:
            return "discarded"
        return "open" if self.resolved_at is None else "closed"

    def as_json(self) -> dict[str, Any]:
        """What `syncctl dlq list --json` prints (the record itself stays in the table)."""
        return {
            "id": self.id,
            "flow": self.flow,
            "run_id": self.run_id,
            "source_id": self.source_id,
            "reason": self.reason,
            "error_class": self.error_class,
            "created_at": self.created_at.isoformat(),
            "replay_count": self.replay_count,
            "state": self.state,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "discarded_by": self.discarded_by,
            "discard_reason": self.discard_reason,
        }


def add(
    conn: Connection,
    flow: str,
    run_id: int | None,
    items: Iterable[tuple[str, Mapping[str, Any], str, str]],
) -> int:
    """Insert (source_id, record json, reason, error class) rows; returns how many.

    A record already waiting with the same reason is not added twice (redelivered pages, a
    replay that fails again): its `last_seen_at` moves to now instead.
    """
    rows = [
        {
            "flow": flow,
            "run_id": run_id,
            "source_id": source_id,
            "record": dict(record),
            "reason": reason,
            "error_class": error_class,
        }
        for source_id, record, reason, error_class in items
    ]
    added = 0
    for row in rows:
        exists = conn.execute(
            sa.select(dead_letters.c.id).where(
                dead_letters.c.flow == flow,
                dead_letters.c.source_id == row["source_id"],
                dead_letters.c.reason == row["reason"],
                dead_letters.c.resolved_at.is_(None),
            )
        ).first()
        if exists is None:
            conn.execute(dead_letters.insert().values(**row))
            added += 1
        else:
            conn.execute(
                dead_letters.update()
                .where(dead_letters.c.id == exists.id)
                .values(last_seen_at=sa.func.now())
            )
    return added


def open_letters(
    conn: Connection,
    flow: str | None = None,
    limit: int = 500,
    letter_ids: Iterable[int] | None = None,
) -> list[DeadLetter]:
    return letters(conn, flow, limit, letter_ids, everything=False)


def letters(
    conn: Connection,
    flow: str | None = None,
    limit: int = 500,
    letter_ids: Iterable[int] | None = None,
    *,
    everything: bool = False,
) -> list[DeadLetter]:
    """Open letters, oldest first; with `everything`, closed and discarded ones too."""
    query = sa.select(dead_letters)
    if not everything:
        query = query.where(dead_letters.c.resolved_at.is_(None))
    if flow:
        query = query.where(dead_letters.c.flow == flow)
    if letter_ids is not None:
        query = query.where(dead_letters.c.id.in_(list(letter_ids)))
    rows = conn.execute(query.order_by(dead_letters.c.id).limit(limit))
    return [
        DeadLetter(
            id=int(r.id),
            flow=r.flow,
            run_id=r.run_id,
            source_id=r.source_id,
            record=r.record,
            reason=r.reason,
            error_class=r.error_class,
            created_at=r.created_at,
            replay_count=int(r.replay_count),
            resolved_at=r.resolved_at,
            discarded_by=r.discarded_by,
            discard_reason=r.discard_reason,
        )
        for r in rows
    ]


def discard(conn: Connection, letter_ids: Iterable[int], by: str, reason: str) -> list[int]:
    """Mark open letters discarded by `by` because of `reason`; returns the ids it marked (a
    letter already closed or discarded, or unknown, is left as it is). Kept, not deleted."""
    ids = list(letter_ids)
    if not ids:
        return []
    rows = conn.execute(
        dead_letters.update()
        .where(dead_letters.c.id.in_(ids), dead_letters.c.resolved_at.is_(None))
        .values(resolved_at=sa.func.now(), discarded_by=by, discard_reason=reason)
        .returning(dead_letters.c.id)
    )
    return sorted(int(row_id) for (row_id,) in rows)


def count_open(conn: Connection, flow: str) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                dead_letters.c.flow == flow, dead_letters.c.resolved_at.is_(None)
            )
        ).scalar_one()
    )


def mark_replayed(conn: Connection, letter_ids: Iterable[int]) -> None:
    """Count a replay attempt on letters (they stay open until their cause is gone)."""
    conn.execute(
        dead_letters.update()
        .where(dead_letters.c.id.in_(list(letter_ids)))
        .values(replayed_at=sa.func.now(), replay_count=dead_letters.c.replay_count + 1)
    )


def failing_since(
    conn: Connection, flow: str, source_ids: Iterable[str], since: datetime
) -> set[str]:
    """The source ids that have an open letter whose failure was seen at or after `since`:
    their replay failed again (with the same reason or a new one)."""
    rows = conn.execute(
        sa.select(dead_letters.c.source_id).where(
            dead_letters.c.flow == flow,
            dead_letters.c.source_id.in_(list(source_ids)),
            dead_letters.c.resolved_at.is_(None),
            dead_letters.c.last_seen_at >= since,
        )
    )
    return {str(source_id) for (source_id,) in rows}


def close(conn: Connection, letter_ids: Iterable[int]) -> int:
    """Close letters whose cause a replay found gone (their replay is already counted)."""
    ids = list(letter_ids)
    if not ids:
        return 0
    result = conn.execute(
        dead_letters.update()
        .where(dead_letters.c.id.in_(ids), dead_letters.c.resolved_at.is_(None))
        .values(resolved_at=sa.func.now())
    )
    return int(result.rowcount)
