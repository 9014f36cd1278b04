"""Each admin endpoint against real state: what it shows agrees with syncctl, what it does is
recorded as syncctl records it, and it refuses what syncctl refuses (404 unknown, 409 not
now), doing nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import redis
import sqlalchemy as sa

from sync_pipeline.dispatch import REPLAY_TASK, RESYNC_TASK
from sync_pipeline.settings import load_settings
from sync_pipeline.state import alerts, deadletters, effects, locks, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import work_requests
from tests.admin.conftest import client_for
from tests.conftest import syncctl

FLOW = "approvals_to_wecom"
DISABLED = "approvals_to_dingtalk_todos"  # ships with enabled: false
EVENTS_ONLY = "agora_important_messages_to_oa_todos"  # synced by webhook events only


def recorded_requests(env: dict[str, str]) -> list[tuple[str, str | None, str, list]]:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        rows = conn.execute(sa.select(work_requests).order_by(work_requests.c.id)).all()
    return [(r.kind, r.flow, r.task, list(r.args)) for r in rows]


def queued(env: dict[str, str], queue: str) -> int:
    return int(redis.Redis.from_url(env["REDIS_URL"]).llen(queue))


# -- flows -------------------------------------------------------------------------------------
def test_flows_are_shown_as_syncctl_status_shows_them(api, admin_env) -> None:
    shown = syncctl("status", "--json", env=admin_env)

    assert shown.returncode == 0, shown.stderr
    assert api.get("/flows").json() == json.loads(shown.stdout)


def test_one_flow_is_shown_with_its_status(api) -> None:
    answer = api.get(f"/flows/{FLOW}")

    assert answer.status_code == 200
    assert answer.json()["flow"] == FLOW
    assert answer.json()["enabled"] is True


def test_an_unknown_flow_is_404_naming_the_known_ones(api) -> None:
    answer = api.get("/flows/no_such_flow")

    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_flow"
    assert FLOW in answer.json()["detail"]


# -- runs --------------------------------------------------------------------------------------
def test_a_run_is_recorded_as_a_work_request_and_queued(api, admin_env) -> None:
    answer = api.post(f"/flows/{FLOW}/runs")

    assert answer.status_code == 202
    body = answer.json()
    assert (body["kind"], body["flow"], body["status"], body["run"]) == (
        "run",
        FLOW,
        "requested",
        None,
    )
    assert recorded_requests(admin_env) == [("run", FLOW, "pull.start", [FLOW, "manual", False])]
    assert queued(admin_env, "pull") == 1
    assert api.get(f"/requests/{body['id']}").json() == body


def test_a_run_request_leaves_the_apis_pooled_connection_open(api, admin_env) -> None:
    settings = load_settings(admin_env)
    pool = engine_for(settings.urls()[1], settings.connect_timeout_s)  # the API's own engine
    with pool.connect() as conn:
        session = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

    assert api.post(f"/flows/{FLOW}/runs").status_code == 202

    with pool.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == session


def test_a_disabled_flow_is_refused_409_and_nothing_is_queued(api, admin_env) -> None:
    answer = api.post(f"/flows/{DISABLED}/runs")

    assert answer.status_code == 409
    assert answer.json()["error"] == "disabled"
    assert recorded_requests(admin_env) == []
    assert queued(admin_env, "pull") == 0


def test_a_disabled_flow_runs_when_the_request_says_even_if_disabled(api, admin_env) -> None:
    answer = api.post(f"/flows/{DISABLED}/runs", json={"even_if_disabled": True})

    assert answer.status_code == 202
    assert recorded_requests(admin_env) == [
        ("run", DISABLED, "pull.start", [DISABLED, "manual", True])
    ]


def test_a_flow_synced_only_by_events_has_nothing_to_run(api, admin_env) -> None:
    answer = api.post(f"/flows/{EVENTS_ONLY}/runs")

    assert (answer.status_code, answer.json()["error"]) == (409, "nothing_to_pull")
    assert recorded_requests(admin_env) == []


def test_an_unknown_request_is_404(api) -> None:
    for request_id in ("999", "0", "-1", "abc", str(2**40)):
        answer = api.get(f"/requests/{request_id}")
        assert (answer.status_code, answer.json()["error"]) == (404, "unknown_request")


# -- pause and resume --------------------------------------------------------------------------
def test_a_paused_flow_is_shown_paused_and_its_runs_and_resyncs_refused(api, admin_env) -> None:
    paused = api.post(f"/flows/{FLOW}/pause", json={"reason": "vendor maintenance", "by": "bob"})

    assert paused.json() == {"flow": FLOW, "paused": True, "changed": True, "by": "bob"}
    shown = api.get(f"/flows/{FLOW}").json()["paused"]
    assert (shown["by"], shown["reason"]) == ("bob", "vendor maintenance")
    for path in (f"/flows/{FLOW}/runs", f"/flows/{FLOW}/resyncs"):
        answer = api.post(path)
        assert (answer.status_code, answer.json()["error"]) == (409, "paused")
    assert recorded_requests(admin_env) == []


def test_a_resumed_flow_runs_again(api) -> None:
    api.post(f"/flows/{FLOW}/pause")

    resumed = api.post(f"/flows/{FLOW}/resume", json={"by": "carol"})

    assert resumed.json() == {"flow": FLOW, "paused": False, "changed": True, "by": "carol"}
    assert api.get(f"/flows/{FLOW}").json()["paused"] is None
    assert api.post(f"/flows/{FLOW}/runs").status_code == 202


def test_pausing_a_paused_flow_changes_nothing(api) -> None:
    api.post(f"/flows/{FLOW}/pause", json={"by": "bob"})

    again = api.post(f"/flows/{FLOW}/pause", json={"by": "eve"})

    assert again.json()["changed"] is False
    assert api.get(f"/flows/{FLOW}").json()["paused"]["by"] == "bob"


# -- resyncs -----------------------------------------------------------------------------------
def test_a_resync_is_recorded_with_its_request_and_shown_in_the_flows_status(
    api, admin_env
) -> None:
    answer = api.post(
        f"/flows/{FLOW}/resyncs", json={"since": "2026-03-01", "dry_run": True, "by": "alice"}
    )

    assert answer.status_code == 202
    resync, request = answer.json()["resync"], answer.json()["request"]
    assert (resync["flow"], resync["since"], resync["dry_run"], resync["requested_by"]) == (
        FLOW,
        "2026-03-01T00:00:00Z",
        True,
        "alice",
    )
    assert (request["kind"], request["task"]) == ("resync", RESYNC_TASK)
    assert recorded_requests(admin_env) == [("resync", FLOW, RESYNC_TASK, [resync["id"], FLOW])]
    assert api.get(f"/resyncs/{resync['id']}").json() == resync
    assert api.get(f"/flows/{FLOW}").json()["resync"]["id"] == resync["id"]


def test_a_second_resync_of_a_flow_is_refused_while_one_runs(api) -> None:
    first = api.post(f"/flows/{FLOW}/resyncs").json()["resync"]

    again = api.post(f"/flows/{FLOW}/resyncs")

    assert (again.status_code, again.json()["error"]) == (409, "resync_running")
    assert f"/resyncs/{first['id']}" in again.json()["detail"]


def test_a_resync_since_what_is_not_a_date_is_refused_422(api, admin_env) -> None:
    answer = api.post(f"/flows/{FLOW}/resyncs", json={"since": "last tuesday"})

    assert (answer.status_code, answer.json()["error"]) == (422, "invalid")
    assert "since" in answer.json()["detail"]
    assert recorded_requests(admin_env) == []


def test_a_disabled_flow_is_not_resynced(api) -> None:
    answer = api.post(f"/flows/{DISABLED}/resyncs")

    assert (answer.status_code, answer.json()["error"]) == (409, "disabled")


# -- cursors -----------------------------------------------------------------------------------
def test_a_flow_never_pulled_shows_no_cursor(api) -> None:
    answer = api.get(f"/flows/{FLOW}/cursor")

    assert answer.json() == {
        "flow": FLOW,
        "cursor": None,
        "fence": 0,
        "before": None,
        "run_id": None,
    }


def test_a_cursor_set_is_shown_and_recorded_in_the_run_history_with_who(api, admin_env) -> None:
    answer = api.put(f"/flows/{FLOW}/cursor", json={"value": "2026-03-01", "by": "alice"})

    assert answer.status_code == 200
    assert answer.json()["cursor"] == "2026-03-01T00:00:00Z"
    assert api.get(f"/flows/{FLOW}/cursor").json()["cursor"] == "2026-03-01T00:00:00Z"
    with engine_for(admin_env["DATABASE_URL"]).connect() as conn:
        run = runs.get(conn, answer.json()["run_id"])
    assert run is not None
    assert (run.trigger, run.by, run.cursor_after) == (
        "cursor_set",
        "alice",
        "2026-03-01T00:00:00Z",
    )


def test_a_cursor_set_while_a_pull_holds_the_flow_is_refused(api, admin_env) -> None:
    client = redis.Redis.from_url(admin_env["REDIS_URL"])
    token = locks.acquire(client, FLOW, 60.0)
    assert token is not None
    try:
        answer = api.put(f"/flows/{FLOW}/cursor", json={"value": "2026-03-01"})
    finally:
        locks.release(client, FLOW, token)

    assert (answer.status_code, answer.json()["error"]) == (409, "flow_busy")
    assert api.get(f"/flows/{FLOW}/cursor").json()["cursor"] is None


# -- dead letters ------------------------------------------------------------------------------
def letter(env: dict[str, str], source_id: str = "R1") -> int:
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        deadletters.add(conn, FLOW, None, [(source_id, {}, "no such user", "RecordError")])
        [found] = [d for d in deadletters.open_letters(conn, FLOW) if d.source_id == source_id]
    return found.id


def test_open_dead_letters_are_listed_as_syncctl_lists_them(api, admin_env) -> None:
    letter(admin_env, "R1")
    letter(admin_env, "R2")
    shown = syncctl("dlq", "list", "--json", env=admin_env)

    assert api.get("/dead-letters").json() == json.loads(shown.stdout)
    assert [d["source_id"] for d in api.get(f"/dead-letters?flow={FLOW}&limit=1").json()] == ["R1"]


def test_a_replay_is_recorded_as_a_work_request_and_queued_for_a_worker(api, admin_env) -> None:
    letter_id = letter(admin_env)

    answer = api.post("/dead-letters/replay", json={"flow": FLOW, "ids": [letter_id]})

    assert answer.status_code == 202
    assert (answer.json()["kind"], answer.json()["task"]) == ("replay", REPLAY_TASK)
    assert recorded_requests(admin_env) == [("replay", FLOW, REPLAY_TASK, [FLOW, [letter_id]])]
    assert queued(admin_env, "admin") == 1


# -- effects -----------------------------------------------------------------------------------
def parked(env: dict[str, str]) -> effects.Effect:
    key = uuid.uuid4().hex * 2
    about = {key: effects.About(source_id="R1", kind="message", recipient="u1")}
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        effects.claim(conn, FLOW, "wecom", [key], about)
        effects.finish(conn, key, effects.EffectStatus.UNKNOWN, error="crash window")
        return effects.get(conn, [key])[key]


def test_unknown_effects_are_listed_with_their_record_and_target(api, admin_env) -> None:
    found = parked(admin_env)

    [row] = api.get("/effects").json()

    assert (row["id"], row["key"], row["record"], row["target"], row["status"]) == (
        found.id,
        found.key,
        "R1",
        "wecom u1",
        "unknown",
    )
    assert api.get("/effects?status=done").json() == []


def test_settling_done_records_the_effect_made_and_closes_its_letters(api, admin_env) -> None:
    found = parked(admin_env)

    answer = api.post(f"/effects/{found.id}/settle", json={"verdict": "done", "by": "dan"})

    assert answer.status_code == 200
    assert answer.json()["verdict"] == "done"
    with engine_for(admin_env["DATABASE_URL"]).connect() as conn:
        settled = effects.by_id(conn, found.id)
    assert settled is not None
    assert settled.status is effects.EffectStatus.DONE
    assert settled.last_error == "settled done by dan"


def test_settling_retry_makes_it_sendable_and_queues_the_replay_of_its_letter(
    api, admin_env
) -> None:
    found = parked(admin_env)
    with engine_for(admin_env["DATABASE_URL"]).begin() as conn:
        deadletters.add(conn, FLOW, None, [("R1", {"effect_key": found.key}, "unknown", "X")])
        [letter_id] = [d.id for d in deadletters.open_letters(conn, FLOW)]

    answer = api.post(f"/effects/{found.id}/settle", json={"verdict": "retry"})

    assert answer.status_code == 200
    assert answer.json()["letters"] == [letter_id]
    assert answer.json()["request"]["kind"] == "replay"
    assert recorded_requests(admin_env) == [("replay", FLOW, REPLAY_TASK, [FLOW, [letter_id]])]
    with engine_for(admin_env["DATABASE_URL"]).connect() as conn:
        settled = effects.by_id(conn, found.id)
    assert settled is not None
    assert settled.status is effects.EffectStatus.FAILED  # claimed again by the replay


def test_settling_an_effect_not_parked_is_refused(api, admin_env) -> None:
    found = parked(admin_env)
    api.post(f"/effects/{found.id}/settle", json={"verdict": "done"})

    again = api.post(f"/effects/{found.id}/settle", json={"verdict": "retry"})

    assert (again.status_code, again.json()["error"]) == (409, "not_parked")


def test_settling_an_unknown_effect_id_is_404(api) -> None:
    answer = api.post("/effects/424242/settle", json={"verdict": "done"})

    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_effect")


# -- alerts ------------------------------------------------------------------------------------
def test_firing_alerts_are_listed_and_ok_ones_only_with_all(api, admin_env) -> None:
    since = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with engine_for(admin_env["DATABASE_URL"]).begin() as conn:
        alerts.save(conn, alerts.Alert("runs_failing", FLOW, alerts.AlertState.FIRING, since, 1))
        alerts.save(conn, alerts.Alert("lag", FLOW, alerts.AlertState.OK, since))

    firing = api.get("/alerts").json()

    assert [(a["rule"], a["subject"], a["state"]) for a in firing] == [
        ("runs_failing", FLOW, "firing")
    ]
    assert {a["rule"] for a in api.get("/alerts?all=true").json()} == {"runs_failing", "lag"}


# -- servers away ------------------------------------------------------------------------------
def test_with_postgresql_away_the_answer_is_503_naming_no_server_detail(admin_env) -> None:
    away = {
        **admin_env,
        "DATABASE_URL": "postgresql://postgres:hunter2@127.0.0.1:1/nowhere",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }  # with the default connect timeout: what an operator runs
    with client_for(away) as client:
        for method, path in (("GET", "/flows"), ("POST", f"/flows/{FLOW}/runs")):
            answer = client.request(method, path)

            assert answer.status_code == 503
            assert answer.json()["error"] == "unavailable"
            assert "hunter2" not in answer.text
            assert "127.0.0.1" not in answer.text
