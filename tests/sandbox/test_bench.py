"""`syncctl bench sandbox`, run small: a real server subprocess, a fresh store, honest counts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.bench import bench_sandbox

APPROVALS = 50


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return bench_sandbox(approvals=APPROVALS)


@pytest.mark.slow
def test_bench_leaves_no_temporary_store_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    bench_sandbox(approvals=APPROVALS)

    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bench_lists_every_seeded_approval_over_http_and_from_the_store(
    result: dict[str, Any],
) -> None:
    assert result["listed"] == result["baseline_listed"] == APPROVALS


@pytest.mark.slow
def test_bench_reports_the_cpus_the_server_really_ran_on(result: dict[str, Any]) -> None:
    assert result["server_cpus"] == len(result["server_cpu_ids"]) == 1


@pytest.mark.slow
def test_bench_keeps_the_client_off_the_server_cpu_when_it_can(result: dict[str, Any]) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: client and server must share it")

    assert set(result["client_cpu_ids"]).isdisjoint(result["server_cpu_ids"])


@pytest.mark.slow
def test_bench_ratio_is_the_http_rate_over_the_baseline_rate(result: dict[str, Any]) -> None:
    expected = result["listed_per_s"] / result["baseline_listed_per_s"]

    assert result["ratio_to_baseline"] == pytest.approx(expected, rel=0.01)
