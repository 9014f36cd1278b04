"""`syncctl events list` and `syncctl events replay`: failed webhook events are shown with why,
and queued again for a worker on request; nothing else is touched."""

from __future__ import annotations

import json
import uuid

import redis

from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.state import inbound
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.inbound import EventStatus
from tests.conftest import syncctl


def recorded(env: dict[str, str], status: EventStatus, error: str | None = None) -> int:
    event = InboundEvent(
        "sandbox_oa",
        "oa",
        str(uuid.uuid4()),
        EventKind.APPROVAL_CHANGED,
        "2026-11-30T10:00:00Z",
        {"source_id": "1001", "status": "approved", "version": None},
    )
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        row_id = inbound.record(conn, event)
        assert row_id is not None
        if status is not EventStatus.QUEUED:
            inbound.finish(conn, row_id, status, error)
    return row_id


def statuses(env: dict[str, str]) -> dict[int, str]:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        return {
            row_id: stored.status.value
            for status in EventStatus
            for row_id in inbound.ids_with_status(conn, status)
            if (stored := inbound.get(conn, row_id)) is not None
        }


def test_failed_events_are_listed_with_their_reason(migrated) -> None:
    failed = recorded(migrated, EventStatus.FAILED, "oa 500: the OA was down for too long")
    recorded(migrated, EventStatus.DONE)

    result = syncctl("events", "list", "--json", env=migrated)

    assert result.returncode == 0, result.stderr
    [shown] = json.loads(result.stdout)
    assert (shown["id"], shown["status"]) == (failed, "failed")
    assert shown["error"] == "oa 500: the OA was down for too long"


def test_replay_queues_the_failed_events_again_and_leaves_the_rest(migrated) -> None:
    failed = recorded(migrated, EventStatus.FAILED, "gave up")
    done = recorded(migrated, EventStatus.DONE)

    result = syncctl("events", "replay", env=migrated)

    assert result.returncode == 0, result.stderr
    assert statuses(migrated) == {failed: "queued", done: "done"}
    queue = redis.Redis.from_url(migrated["REDIS_URL"]).lrange("events", 0, -1)
    assert [json.loads(m)["headers"]["argsrepr"] for m in queue] == [f"[{failed}]"]


def test_replay_of_an_event_that_did_not_fail_changes_nothing(migrated) -> None:
    done = recorded(migrated, EventStatus.DONE)

    result = syncctl("events", "replay", str(done), env=migrated)

    assert result.returncode == 0, result.stderr
    assert f"not failed, left alone: {done}" in result.stdout
    assert statuses(migrated) == {done: "done"}
    assert redis.Redis.from_url(migrated["REDIS_URL"]).llen("events") == 0


def test_given_a_limit_list_shows_the_newest_events_newest_last(migrated) -> None:
    oldest, middle, newest = (recorded(migrated, EventStatus.FAILED, "x") for _ in range(3))

    one = syncctl("events", "list", "--limit", "1", "--json", env=migrated)
    two = syncctl("events", "list", "--limit", "2", "--json", env=migrated)

    assert [e["id"] for e in json.loads(one.stdout)] == [newest]
    assert [e["id"] for e in json.loads(two.stdout)] == [middle, newest]
    assert oldest < middle
