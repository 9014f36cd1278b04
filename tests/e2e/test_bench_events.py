"""`syncctl bench events` end to end at a tiny rate: it runs, every event becomes exactly one
message on both sides, its JSON holds every figure, and it leaves nothing behind. No timing is
asserted: the figures are for people to read, not for CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, syncctl

pytestmark = pytest.mark.slow

RATE, DURATION_S = 5, 2


def test_bench_events_delivers_every_event_once_on_both_sides_and_cleans_up(service_env) -> None:
    env = {**service_env, "SYNC_CONFIG_DIR": str(ROOT / "config")}

    result = syncctl(
        "bench",
        "events",
        "--rates",
        str(RATE),
        "--duration",
        str(DURATION_S),
        "--runs",
        "1",
        env=env,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    bench_dir = Path(env["SYNC_DATA_DIR"]) / "bench"
    report = json.loads((bench_dir / "events.json").read_text("utf-8"))
    [run] = report["runs"]
    for side in ("pipeline", "baseline"):
        figures = run[side]
        assert figures["sent"] == figures["delivered"] == RATE * DURATION_S
        assert figures["refused"] == 0
        assert figures["doubled"] == 0
        assert 0 < figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]
    assert report["summary"][f"{RATE}.doubled"] == 0
    assert [p.name for p in bench_dir.iterdir()] == ["events.json"]  # work dirs removed
