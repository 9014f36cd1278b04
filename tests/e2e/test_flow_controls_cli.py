"""`syncctl cursor show|set` and `syncctl flow pause|resume` (issue 12, point 2), and the
refusals of `syncctl resync`: each says what it did, or refuses in one line with exit 2."""

from __future__ import annotations

import json

import pytest
import redis

from sync_pipeline.state import locks, resyncs, runs
from sync_pipeline.state.db import engine_for
from tests.conftest import ROOT, syncctl

FLOW = "approvals_to_wecom"


@pytest.fixture
def env(migrated: dict[str, str]) -> dict[str, str]:
    return {**migrated, "SYNC_CONFIG_DIR": str(ROOT / "config")}


def refused(result, words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == 2, result.stdout
    assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def shown_cursor(env: dict[str, str]) -> dict[str, object]:
    result = syncctl("cursor", "show", FLOW, "--json", env=env)
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)
    return found


# -- cursors -----------------------------------------------------------------------------------
def test_a_flow_never_pulled_shows_no_cursor(env) -> None:
    assert shown_cursor(env) == {"flow": FLOW, "cursor": None, "fence": 0}


def test_a_cursor_set_is_shown_and_recorded_in_the_run_history_with_who(env) -> None:
    result = syncctl("cursor", "set", FLOW, "2026-03-01", "--by", "alice", env=env)

    assert result.returncode == 0, result.stderr
    assert shown_cursor(env)["cursor"] == "2026-03-01T00:00:00Z"
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        total = runs.totals(conn, FLOW)
        [run] = [runs.get(conn, n) for n in range(1, total.runs + 1)]
    assert run is not None
    assert (run.trigger, run.by, run.cursor_after) == (
        "cursor_set",
        "alice",
        "2026-03-01T00:00:00Z",
    )


def test_a_cursor_set_while_a_pull_holds_the_flow_is_refused(env) -> None:
    client = redis.Redis.from_url(env["REDIS_URL"])
    token = locks.acquire(client, FLOW, 60.0)  # a pull holds the flow
    assert token is not None
    try:
        result = syncctl("cursor", "set", FLOW, "2026-03-01", env=env)
    finally:
        locks.release(client, FLOW, token)

    refused(result, "is being pulled now")
    assert shown_cursor(env)["cursor"] is None


def test_a_cursor_value_that_is_neither_a_moment_nor_digits_is_refused(env) -> None:
    refused(syncctl("cursor", "set", FLOW, "yesterday-ish", env=env), "VALUE")


# -- pause and resume --------------------------------------------------------------------------
def test_a_paused_flow_is_shown_paused_and_refused_by_run_until_resumed(env) -> None:
    paused = syncctl(
        "flow", "pause", FLOW, "--reason", "vendor maintenance", "--by", "bob", env=env
    )
    status = syncctl("status", "--json", env=env)
    run = syncctl("run", FLOW, env=env)
    resumed = syncctl("flow", "resume", FLOW, env=env)
    after = syncctl("status", "--json", env=env)

    assert paused.returncode == 0, paused.stderr
    [shown] = [f for f in json.loads(status.stdout) if f["flow"] == FLOW]
    assert (shown["paused"]["by"], shown["paused"]["reason"]) == ("bob", "vendor maintenance")
    refused(run, "is paused")
    assert resumed.returncode == 0, resumed.stderr
    [now] = [f for f in json.loads(after.stdout) if f["flow"] == FLOW]
    assert now["paused"] is None


def test_a_paused_flow_shows_who_paused_it_under_the_status_table(env) -> None:
    syncctl("flow", "pause", FLOW, "--reason", "vendor maintenance", "--by", "bob", env=env)

    status = syncctl("status", env=env)

    assert status.returncode == 0, status.stderr
    assert f"{FLOW}: paused by bob" in status.stdout


# -- resync refusals ---------------------------------------------------------------------------
def test_a_resync_of_an_unknown_flow_is_refused(env) -> None:
    refused(syncctl("resync", "no_such_flow", env=env), "no_such_flow")


def test_a_resync_since_a_date_that_is_not_one_is_refused(env) -> None:
    refused(syncctl("resync", FLOW, "--since", "last week", env=env), "--since")


def test_a_second_resync_of_a_flow_is_refused_while_the_first_runs(env) -> None:
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        first = resyncs.start(conn, FLOW, None, "alice")
    assert first is not None

    refused(syncctl("resync", FLOW, env=env), f"resync #{first.id} of {FLOW} is running already")


def test_a_resync_of_a_paused_flow_is_refused(env) -> None:
    syncctl("flow", "pause", FLOW, env=env)

    refused(syncctl("resync", FLOW, env=env), "is paused")
