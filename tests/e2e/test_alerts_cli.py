"""`syncctl alerts list`: the alerts firing and resolved, what is wrong since when, and which
notices went out; pending and ok ones only with --all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sync_pipeline.state import alerts as rows
from sync_pipeline.state.alerts import Alert, AlertState
from sync_pipeline.state.db import engine_for
from tests.conftest import syncctl

SINCE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def saved(env: dict[str, str], *alerts: Alert) -> None:
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        for alert in alerts:
            rows.save(conn, alert)


def listed(env: dict[str, str], *options: str) -> list[dict[str, Any]]:
    result = syncctl("alerts", "list", "--json", *options, env=env)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


FIRING = Alert(
    "oa_down", "oa", AlertState.FIRING, SINCE, 1, "oa's circuit breaker is open", True, False
)
PENDING = Alert("runs_failing", "approvals_to_feishu", AlertState.PENDING, SINCE)


def test_given_a_firing_and_a_pending_alert_then_only_the_firing_one_is_listed(migrated) -> None:
    saved(migrated, FIRING, PENDING)

    [shown] = listed(migrated)

    assert shown == {
        "rule": "oa_down",
        "subject": "oa",
        "state": "firing",
        "since": SINCE.isoformat(),
        "epoch": 1,
        "detail": "oa's circuit breaker is open",
        "notified_firing": True,
        "notified_resolved": False,
    }


def test_given_all_then_pending_alerts_are_listed_too(migrated) -> None:
    saved(migrated, FIRING, PENDING)

    assert [a["state"] for a in listed(migrated, "--all")] == ["firing", "pending"]


def test_given_a_firing_alert_then_the_table_names_its_rule_subject_and_what(migrated) -> None:
    saved(migrated, FIRING)

    result = syncctl("alerts", "list", env={**migrated, "COLUMNS": "200"})  # no wrapping

    assert result.returncode == 0, result.stderr
    assert "oa_down" in result.stdout
    assert "circuit breaker is open" in result.stdout
