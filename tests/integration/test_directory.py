"""The user directory's snapshots: one query tells whether the kept snapshot still holds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.connectors.base import DirectoryUser
from sync_pipeline.pipeline import directory
from sync_pipeline.state.db import engine_for, sqlalchemy_url
from sync_pipeline.state.migrate import migrate


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    return engine_for(database_url)


def people(prefix: str, count: int) -> list[DirectoryUser]:
    return [DirectoryUser(f"{prefix}{n}", f"E{n}", None, None, f"U{n}") for n in range(count)]


def store(engine, system: str, users: list[DirectoryUser]) -> None:
    with engine.begin() as conn:
        directory.replace_users(conn, system, users)


def snapshot(engine, cache: directory.SnapshotCache) -> directory.DirectorySnapshot:
    with engine.connect() as conn:
        return cache.load(conn, ["oa", "wecom"], directory.refreshes(conn, ["oa", "wecom"]))


def test_refreshes_tell_each_platforms_users_and_leave_out_a_platform_without_any(
    engine,
) -> None:
    store(engine, "oa", people("o", 3))

    with engine.connect() as conn:
        found = directory.refreshes(conn, ["oa", "wecom"])

    assert set(found) == {"oa"}
    assert found["oa"].users == 3
    assert found["oa"].age_s < directory.REFRESH_AFTER_S


def test_a_snapshot_is_reused_while_no_platform_was_refreshed(engine) -> None:
    store(engine, "oa", people("o", 3))
    store(engine, "wecom", people("w", 3))
    cache = directory.SnapshotCache()
    first = snapshot(engine, cache)

    again = snapshot(engine, cache)

    assert again is first


def test_a_refreshed_platform_gives_a_new_snapshot_with_its_users(engine) -> None:
    store(engine, "oa", people("o", 3))
    store(engine, "wecom", people("w", 3))
    cache = directory.SnapshotCache()
    first = snapshot(engine, cache)

    store(engine, "wecom", people("w", 4))
    again = snapshot(engine, cache)

    assert again is not first
    assert again.employee_no("wecom", "w3") == "E3"  # the new user
    assert first.employee_no("wecom", "w3") is None


def test_each_engine_has_snapshots_of_its_own(engine, database_url: str) -> None:
    other = sa.create_engine(sqlalchemy_url(database_url))
    try:
        assert directory.snapshot_cache(engine) is directory.snapshot_cache(engine)
        assert directory.snapshot_cache(other) is not directory.snapshot_cache(engine)
    finally:
        other.dispose()
