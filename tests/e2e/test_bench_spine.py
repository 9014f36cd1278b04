"""`syncctl bench spine` end to end at a tiny size: it runs, its JSON holds every figure, the
counts add up, and it leaves nothing behind. No timing is asserted: the figures are for people
to read, not for CI."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from sync_pipeline.devtools.bench.spine import FIGURES
from sync_pipeline.devtools.sandbox.seed import DEFAULT_SEED
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import ROOT, syncctl
from tests.e2e.spine import expected_wecom_messages

pytestmark = pytest.mark.slow

APPROVALS = 50


def test_bench_spine_runs_end_to_end_sends_the_expected_messages_and_cleans_up(
    service_env,
) -> None:
    env = {**service_env, "SYNC_CONFIG_DIR": str(ROOT / "config")}

    result = syncctl("bench", "spine", "--approvals", str(APPROVALS), "--runs", "1", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    bench_dir = Path(env["SYNC_DATA_DIR"]) / "bench"
    report = json.loads((bench_dir / "spine.json").read_text("utf-8"))  # the default --json
    expected = sum(expected_wecom_messages(World(DEFAULT_SEED), APPROVALS).values())
    assert report["approvals"] == APPROVALS
    assert report["expected_messages"] == expected
    [run] = report["runs"]
    for side in ("pipeline", "baseline"):
        first, again = run[side]["first_sync"], run[side]["no_change_sync"]
        assert first["messages"] == expected
        assert first["list_calls"] >= 1
        assert first["wall_s"] > 0
        assert again["messages"] == 0
        assert again["list_calls"] == 1
    assert set(report["summary"]) == {f"{phase}.{figure}" for phase, figure, _ in FIGURES}
    for entry in report["summary"].values():
        assert set(entry) == {"pipeline", "baseline", "ratio"}
        assert set(entry["pipeline"]) == set(entry["baseline"]) == {"median", "min", "max"}

    assert [p.name for p in bench_dir.iterdir()] == ["spine.json"]  # sandboxes removed
    with psycopg2.connect(env["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_spine_%'")
        assert cur.fetchone() == (0,)
