"""A service's presence: recorded at start with the digest of the configuration it loaded,
gone when it stops, and no longer counted as running once it stops refreshing it."""

from __future__ import annotations

import os

import sqlalchemy as sa

from sync_pipeline.presence import Presence
from sync_pipeline.state import instances
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.schema import service_instances


def running(database_url: str) -> list[instances.Instance]:
    with engine_for(database_url).connect() as conn:
        return instances.running(conn)


def test_given_a_started_presence_it_is_running_with_its_digest_until_it_stops(
    database_url: str,
) -> None:
    migrate(database_url)
    presence = Presence(database_url, "beat", "d" * 64)

    presence.start()
    [found] = running(database_url)
    presence.stop()

    assert (found.kind, found.pid, found.config_digest) == ("beat", os.getpid(), "d" * 64)
    assert running(database_url) == []


def test_given_a_service_that_stopped_refreshing_it_is_not_running(database_url: str) -> None:
    migrate(database_url)
    with engine_for(database_url).begin() as conn:
        instances.register(conn, "worker", "host", 1, "d" * 64)
        conn.execute(
            service_instances.update().values(seen_at=sa.func.now() - sa.text("interval '1 hour'"))
        )

    assert running(database_url) == []
