"""The id map: which target object each source record became, and what we last wrote there.

Dedupe reads it (a record whose content we already wrote is skipped), two-way sync reads it to
drop our own echoes, and updates read it to find the object to update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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
        )
        for row in rows
    }


def upsert(conn: Connection, flow: str, links: Iterable[Link]) -> int:
    """Record what was written; a later write of the same source record replaces the link."""
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
        }
        for link in links
    ]
    if not rows:
        return 0
    stmt = insert(id_map).values(rows)
    stmt = stmt.on_conflict_do_update(
        constraint="id_map_source_target",
        set_={
            "target_id": sa.func.coalesce(stmt.excluded.target_id, id_map.c.target_id),
            "content_hash": stmt.excluded.content_hash,
            "source_version": stmt.excluded.source_version,
            "payload": stmt.excluded.payload,
            "written_at": sa.func.now(),
        },
    )
    conn.execute(stmt)
    return len(rows)


def hashes(links: Mapping[str, Link]) -> dict[str, str]:
    """source id -> content hash last written, the shape the dedupe stage takes."""
    return {source_id: link.content_hash for source_id, link in links.items()}
