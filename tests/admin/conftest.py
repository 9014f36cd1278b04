"""The admin API for tests: in process over real PostgreSQL and Redis (`api`), or as the real
`syncctl admin serve` on a free port (`served`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from starlette.testclient import TestClient

from sync_pipeline.admin.app import create_app
from sync_pipeline.admin.service import AdminService
from sync_pipeline.config.loader import load_config
from sync_pipeline.settings import load_settings
from tests.conftest import ROOT, wait_for

# The end-to-end fixtures (a migrated schema, the sandbox, a real worker, a private Redis).
from tests.e2e.conftest import (  # noqa: F401
    migrated,
    private_redis,
    private_redis_url,
    sandbox,
    sandbox_env,
    sandbox_worker,
)

TOKEN = "admin-token-for-the-tests-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_env(migrated: dict[str, str]) -> dict[str, str]:  # noqa: F811
    return {**migrated, "SYNC_CONFIG_DIR": str(ROOT / "config"), "SYNC_ADMIN_TOKEN": TOKEN}


def client_for(env: dict[str, str]) -> TestClient:
    settings = load_settings(env)
    config = load_config(settings.config_dir, env, environment=False)
    return TestClient(create_app(AdminService(settings, config), TOKEN), headers=BEARER)


@pytest.fixture
def api(admin_env: dict[str, str]) -> Iterator[TestClient]:
    """The app in process, holding the token, over this test's PostgreSQL and Redis."""
    with client_for(admin_env) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`syncctl admin serve` on a free port, once it answers /healthz."""
    port = free_port()
    exe = Path(sys.executable).parent / "syncctl"
    out = open(log, "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [str(exe), "admin", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return requests.get(f"{url}/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(up, 60, what="the admin API to answer")
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def served(admin_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The real server's base URL."""
    proc, url = serve(admin_env, tmp_path / "admin.log")
    yield url
    stop(proc)
