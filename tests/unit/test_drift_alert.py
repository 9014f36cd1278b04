"""The `reconciliation_drift` alert looks at the flow's newest finished reconciliation: drift
found and left unrepaired fires it; a repaired (or clean) one resolves it."""

from __future__ import annotations

from datetime import UTC, datetime

from sync_pipeline.config.alerts import AlertKind, Rule
from sync_pipeline.pipeline.alerts import _drifting, next_step
from sync_pipeline.state.reconciles import Drift, DriftKind, Reconcile, ReconcileStatus

RULE = Rule("drift", AlertKind.RECONCILIATION_DRIFT, threshold=1, for_s=0, notify=("ops",))
FLOW = "approvals_to_feishu_approval_center"


def report(*drift: Drift) -> Reconcile:
    return Reconcile(
        id=7,
        flow=FLOW,
        repair=False,
        status=ReconcileStatus.SUCCEEDED,
        requested_by="schedule",
        checked=12,
        listed=12,
        drift=drift,
        repaired=sum(1 for d in drift if d.repaired),
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
        error=None,
    )


def test_given_drift_left_unrepaired_the_alert_is_wrong_and_says_how_much() -> None:
    seen = _drifting(report(Drift(DriftKind.MISSING, "8812", "8812")), FLOW, RULE)

    assert seen.wrong
    assert seen.detail == (
        "reconcile #7 found 1 objects not in step at its target, 1 left unrepaired"
    )


def test_given_every_drift_repaired_or_none_found_it_is_fine() -> None:
    repaired = Drift(DriftKind.EXTRA, "x", None, repaired=True)

    assert not _drifting(report(repaired), FLOW, RULE).wrong
    assert not _drifting(report(), FLOW, RULE).wrong
    assert not _drifting(None, FLOW, RULE).wrong


def test_the_drift_alert_names_the_repair_to_run() -> None:
    assert next_step(AlertKind.RECONCILIATION_DRIFT, FLOW) == f"syncctl reconcile {FLOW} --repair"
