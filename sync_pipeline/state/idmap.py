"""The id map: which target object each source record became, and what we last wrote there.

Dedupe reads it (a record whose content we already wrote is skipped), two-way sync reads it to
drop our own echoes, and updates read it to find the object to update.

A scheduled pull and a webhook can sync the same record at once, and finish in either order.
Each link remembers when its source version was read (`seen_at`); a write of a version read
earlier than the one held is not allowed to replace it (the id map never goes back), while a
target object made on the way is always kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import id_map


@dataclass(frozen=True)
class Link:
    source_system: str
    source_stream: str
    source_id: str
    target_system: str
    target_stream: str
    target_id: str | None
    content_hash: str
    source_version: str | None
    payload: Mapping[str, Any] | None = None  # the mapped payload last handled
    seen_at: datetime | None = None  # when `source_version` was read from the source


def lookup(
    conn: Connection,
    source: tuple[str, str],
    target: tuple[str, str],
    source_ids: Sequence[str],
) -> dict[str, Link]:
    """Links of these source ids to this target, by source id (one query per page)."""
    if not source_ids:
        return {}
    rows = conn.execute(
        sa.select(id_map).where(
            id_map.c.source_system == source[0],
            id_map.c.source_stream == source[1],
            id_map.c.target_system == target[0],
            id_map.c.target_stream == target[1],
            id_map.c.source_id.in_(list(source_ids)),
        )
    )
    return {
        row.source_id: Link(
            row.source_system,
            row.source_stream,
            row.source_id,
            row.target_system,
            row.target_stream,
            row.target_id,
            row.content_hash,
            row.source_version,
            row.payload,
            row.seen_at,
        )
        for row in rows
    }


def upsert(conn: Connection, flow: str, links: Iterable[Link]) -> int:
    """Record what was written; a later read of the same source record replaces the link.

    A link read before the one held (a slow pull overtaken by a webhook) keeps the held
    version, hash and payload, and only adds the target object it made, if any. A link
    without `seen_at` (read at an unknown time) replaces the held one, as before 0005.
    """
    rows = [
        {
            "flow": flow,
            "source_system": link.source_system,
            "source_stream": link.source_stream,
            "source_id": link.source_id,
            "target_system": link.target_system,
            "target_stream": link.target_stream,
            "target_id": link.target_id,
            "content_hash": link.content_hash,
            "source_version": link.source_version,
            "payload": None if link.payload is None else dict(link.payload),
            "seen_at": link.seen_at,
        }
        for link in links
    ]
    if not rows:
        return 0
    stmt = insert(id_map).values(rows)
    incoming = stmt.excluded
    not_older = sa.or_(
        id_map.c.seen_at.is_(None),
        incoming.seen_at.is_(None),
        incoming.seen_at >= id_map.c.seen_at,
    )

    def newest(column: str) -> Any:
        return sa.case((not_older, incoming[column]), else_=id_map.c[column])

    stmt = stmt.on_conflict_do_update(
        constraint="id_map_source_target",
        set_={
            "target_id": sa.func.coalesce(incoming.target_id, id_map.c.target_id),
            "content_hash": newest("content_hash"),
            "source_version": newest("source_version"),
            "payload": newest("payload"),
            "seen_at": sa.func.greatest(incoming.seen_at, id_map.c.seen_at),
            "written_at": sa.func.now(),
        },
    )
    conn.execute(stmt)
    return len(rows)


def clock(conn: Connection) -> datetime:
    """PostgreSQL's clock: reads made on different hosts are ordered by one clock, not theirs."""
    moment: datetime = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
    return moment


def hashes(links: Mapping[str, Link]) -> dict[str, str]:
    """source id -> content hash last written, the shape the dedupe stage takes."""
    return {source_id: link.content_hash for source_id, link in links.items()}
