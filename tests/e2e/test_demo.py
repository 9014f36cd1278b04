"""`syncctl demo` (what `make demo` runs) against the configured servers: Beat and a real
worker sync every shipped flow to the sandbox, and the counts match the IM ledgers."""

from __future__ import annotations

import re
from pathlib import Path

from sync_pipeline.devtools.demo import ALERT_FIRING, ALERT_RESOLVED, DEMO_OPS_GROUP
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.registry import DEFAULT_PORT_BASE, load_registry
from sync_pipeline.devtools.sandbox.server import build_emulators, describe, store_path
from tests.conftest import ROOT, syncctl

STEP = re.compile(r"^(\d+)/(\d+) ", re.MULTILINE)


def test_demo_syncs_every_flow_and_its_counts_match_the_ledgers(service_env) -> None:
    result = syncctl(
        "demo", "--approvals", "60", env={**service_env, "COLUMNS": "120"}, timeout=400
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "sync_pipeline demo: summary" in result.stdout
    for flow in ("approvals_to_wecom", "approvals_to_dingtalk", "approvals_to_feishu"):
        row = next(line for line in result.stdout.splitlines() if flow in line)
        assert row.rstrip(" │").endswith("=")  # the runs' count equals the ledger's
    assert "presses Approve" in result.stdout
    assert "OA approved as" in result.stdout
    assert "exactly once" in result.stdout
    assert "Everything started by the demo is stopped" in result.stdout
    steps = [(int(n), int(total)) for n, total in STEP.findall(result.stdout)]
    assert steps == [(n, len(steps)) for n in range(1, len(steps) + 1)]  # 1/7 ... 7/7


def test_demo_ends_with_the_operators_view_and_one_alert_raised_and_resolved(
    service_env,
) -> None:
    result = syncctl(
        "demo", "--approvals", "20", env={**service_env, "COLUMNS": "120"}, timeout=400
    )

    assert result.returncode == 0, result.stdout + result.stderr
    store = SandboxStore(store_path(Path(service_env["SYNC_DATA_DIR"]) / "demo" / "sandbox"))
    in_group = [
        str(e.body.get("content"))
        for e in store.ledger("feishu")
        if e.body.get("receive_id") == DEMO_OPS_GROUP
    ]
    assert sum(ALERT_FIRING in content for content in in_group) == 1
    assert sum(ALERT_RESOLVED in content for content in in_group) == 1
    view = result.stdout[result.stdout.index("the operator's view") :]
    assert "raised in the Feishu ops group" in view
    assert re.search(r"http://127\.0\.0\.1:\d+/metrics", view)
    for flow in ("approvals_to_wecom", "approvals_to_dingtalk", "approvals_to_feishu"):
        row = next(line for line in view.splitlines() if flow in line)
        assert "succeeded" in row  # its pull after the OA came back
    shipped = (ROOT / "config" / "alerts.yaml").read_text("utf-8")
    assert "for_s: 5\n" not in shipped  # the demo's rule went into its own config dir


def test_demo_a_second_time_tells_the_same_story(service_env) -> None:
    first = syncctl("demo", "--approvals", "30", env=service_env, timeout=400)
    again = syncctl("demo", "--approvals", "30", env=service_env, timeout=400)

    assert first.returncode == 0, first.stdout + first.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert "exactly once" in again.stdout


def test_demo_prints_no_credential_of_the_sandbox(service_env) -> None:
    result = syncctl("demo", "--approvals", "10", env=service_env, timeout=400)

    store = SandboxStore(store_path(Path(service_env["SYNC_DATA_DIR"]) / "demo" / "sandbox"))
    emulators = build_emulators(store, load_registry(), DEFAULT_PORT_BASE)
    values = [
        str(value)
        for entry in describe(emulators, "", store.admin_token()).values()
        for value in entry["credentials"].values()
        if len(str(value)) >= 8 and not str(value).startswith("http")
    ]
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    assert [value for value in values if value in printed or value[:12] in printed] == []
