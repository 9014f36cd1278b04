"""`syncctl status`: reads only our own state, so it needs no vendor secret; its table fits
80 columns with every shipped flow's name whole, and says why a pull or an event stopped."""

from __future__ import annotations

import json

import sqlalchemy as sa

from sync_pipeline.state import cursors, runs
from sync_pipeline.state.db import engine_for
from tests.conftest import ROOT, syncctl

FLOWS = sorted(p.stem for p in (ROOT / "config" / "flows").glob("*.yaml"))


def no_secrets(env: dict[str, str]) -> dict[str, str]:
    """This test's servers and the shipped config, and not one connector variable."""
    return {k: v for k, v in env.items() if not k.startswith("SANDBOX_")}


def failed_run(env: dict[str, str], flow: str, trigger: str, error: str) -> int:
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        if trigger == runs.WEBHOOK:
            run_id = runs.start_webhook(conn, flow)
        else:
            run_id = runs.start(conn, flow, trigger, cursors.next_fence(conn, flow), None)
        runs.finish(conn, run_id, runs.RunStatus.FAILED, error=error)
    return run_id


def test_given_no_vendor_secret_in_the_environment_status_runs(migrated) -> None:
    result = syncctl("status", "--json", env=no_secrets(migrated))

    assert result.returncode == 0, result.stderr
    assert [f["flow"] for f in json.loads(result.stdout)] == FLOWS


def test_given_80_columns_every_flow_name_is_whole_and_no_line_is_longer(migrated) -> None:
    result = syncctl("status", env={**no_secrets(migrated), "COLUMNS": "80"})

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert ["flow", "lag", "last", "ok", "pull", "event", "DLQ"] in [line.split() for line in lines]
    for flow in FLOWS:
        assert any(line.split() and line.split()[0] == flow for line in lines), flow


def test_given_a_failed_pull_and_a_failed_event_the_table_says_why(migrated) -> None:
    pull = failed_run(migrated, "approvals_to_wecom", "schedule", "oa 500: the OA was down")
    event = failed_run(migrated, "approvals_to_feishu", runs.WEBHOOK, "feishu 99991672: denied")

    result = syncctl("status", env={**no_secrets(migrated), "COLUMNS": "200"})

    assert result.returncode == 0, result.stderr
    assert (
        f"approvals_to_wecom: pull #{pull} failed: oa 500: the OA was down; "
        "then: syncctl run approvals_to_wecom --wait"
    ) in result.stdout
    assert (
        f"approvals_to_feishu: event run #{event} failed: feishu 99991672: denied; "
        "then: syncctl events replay"
    ) in result.stdout
    with engine_for(migrated["DATABASE_URL"]).connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sa.text("runs"))).scalar() == 2
