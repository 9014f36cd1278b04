"""Running services (worker, Beat, webhook service) and the configuration each loaded.

A service inserts its row at start, refreshes `seen_at` while it runs and deletes the row when
it stops; one killed without a word stops refreshing, and after STALE_AFTER_S it no longer
counts as running. What a row is for: a flow file changed after a service started takes
effect only when that service restarts, and `syncctl check` and `status` name those whose
digest differs from the files' (sync_pipeline/presence.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.state.schema import service_instances

HEARTBEAT_S = 60.0
STALE_AFTER_S = 3 * HEARTBEAT_S + 30.0  # three missed heartbeats and a margin


@dataclass(frozen=True)
class Instance:
    id: int
    kind: str
    host: str
    pid: int
    config_digest: str
    started_at: datetime
    seen_at: datetime

    @property
    def name(self) -> str:
        return f"{self.kind} {self.host}:{self.pid}"


def register(conn: Connection, kind: str, host: str, pid: int, digest: str) -> int:
    """This service's row; rows of services long dead are cleared on the way."""
    conn.execute(service_instances.delete().where(service_instances.c.seen_at < _stale()))
    return int(
        conn.execute(
            service_instances.insert()
            .values(kind=kind, host=host, pid=pid, config_digest=digest)
            .returning(service_instances.c.id)
        ).scalar_one()
    )


def heartbeat(conn: Connection, instance_id: int) -> bool:
    """Still running; False if the row is gone (removed as stale, or the schema was reset)."""
    result = conn.execute(
        service_instances.update()
        .where(service_instances.c.id == instance_id)
        .values(seen_at=sa.func.now())
    )
    return result.rowcount == 1


def remove(conn: Connection, instance_id: int) -> None:
    conn.execute(service_instances.delete().where(service_instances.c.id == instance_id))


def running(conn: Connection) -> list[Instance]:
    """Services seen within STALE_AFTER_S, by kind, host and pid."""
    rows = conn.execute(
        sa.select(service_instances)
        .where(service_instances.c.seen_at >= _stale())
        .order_by(service_instances.c.kind, service_instances.c.host, service_instances.c.pid)
    )
    return [
        Instance(
            id=int(r.id),
            kind=r.kind,
            host=r.host,
            pid=int(r.pid),
            config_digest=r.config_digest,
            started_at=r.started_at,
            seen_at=r.seen_at,
        )
        for r in rows
    ]


def _stale() -> sa.ColumnElement[datetime]:
    return sa.func.now() - sa.text(f"interval '{int(STALE_AFTER_S)} seconds'")
