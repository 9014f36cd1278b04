"""A changed flow file takes effect when the services restart: each worker, Beat and webhook
service records the digest of the files it loaded, and `syncctl check` and `status` name the
running ones whose files changed since, and say to restart them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipeline.state import instances
from sync_pipeline.state.db import engine_for
from tests.conftest import ROOT, syncctl, wait_for
from tests.e2e.spine import start_worker, stop
from tests.e2e.test_config_errors import sandbox_secrets

RESTART = "the configuration changed since these started; restart them to apply it"


@pytest.fixture
def env(migrated: dict[str, str], tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    return {**migrated, **sandbox_secrets(), "SYNC_CONFIG_DIR": str(config)}


def running(env: dict[str, str]) -> list[instances.Instance]:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        return instances.running(conn)


@pytest.fixture
def worker_and_beat(env: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    """A real worker and a real Beat on the copied config, once both have recorded it."""
    worker = start_worker(env, tmp_path / "worker.log")
    log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    schedule = str(tmp_path / "beat-schedule")
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-s", schedule],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        found = wait_for(lambda: len(running(env)) == 2 and running(env), 90, what="services")
        yield [one.name for one in found]
    finally:
        stop(beat)
        stop(worker)
        log.close()


def test_given_services_on_the_current_files_check_asks_for_no_restart(
    env, worker_and_beat
) -> None:
    result = syncctl("check", env={**env, "COLUMNS": "200"})

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("current") == 2
    assert RESTART not in result.stdout


def test_given_a_flow_file_changed_after_they_started_check_and_status_name_them(
    env, worker_and_beat
) -> None:
    flow = Path(env["SYNC_CONFIG_DIR"]) / "flows" / "approvals_to_wecom.yaml"
    flow.write_text(flow.read_text("utf-8").replace("interval_s: 60", "interval_s: 90"), "utf-8")

    checked = syncctl("check", env={**env, "COLUMNS": "200"})
    status = syncctl("status", env={**env, "COLUMNS": "200"})

    expected = f"{RESTART}: {', '.join(worker_and_beat)}"
    assert checked.returncode == 0, checked.stderr
    assert expected in checked.stdout
    assert expected in status.stdout


def test_given_the_services_stopped_they_are_no_longer_recorded(env, tmp_path) -> None:
    worker = start_worker(env, tmp_path / "worker.log")
    wait_for(lambda: running(env), 90, what="the worker's presence")

    stop(worker)

    assert running(env) == []
