"""What `syncctl status` and the demo report: per flow, its lag, last pull, last event and
dead letters, read from PostgreSQL only (status works while the workers are down, and needs
no vendor secret).

The last run is the last pull (the story of the cursor); what webhook events did is shown
beside it as the last event, so a stream of events never hides a failed pull.

Lag is what an operator means by it: the age of the oldest change at the source that we have
read and not yet synced, zero when nothing read is waiting, shown beside the time since the
newest successful pull began. Precisely, from what we store:

- a successful pull read every change made before it began (its signpost, `steps.read_window`)
  and committed it: written, skipped as unchanged or dead-lettered. As of that moment the
  flow was up to date, so `last_ok_age_s` is how old that knowledge is;
- a change read after it, by a pull still running or one that failed, waits in that pull's
  pages until they are written (status `pulled` or `planned`). The oldest such record's cursor
  value (its update time) dates the oldest unsynced change: `lag_s` is now minus that time.
  Records those pages re-read from the lookback window, older than the signpost of the
  successful pull, were synced by it and do not count;
- changes made at the source since the newest pull began are not known until the next pull
  reads them: `last_ok_age_s` bounds their age while the pulls succeed.

So lag is 0 when the newest pull succeeded and nothing read since waits; None when the flow
has never pulled successfully and has nothing waiting, when its cursor is not a time, or when
only webhook events sync it (no pull: its last event says how it goes). A dead letter is not
lag: it is counted apart, until it is replayed or discarded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.config.loader import Config
from sync_pipeline.records import iso_utc, parse_iso_utc
from sync_pipeline.state import controls, cursors, deadletters, resyncs, runs
from sync_pipeline.state.pages import WAITING
from sync_pipeline.state.schema import pages
from sync_pipeline.state.schema import runs as runs_table

NOT_PULLS = runs.NOT_PULLS


@dataclass(frozen=True)
class FlowStatus:
    flow: str
    enabled: bool
    cursor: str | None
    lag_s: float | None  # age of the oldest read, unsynced change (module docstring)
    last_run: runs.Run | None
    dead_letters: int
    last_event: runs.Run | None = None  # the newest run made by a webhook event
    last_ok_age_s: float | None = None  # since the newest successful pull began
    pullable: bool = True  # False: only webhook events sync it
    resync: resyncs.Resync | None = None  # the flow's resync going on, if one is
    paused: controls.Control | None = None  # the operator's pause, if it is paused

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "enabled": self.enabled,
            "pullable": self.pullable,
            "cursor": self.cursor,
            "lag_s": self.lag_s,
            "last_ok_age_s": self.last_ok_age_s,
            "dead_letters": self.dead_letters,
            "last_run": run_json(self.last_run),
            "last_event": run_json(self.last_event),
            "resync": resync_json(self.resync),
            "paused": None
            if self.paused is None
            else {
                "by": self.paused.by,
                "reason": self.paused.reason,
                "at": self.paused.at.isoformat(),
            },
        }


def run_json(run: runs.Run | None) -> dict[str, Any] | None:
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


def resync_json(resync: resyncs.Resync | None) -> dict[str, Any] | None:
    if resync is None:
        return None
    return {
        "id": resync.id,
        "status": resync.status.value,
        "dry_run": resync.dry_run,
        "since": resync.since,
        "position": resync.position,
        "fraction": resync.fraction(),
        "requested_by": resync.requested_by,
        "started_at": resync.started_at.isoformat(),
        "counts": dataclasses.asdict(resync.counts),
    }


def flow_statuses(engine: Engine, config: Config) -> list[FlowStatus]:
    found = []
    with engine.connect() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar_one()  # PostgreSQL's clock
        for name, flow in sorted(config.flows.items()):
            pullable = config.pullable(flow)
            lag_s, ok_age_s = _lag(conn, name, now) if pullable else (None, None)
            found.append(
                FlowStatus(
                    flow=name,
                    enabled=flow.enabled,
                    cursor=cursors.get(conn, name).cursor,
                    lag_s=lag_s,
                    last_run=runs.latest(conn, name),
                    dead_letters=deadletters.count_open(conn, name),
                    last_event=runs.latest(conn, name, webhook=True),
                    last_ok_age_s=ok_age_s,
                    pullable=pullable,
                    resync=resyncs.running(conn, name),
                    paused=controls.paused(conn, name),
                )
            )
    return found


def _lag(conn: Connection, flow: str, now: datetime) -> tuple[float | None, float | None]:
    """(lag_s, last_ok_age_s) of a pulled flow, as the module docstring defines them."""
    ok_at = _last_ok_pull(conn, flow)
    oldest = _oldest_waiting(conn, flow, ok_at)
    ok_age_s = None if ok_at is None else (now - ok_at).total_seconds()
    if oldest is None:
        return (None if ok_at is None else 0.0), ok_age_s
    try:
        return max(0.0, (now - parse_iso_utc(oldest)).total_seconds()), ok_age_s
    except ValueError:
        return None, ok_age_s  # not a time cursor


def _last_ok_pull(conn: Connection, flow: str) -> datetime | None:
    """When the newest successful pull began: everything changed before it is synced."""
    started: datetime | None = conn.execute(
        sa.select(sa.func.max(runs_table.c.started_at)).where(
            runs_table.c.flow == flow,
            runs_table.c.trigger.not_in(NOT_PULLS),
            runs_table.c.status == runs.RunStatus.SUCCEEDED.value,
        )
    ).scalar_one()
    return started


def _oldest_waiting(conn: Connection, flow: str, ok_at: datetime | None) -> str | None:
    """The smallest cursor value among records read by pulls since `ok_at` and not yet
    written, leaving out those older than its signpost (that pull synced them)."""
    record = sa.func.jsonb_array_elements(pages.c.records).table_valued("value").alias("record")
    cursor_value = record.c.value.op("->>")("cursor_value")
    query = (
        sa.select(sa.func.min(cursor_value))
        .select_from(
            pages.join(runs_table, runs_table.c.id == pages.c.run_id).join(record, sa.true())
        )
        .where(
            pages.c.flow == flow,
            pages.c.status.in_(WAITING),
            runs_table.c.trigger.not_in(NOT_PULLS),
        )
    )
    if ok_at is not None:
        query = query.where(runs_table.c.started_at > ok_at, cursor_value >= iso_utc(ok_at))
    oldest: str | None = conn.execute(query).scalar_one()
    return oldest
