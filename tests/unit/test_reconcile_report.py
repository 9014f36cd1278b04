"""`syncctl reconcile`'s report: a table of each object not in step and a summary line; the
JSON form keeps every drift with its fields."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from sync_pipeline.reconcile_follow import as_json, show
from sync_pipeline.state.reconciles import Drift, DriftKind, Reconcile, ReconcileStatus

FLOW = "approvals_to_feishu_approval_center"
DRIFT = (
    Drift(DriftKind.DIFFERENT, "8812", "8812", {"status": ("PENDING", "APPROVED")}),
    Drift(DriftKind.MISSING, "8813", "8813", repaired=True),
    Drift(DriftKind.EXTRA, "added", None),
)


def report() -> Reconcile:
    return Reconcile(
        id=3,
        flow=FLOW,
        repair=True,
        status=ReconcileStatus.SUCCEEDED,
        requested_by="ops",
        checked=12,
        listed=12,
        drift=DRIFT,
        repaired=1,
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
        error=None,
    )


def test_the_report_shows_each_drift_and_a_summary_line() -> None:
    console = Console(record=True, width=200)

    show(console, report())

    text = console.export_text()
    assert "status: 'PENDING' -> 'APPROVED'" in text
    assert f"reconcile #3 of {FLOW}: 12 compared, 12 listed at the target; 1 missing," in text
    assert "1 extra, 1 different; 1 repaired" in text


def test_the_json_report_counts_by_kind_and_keeps_each_drift() -> None:
    found = as_json(report())

    assert (found["missing"], found["extra"], found["different"]) == (1, 1, 1)
    assert (found["repaired"], found["left"]) == (1, 2)
    assert found["drift"][0] == {
        "kind": "different",
        "target_id": "8812",
        "source_id": "8812",
        "fields": {"status": {"expected": "PENDING", "found": "APPROVED"}},
        "repaired": False,
    }
