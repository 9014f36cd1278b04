"""`syncctl demo` (what `make demo` runs) against the configured servers."""

from __future__ import annotations

from tests.conftest import syncctl


def test_demo_ends_with_its_summary(service_env) -> None:
    result = syncctl("demo", env=service_env, timeout=240)

    assert result.returncode == 0, result.stderr
    assert "sync_pipeline demo: summary" in result.stdout
    assert "health      ok from" in result.stdout
    assert "Everything started by the demo is stopped" in result.stdout
