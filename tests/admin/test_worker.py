"""Work asked for through the admin API is done by a real worker against the sandbox: a run
triggered over HTTP is recorded as a work request, a worker opens its run and syncs, and the
API reads it all back; a resync asked over HTTP is followed to its end the same way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.admin.conftest import TOKEN, client_for
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

FLOW = "approvals_to_wecom"


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def worker_api(sandbox_env: dict[str, str], sandbox_worker) -> Iterator[TestClient]:
    with client_for({**sandbox_env, "SYNC_ADMIN_TOKEN": TOKEN}) as client:
        yield client


def test_a_run_triggered_through_the_api_is_executed_by_a_worker(worker_api) -> None:
    asked = worker_api.post(f"/flows/{FLOW}/runs")
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["id"]

    def finished() -> dict | None:
        found = worker_api.get(f"/requests/{request_id}").json()
        run = found["run"]
        return found if run is not None and run["finished_at"] is not None else None

    found = wait_for(finished, 240, interval_s=0.5, what="the worker to finish the run")

    assert found["status"] == "started"
    assert (found["run"]["trigger"], found["run"]["status"]) == ("manual", "succeeded")
    assert found["run"]["counts"]["written"] > 0
    assert worker_api.get(f"/flows/{FLOW}").json()["last_run"]["id"] == found["run"]["id"]


def test_a_dry_run_resync_asked_through_the_api_is_followed_to_its_end(worker_api) -> None:
    asked = worker_api.post(f"/flows/{FLOW}/resyncs", json={"dry_run": True, "by": "alice"})
    assert asked.status_code == 202, asked.text
    resync_id = asked.json()["resync"]["id"]

    def finished() -> dict | None:
        found = worker_api.get(f"/resyncs/{resync_id}").json()
        return found if found["status"] != "running" else None

    found = wait_for(finished, 240, interval_s=0.5, what="the worker to finish the resync")

    assert (found["status"], found["fraction"], found["dry_run"]) == ("succeeded", 1.0, True)
    assert found["counts"]["read"] > 0
    assert found["counts"]["would_create"] > 0
    assert found["counts"]["written"] == 0
    assert worker_api.get(f"/flows/{FLOW}").json()["resync"] is None
