"""`syncctl resync` with a real worker, Beat (its sweeps), Redis, PostgreSQL and the sandbox
(issue 12, point 1): a resync of a fully synced flow writes nothing new to any IM, and a
resync whose worker is SIGKILLed half way goes on from its checkpoint once a new worker runs,
ending with every effect made exactly once.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import leases, sweeper
from sync_pipeline.state import resyncs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.resyncs import Resync, ResyncStatus
from tests.conftest import ROOT, syncctl, wait_for
from tests.e2e.spine import (
    FLOW,
    SEED,
    expected_wecom_messages,
    list_calls,
    start_worker,
    stop,
    wecom_sends,
)

pytestmark = pytest.mark.slow

APPROVALS = 300  # three pages of the shipped flow's 100: a kill can land half way
IMS = ("wecom", "feishu", "dingtalk", "agora")
START_S = 90
# A killed worker's resync lease runs out, the next sweep sends it again, and it reads the
# rest at its pace (10 calls a second in the sandbox: ~2 calls a record).
RESUMED_S = leases.LEASE_S + sweeper.SWEEP_EVERY_S + 120


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """A Redis of this module's own (e2e/conftest.py): no other run's worker takes our tasks."""
    return private_redis_url


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(
        tmp_path / "sandbox", seed=SEED, approvals=APPROVALS, checkin_days=1
    ) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


@contextlib.contextmanager
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """Beat beside the workers, scheduling only its sweeps (an empty flows directory): no
    scheduled pull of its own joins the resync under test."""
    config = tmp_path / "beat-config"
    (config / "flows").mkdir(parents=True)
    (config / "connectors.yaml").write_text("{}\n")
    beat_env = {**env, "SYNC_CONFIG_DIR": str(config), "SYNC_DATA_DIR": str(tmp_path / "beat")}
    log = (tmp_path / "beat.log").open("ab")
    exe = Path(sys.executable).parent / "syncctl"
    proc = subprocess.Popen(
        [str(exe), "beat"],
        env=beat_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        stop(proc)
        log.close()


@contextlib.contextmanager
def worker(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(env, log)
    try:
        yield proc
    finally:
        stop(proc)


def resync_of(env: dict[str, str]) -> Resync | None:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        return resyncs.latest(conn, FLOW)


def im_ledgers(sandbox: SandboxClient) -> dict[str, int]:
    return {platform: len(sandbox.ledger(platform)) for platform in IMS}


def expected() -> collections.Counter[tuple[str, str, int]]:
    return expected_wecom_messages(World(SEED), APPROVALS)


def test_a_resync_of_a_fully_synced_flow_writes_nothing_new_to_any_im(
    sandbox_env, sandbox: SandboxClient, tmp_path
) -> None:
    env = sandbox_env
    with beat(env, tmp_path), worker(env, tmp_path / "worker.log"):
        synced = syncctl("run", FLOW, "--wait", env=env, timeout=600)
        assert synced.returncode == 0, synced.stderr
        before = im_ledgers(sandbox)

        resynced = syncctl("resync", FLOW, "--wait", env=env, timeout=600)

    assert resynced.returncode == 0, resynced.stderr
    assert f"{APPROVALS} read, 0 written" in resynced.stdout
    assert im_ledgers(sandbox) == before
    assert collections.Counter(wecom_sends(sandbox)) == expected()


def test_a_resync_killed_half_way_resumes_from_its_checkpoint_making_each_effect_once(
    sandbox_env, sandbox: SandboxClient, tmp_path
) -> None:
    env = sandbox_env
    with beat(env, tmp_path):
        with worker(env, tmp_path / "first.log") as first:
            queued = syncctl("resync", FLOW, env=env)
            assert queued.returncode == 0, queued.stderr

            def one_page_done() -> bool:
                found = resync_of(env)
                return found is not None and found.counts.pages >= 1

            wait_for(one_page_done, START_S + 60, interval_s=0.2, what="its first checkpoint")
            shown = syncctl("status", env=env)
            stop(first, signal.SIGKILL)  # the worker and its pool, mid-resync
        half = resync_of(env)
        assert half is not None
        assert half.status is ResyncStatus.RUNNING

        with worker(env, tmp_path / "second.log"):
            wait_for(
                lambda: (found := resync_of(env)) is not None and found.done,
                RESUMED_S,
                interval_s=1,
                what="the resync to finish",
            )

    done = resync_of(env)
    assert done is not None
    assert done.status is ResyncStatus.SUCCEEDED
    assert done.counts.read == APPROVALS
    assert f"resync #{half.id} running" in shown.stdout
    assert list_calls(sandbox) <= done.counts.pages + 1  # only the page it was at is read again
    assert collections.Counter(wecom_sends(sandbox)) == expected()


def test_a_dry_run_prints_what_it_would_create_and_makes_nothing(
    sandbox_env, sandbox: SandboxClient, tmp_path
) -> None:
    env = sandbox_env
    before = im_ledgers(sandbox)
    with worker(env, tmp_path / "worker.log"):
        dry = syncctl("resync", FLOW, "--dry-run", env=env, timeout=600)

    assert dry.returncode == 0, dry.stderr
    assert f"would create {len({n for _, _, n in expected()})}, update 0" in dry.stdout
    assert im_ledgers(sandbox) == before
