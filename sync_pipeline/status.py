"""What `syncctl status` and the demo report: per flow, its cursor, lag, last run and dead
letters, read from PostgreSQL only (status works while the workers are down).

The last run is the last pull (the story of the cursor); what webhook events did is shown
beside it as the last event, so a stream of events never hides a failed pull."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from sync_pipeline.config.loader import Config
from sync_pipeline.records import parse_iso_utc
from sync_pipeline.state import cursors, deadletters, runs


@dataclass(frozen=True)
class FlowStatus:
    flow: str
    enabled: bool
    cursor: str | None
    lag_s: float | None  # now - cursor, for time cursors
    last_run: runs.Run | None
    dead_letters: int
    last_event: runs.Run | None = None  # the newest run made by a webhook event

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "enabled": self.enabled,
            "cursor": self.cursor,
            "lag_s": self.lag_s,
            "dead_letters": self.dead_letters,
            "last_run": _run_json(self.last_run),
            "last_event": _run_json(self.last_event),
        }


def _run_json(run: runs.Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": run.status.value,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "counts": dict(run.counts),
        "cursor_before": run.cursor_before,
        "cursor_after": run.cursor_after,
        "error": run.error,
    }


def flow_statuses(engine: Engine, config: Config) -> list[FlowStatus]:
    now = datetime.now(UTC)
    found = []
    with engine.connect() as conn:
        for name, flow in sorted(config.flows.items()):
            cursor = cursors.get(conn, name).cursor
            found.append(
                FlowStatus(
                    flow=name,
                    enabled=flow.enabled,
                    cursor=cursor,
                    lag_s=_lag(cursor, now),
                    last_run=runs.latest(conn, name),
                    dead_letters=deadletters.count_open(conn, name),
                    last_event=runs.latest(conn, name, webhook=True),
                )
            )
    return found


def _lag(cursor: str | None, now: datetime) -> float | None:
    if not cursor:
        return None
    try:
        return (now - parse_iso_utc(cursor)).total_seconds()
    except ValueError:
        return None  # not a time cursor
