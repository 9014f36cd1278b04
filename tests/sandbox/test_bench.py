"""`syncctl bench sandbox`, run small: a real server subprocess, a fresh store, honest counts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from sync_pipeline.sandbox.bench import bench_sandbox


@pytest.mark.slow
def test_bench_leaves_no_temporary_store_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    bench_sandbox(approvals=50)

    assert list(tmp_path.iterdir()) == []
