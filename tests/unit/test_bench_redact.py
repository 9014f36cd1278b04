"""`syncctl bench redact` at a tiny size: it runs without servers, its JSON holds every input's
figures beside the baseline, and the default report lands in SYNC_DATA_DIR/bench. No timing
is asserted: the figures are for people to read, not for CI."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sync_pipeline.devtools.bench.redact import INPUTS
from tests.conftest import syncctl

SIZE = 2_000


def test_bench_redact_writes_every_inputs_figures_beside_the_baseline(tmp_path: Path) -> None:
    env = {**os.environ, "SYNC_DATA_DIR": str(tmp_path)}

    result = syncctl("bench", "redact", "--size", str(SIZE), "--runs", "2", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "bench" / "redact.json").read_text("utf-8"))
    assert report["bench"] == "redact"
    assert report["size"] == SIZE
    assert set(report["inputs"]) == set(INPUTS)
    for figures in report["inputs"].values():
        assert figures["characters"] > SIZE  # the input and its planted secret
        for side in ("redact_s", "baseline_s"):
            assert set(figures[side]) == {"median", "min", "max"}
            assert figures[side]["min"] <= figures[side]["median"] <= figures[side]["max"]
        assert figures["ratio"] is None or figures["ratio"] > 0
        assert figures["redact_mchars_per_s"] > 0


def test_bench_redact_refuses_a_size_too_small_to_mean_anything(tmp_path: Path) -> None:
    env = {**os.environ, "SYNC_DATA_DIR": str(tmp_path)}

    result = syncctl("bench", "redact", "--size", "10", env=env)

    assert result.returncode == 2
    assert "--size" in result.stderr
