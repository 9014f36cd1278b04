"""Real processes for end-to-end tests: Celery workers, the sandbox, a Redis of a module's own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_pipeline.dispatch import QUEUES
from sync_pipeline.settings import load_settings
from sync_pipeline.state.migrate import migrate
from tests.e2e.spine import emptied, redis_server, start_worker, stop


@pytest.fixture
def migrated(service_env: dict[str, str]) -> dict[str, str]:
    migrate(service_env["DATABASE_URL"])
    return service_env


@pytest.fixture
def worker(migrated: dict[str, str], tmp_path) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process, so SIGKILL and redelivery behave as in production."""
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker"]
    cmd += ["-Q", ",".join(QUEUES), "-c", "2", "-l", "INFO"]
    proc = subprocess.Popen(cmd, env=migrated, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def settings(migrated: dict[str, str]):
    return load_settings(migrated)


@pytest.fixture
def sandbox(tmp_path):
    """The sandbox as a real server on free ports, seeded with the spine tests' world."""
    from sync_pipeline.devtools.sandbox.client import seeded_sandbox
    from tests.e2e.spine import APPROVALS, SEED

    data = tmp_path / "sandbox"
    with seeded_sandbox(data, seed=SEED, approvals=APPROVALS, checkin_days=1) as client:
        # WeCom accepts callback cards only from an app with a callback URL (errcode 43012).
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


@pytest.fixture
def sandbox_store(sandbox, tmp_path):
    """The running sandbox's own store, for changes no API offers (a user who left)."""
    from sync_pipeline.devtools.sandbox.core import SandboxStore
    from sync_pipeline.devtools.sandbox.server import store_path

    return SandboxStore(store_path(tmp_path / "sandbox"))


@pytest.fixture
def sandbox_env(migrated: dict[str, str], sandbox) -> dict[str, str]:
    """Worker and syncctl environment: this test's servers, the sandbox, the shipped config."""
    from tests.conftest import ROOT

    return {**migrated, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}


@pytest.fixture
def sandbox_worker(sandbox_env, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker on `sandbox_env`, in its own process group (spine.start_worker)."""
    proc = start_worker(sandbox_env, tmp_path / "worker.log")
    yield proc
    stop(proc)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of the requesting module's own, for a module whose `redis_url` is
    `private_redis_url`: the machine's is shared with other test runs, whose workers could take
    the module's tasks off a queue of the same db number."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def private_redis_url(private_redis: str) -> str:
    """Database 1 of the module's private Redis, emptied."""
    return emptied(private_redis, 1)
