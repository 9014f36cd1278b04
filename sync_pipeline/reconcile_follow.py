"""`syncctl reconcile FLOW [--repair] [--json]`: record a reconciliation and its work request,
send its task to the admin queue, wait on its row in PostgreSQL, and show its report.

Exit codes (README, "Reconciliation"): 0 the target is in step (or every drift found was
repaired), 1 drift is left (found without --repair, or a repair that did not take) or the
reconciliation failed, 2 the flow cannot be reconciled, 3 waiting gave up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from sync_pipeline.dispatch import RECONCILE_TASK, send_request
from sync_pipeline.settings import Settings
from sync_pipeline.state import reconciles, requests
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.reconciles import DriftKind, Reconcile

POLL_S = 0.5


@dataclass(frozen=True)
class Asked:
    reconcile: Reconcile
    request: requests.WorkRequest


def ask_reconcile(settings: Settings, flow: str, by: str, *, repair: bool) -> Asked:
    """Record the reconciliation, then its work request and task (dispatch.send_request),
    which the sweeper sends again should the broker lose it."""
    engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
    try:
        with engine.begin() as conn:
            started = reconciles.start(conn, flow, by, repair=repair)
    finally:
        engine.dispose()
    task = requests.Task(RECONCILE_TASK, "admin", (started.id, flow))
    return Asked(started, send_request(settings, requests.RequestKind.RECONCILE, flow, task))


class Outcome(StrEnum):
    FINISHED = "finished"
    NOT_STARTED = "not started"
    NOT_FINISHED = "not finished"


def wait_for(
    settings: Settings, asked: Asked, timeout_s: float, start_timeout_s: float
) -> tuple[Outcome, Reconcile]:
    """Poll the reconciliation's row until it ends, or waiting gives up."""
    engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
    began = time.monotonic()
    try:
        while True:
            with engine.connect() as conn:
                found = reconciles.get(conn, asked.reconcile.id)
                request = requests.get(conn, asked.request.id)
            assert found is not None  # noqa: S101 - recorded by ask_reconcile
            if found.done:
                return Outcome.FINISHED, found
            waited = time.monotonic() - began
            begun = request is not None and request.status is not requests.RequestStatus.REQUESTED
            if waited >= start_timeout_s and not begun:
                return Outcome.NOT_STARTED, found
            if waited >= timeout_s:
                return Outcome.NOT_FINISHED, found
            time.sleep(POLL_S)
    finally:
        engine.dispose()


def as_json(found: Reconcile) -> dict[str, Any]:
    """The report's stable machine form."""
    return {
        "id": found.id,
        "flow": found.flow,
        "status": found.status.value,
        "repair": found.repair,
        "checked": found.checked,
        "listed": found.listed,
        "missing": found.count(DriftKind.MISSING),
        "extra": found.count(DriftKind.EXTRA),
        "different": found.count(DriftKind.DIFFERENT),
        "repaired": found.repaired,
        "left": found.left,
        "drift": [d.as_json() for d in found.drift],
        "error": found.error,
    }


def summary(found: Reconcile) -> str:
    head = (
        f"reconcile #{found.id} of {found.flow}: {found.checked} compared, {found.listed}"
        f" listed at the target; {found.count(DriftKind.MISSING)} missing,"
        f" {found.count(DriftKind.EXTRA)} extra, {found.count(DriftKind.DIFFERENT)} different"
    )
    if found.repair:
        head += f"; {found.repaired} repaired"
    return head


def show(console: Console, found: Reconcile) -> None:
    """The drift as a table, then the summary line."""
    if found.drift:
        table = Table(title=f"{found.flow}: not in step at its target")
        for column in ("kind", "target id", "source id", "differs", "repaired"):
            table.add_column(column)
        for d in found.drift:
            differs = "; ".join(f"{k}: {e!r} -> {f!r}" for k, (e, f) in d.fields.items())
            table.add_row(
                d.kind.value,
                d.target_id,
                d.source_id or "-",
                differs or "-",
                "yes" if d.repaired else "no",
            )
        console.print(table)
    console.print(summary(found), highlight=False, markup=False, soft_wrap=True)
