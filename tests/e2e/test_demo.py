"""`syncctl demo` (what `make demo` runs) against the configured servers: Beat and a real
worker sync every shipped flow to the sandbox, and the counts match the IM ledgers."""

from __future__ import annotations

import re

from tests.conftest import syncctl

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
    assert steps == [(n, len(steps)) for n in range(1, len(steps) + 1)]  # 1/6 ... 6/6


def test_demo_a_second_time_tells_the_same_story(service_env) -> None:
    first = syncctl("demo", "--approvals", "30", env=service_env, timeout=400)
    again = syncctl("demo", "--approvals", "30", env=service_env, timeout=400)

    assert first.returncode == 0, first.stdout + first.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert "exactly once" in again.stdout
