"""The liveness of the no-public-URL event connections (`syncctl events connect`), kept in
PostgreSQL so that the alert evaluator (pipeline/alerts.py, kind `event_connection`) sees it.

`up` when a socket brings its first frame, `seen` as frames keep coming (at most every few
seconds), `down` when the socket is lost or silent; an outage is counted once, however many
reconnects fail inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import event_connections


@dataclass(frozen=True)
class Liveness:
    connector: str
    alive: bool
    since: datetime
    seen_at: datetime
    outages: int
    detail: str


def up(conn: Connection, connector: str) -> None:
    now = sa.func.now()
    stmt = insert(event_connections).values(
        connector=connector, alive=True, since=now, seen_at=now, detail=""
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["connector"],
            set_={
                "alive": True,
                "seen_at": now,
                "detail": "",
                "since": sa.case((event_connections.c.alive, event_connections.c.since), else_=now),
            },
        )
    )


def seen(conn: Connection, connector: str) -> None:
    conn.execute(
        sa.update(event_connections)
        .where(event_connections.c.connector == connector)
        .values(seen_at=sa.func.now())
    )


def down(conn: Connection, connector: str, detail: str) -> None:
    """Mark the connection dead; a new outage only if it was alive (or never seen)."""
    now = sa.func.now()
    stmt = insert(event_connections).values(
        connector=connector, alive=False, since=now, seen_at=now, outages=1, detail=detail
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["connector"],
            set_={
                "alive": False,
                "detail": detail,
                "since": sa.case((event_connections.c.alive, now), else_=event_connections.c.since),
                "outages": sa.case(
                    (event_connections.c.alive, event_connections.c.outages + 1),
                    else_=event_connections.c.outages,
                ),
            },
        )
    )


def get(conn: Connection, connector: str) -> Liveness | None:
    row = conn.execute(
        sa.select(event_connections).where(event_connections.c.connector == connector)
    ).one_or_none()
    if row is None:
        return None
    return Liveness(
        row.connector, row.alive, row.since, row.seen_at, int(row.outages), str(row.detail)
    )
