"""What the alert evaluator sees in PostgreSQL (pipeline/alerts.py `observe`): a flow's
pulls failing N times in a row, its open dead letters, against the rules' thresholds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sync_pipeline.config.alerts import AlertKind, Rule
from sync_pipeline.pipeline import alerts
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.settings import load_settings
from sync_pipeline.state import controls, deadletters, migrate, runs
from sync_pipeline.state.runs import RunStatus
from sync_pipeline.state.schema import pages, quota_usage
from tests.conftest import ROOT
from tests.unit.config.test_examples import SANDBOX_ENV

FLOW = "approvals_to_feishu"
FAILING = Rule("failing", AlertKind.CONSECUTIVE_FAILURES, 3, 0, ("ops",), flows=(FLOW,))
LETTERS = Rule("letters", AlertKind.DEAD_LETTERS, 2, 0, ("ops",), flows=(FLOW,))


@pytest.fixture
def rt(service_env: dict[str, str]) -> Runtime:
    """The shipped config: the evaluator reads only our own state here, no vendor."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {**service_env, **SANDBOX_ENV, "SYNC_CONFIG_DIR": str(ROOT / "config")}
    return build_runtime(load_settings(env), env)


def pulls(rt: Runtime, *statuses: RunStatus, trigger: str = "schedule") -> None:
    """Finished runs of FLOW, oldest first."""
    with rt.engine.begin() as conn:
        for n, status in enumerate(statuses):
            run_id = runs.start(conn, FLOW, trigger, n + 1, None)
            runs.finish(conn, run_id, status, error=f"oa 500: attempt {n}")


def test_given_three_failed_pulls_in_a_row_then_the_flow_is_seen_failing(rt: Runtime) -> None:
    pulls(rt, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.FAILED, RunStatus.FAILED)

    [seen] = alerts.observe(rt, FAILING)

    assert seen == alerts.Seen(FLOW, True, "its last 3 runs failed: oa 500: attempt 3")


def test_given_a_success_among_the_last_three_then_the_flow_is_not_failing(rt: Runtime) -> None:
    pulls(rt, RunStatus.FAILED, RunStatus.FAILED, RunStatus.SUCCEEDED, RunStatus.FAILED)

    assert not alerts.observe(rt, FAILING)[0].wrong


def test_given_failed_event_runs_then_they_do_not_count_as_failed_pulls(rt: Runtime) -> None:
    pulls(rt, RunStatus.FAILED)
    pulls(rt, RunStatus.FAILED, RunStatus.FAILED, trigger=runs.WEBHOOK)

    assert not alerts.observe(rt, FAILING)[0].wrong


def test_given_open_dead_letters_at_the_threshold_then_the_flow_is_seen_wrong(
    rt: Runtime,
) -> None:
    with rt.engine.begin() as conn:
        deadletters.add(conn, FLOW, None, [("R1", {}, "no such user", "RecordError")])
    assert alerts.observe(rt, LETTERS) == [alerts.Seen(FLOW, False, "1 open dead letters")]

    with rt.engine.begin() as conn:
        deadletters.add(conn, FLOW, None, [("R2", {}, "no such user", "RecordError")])

    assert alerts.observe(rt, LETTERS) == [alerts.Seen(FLOW, True, "2 open dead letters")]


def test_given_no_flows_named_then_every_enabled_flow_is_a_subject(rt: Runtime) -> None:
    seen = alerts.observe(rt, replace(LETTERS, flows=()))

    assert [s.subject for s in seen] == [f.name for f in rt.config.enabled_flows()]


LAGGING = Rule("lagging", AlertKind.LAG, 600, 0, ("ops",), flows=(FLOW,))


def test_given_a_change_read_an_hour_ago_and_not_written_then_the_flow_is_seen_lagging(
    rt: Runtime,
) -> None:
    read = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with rt.engine.begin() as conn:
        run_id = runs.start(conn, FLOW, "schedule", 1, None)
        conn.execute(
            pages.insert().values(run_id=run_id, flow=FLOW, seq=1, records=[{"cursor_value": read}])
        )

    [seen] = alerts.observe(rt, LAGGING)

    assert seen.wrong
    assert seen.detail.startswith("its oldest unsynced change is 36")


def test_given_a_flow_that_never_pulled_then_it_is_not_seen_lagging(rt: Runtime) -> None:
    assert alerts.observe(rt, LAGGING) == [alerts.Seen(FLOW, False)]


QUOTA = Rule("quota", AlertKind.QUOTA, 80, 0, ("ops",))


def test_given_80_percent_of_dingtalks_monthly_quota_used_then_its_connector_is_seen_wrong(
    rt: Runtime,
) -> None:
    """The shipped sandbox_dingtalk allows 10,000 calls a month for all APIs."""
    period = datetime.now(UTC).strftime("%Y-%m")
    with rt.engine.begin() as conn:
        conn.execute(
            quota_usage.insert().values(
                vendor="dingtalk", app="app-key", api="*", period=period, used=7_999
            )
        )
    assert alerts.observe(rt, QUOTA) == [
        alerts.Seen("sandbox_dingtalk", False, f"80 % of the {period} quota for all APIs used")
    ]

    with rt.engine.begin() as conn:
        conn.execute(quota_usage.update().values(used=8_000))

    [seen] = alerts.observe(rt, QUOTA)
    assert seen.wrong


def test_given_a_flow_failing_three_times_in_a_row_then_the_alert_pauses_it(rt: Runtime) -> None:
    pulls(rt, RunStatus.FAILED, RunStatus.FAILED, RunStatus.FAILED)

    alerts.evaluate(rt, datetime.now(UTC))

    with rt.engine.connect() as conn:
        pause = controls.paused(conn, FLOW)
    assert pause is not None
    assert (pause.by, pause.reason) == ("alerts", "its last 3 runs failed: oa 500: attempt 2")
