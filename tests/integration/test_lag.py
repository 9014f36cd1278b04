"""Lag, as `syncctl status` shows it: the age of the oldest change we have read at the source
and not yet synced (zero when nothing waits), beside the time since the newest successful pull
began (sync_pipeline/status.py defines both from the runs and pages we store)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipeline.config.loader import load_config
from sync_pipeline.records import Record, iso_utc
from sync_pipeline.state import cursors, pages, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.schema import runs as runs_table
from sync_pipeline.status import FlowStatus, flow_statuses
from tests.unit.config.test_examples import CONFIG_DIR

FLOW = "approvals_to_wecom"


@pytest.fixture
def now() -> datetime:
    """The test's own now: each scene is laid out back from it."""
    return datetime.now(UTC)


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    migrate(database_url)
    return engine_for(database_url)


def status(engine: sa.Engine, flow: str = FLOW) -> FlowStatus:
    config = load_config(CONFIG_DIR, environment=False)
    return {s.flow: s for s in flow_statuses(engine, config)}[flow]


def pull(
    engine: sa.Engine,
    began: datetime,
    ended: runs.RunStatus | None,
    waiting: Sequence[datetime] = (),
    cursor: datetime | None = None,
) -> int:
    """A pull that began at `began`, ended as `ended` (None: still running), with a page of
    records changed at `waiting` not yet written, and the cursor it committed."""
    with engine.begin() as conn:
        fence = cursors.next_fence(conn, FLOW)
        run_id = runs.start(conn, FLOW, "schedule", fence, None)
        conn.execute(runs_table.update().where(runs_table.c.id == run_id).values(started_at=began))
        if waiting:
            records = [Record(f"r{i}", "v1", iso_utc(at), {}) for i, at in enumerate(waiting)]
            pages.store(conn, run_id, FLOW, 0, records, None)
        if cursor is not None:
            cursors.advance(conn, FLOW, fence, iso_utc(cursor))
        if ended is not None:
            runs.finish(conn, run_id, ended, error="oa 500" if ended.value == "failed" else None)
    return run_id


def test_given_no_pull_ever_lag_is_unknown(engine) -> None:
    shown = status(engine)

    assert (shown.lag_s, shown.last_ok_age_s) == (None, None)


def test_given_a_quiet_source_since_a_successful_pull_lag_is_zero_however_old_the_cursor(
    engine, now
) -> None:
    two_days_ago = now - timedelta(days=2)
    pull(engine, now - timedelta(minutes=1), runs.RunStatus.SUCCEEDED, cursor=two_days_ago)

    shown = status(engine)

    assert shown.lag_s == 0
    assert shown.last_ok_age_s == pytest.approx(60, abs=30)


def test_given_changes_read_and_not_yet_written_lag_is_the_age_of_the_oldest(engine, now) -> None:
    ok = now - timedelta(minutes=10)
    pull(engine, ok, runs.RunStatus.SUCCEEDED)
    oldest, newer = now - timedelta(minutes=8), now - timedelta(minutes=2)
    pull(engine, now - timedelta(minutes=1), None, waiting=[newer, oldest])

    shown = status(engine)

    assert shown.lag_s == pytest.approx(8 * 60, abs=30)
    assert shown.last_ok_age_s == pytest.approx(10 * 60, abs=30)


def test_given_a_pull_rereading_its_lookback_what_the_last_success_synced_is_not_lag(
    engine, now
) -> None:
    ok = now - timedelta(minutes=10)
    pull(engine, ok, runs.RunStatus.SUCCEEDED)
    pull(engine, now - timedelta(minutes=1), None, waiting=[ok - timedelta(minutes=4)])

    assert status(engine).lag_s == 0


def test_given_a_failed_pull_its_unwritten_changes_stay_lag(engine, now) -> None:
    pull(engine, now - timedelta(hours=2), runs.RunStatus.SUCCEEDED)
    changed = now - timedelta(hours=1)
    pull(engine, now - timedelta(minutes=50), runs.RunStatus.FAILED, waiting=[changed])

    shown = status(engine)

    assert shown.lag_s == pytest.approx(3600, abs=30)
    assert shown.last_run is not None
    assert shown.last_run.status is runs.RunStatus.FAILED


def test_given_a_flow_only_webhook_events_sync_it_has_no_lag(engine) -> None:
    shown = status(engine, "agora_important_messages_to_oa_todos")

    assert (shown.pullable, shown.lag_s) == (False, None)
