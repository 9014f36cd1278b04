"""A resync's pacing and how far through its window it is (pipeline/resync.py,
state/resyncs.py): pure arithmetic over its calls and its checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync_pipeline.pipeline.resync import Pace
from sync_pipeline.state.resyncs import Resync, ResyncCounts, ResyncStatus


def test_a_page_of_calls_waits_as_long_as_the_share_allows_them() -> None:
    assert Pace(calls_per_s=5.0).wait_s(calls=10, took_s=0.5) == pytest.approx(1.5)


def test_a_page_slower_than_its_share_does_not_wait() -> None:
    assert Pace(calls_per_s=5.0).wait_s(calls=10, took_s=3.0) == 0.0


def test_without_a_stated_limit_a_resync_does_not_wait() -> None:
    assert Pace(calls_per_s=None).wait_s(calls=10, took_s=0.0) == 0.0


def resync_at(
    position: str | None,
    since: str | None = "2026-01-01T00:00:00Z",
    first: str | None = None,
    status: ResyncStatus = ResyncStatus.RUNNING,
) -> Resync:
    return Resync(
        id=1,
        flow="f",
        since=since,
        until="2026-01-11T00:00:00Z",
        dry_run=False,
        status=status,
        page_token="t",
        position=position,
        first_position=first,
        counts=ResyncCounts(),
        run_id=None,
        requested_by="me",
        started_at=datetime(2026, 1, 11, tzinfo=UTC),
        finished_at=None,
        error=None,
    )


def test_the_fraction_read_is_the_position_within_the_window() -> None:
    assert resync_at("2026-01-03T12:00:00Z").fraction() == pytest.approx(0.25)


def test_a_resync_from_the_beginning_measures_from_its_first_record() -> None:
    found = resync_at("2026-01-06T00:00:00Z", since=None, first="2026-01-01T00:00:00Z")

    assert found.fraction() == pytest.approx(0.5)


def test_a_position_that_is_not_a_time_has_no_fraction() -> None:
    assert resync_at("000123", since="000001").fraction() is None


def test_a_resync_that_read_nothing_yet_has_no_fraction() -> None:
    assert resync_at(None).fraction() is None


def test_a_finished_resync_is_all_the_way_through() -> None:
    assert resync_at(None, status=ResyncStatus.SUCCEEDED).fraction() == 1.0
