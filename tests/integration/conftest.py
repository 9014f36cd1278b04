"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.settings import load_settings
from sync_pipeline.state import migrate
from tests.conftest import ROOT


@pytest.fixture
def rt(service_env: dict[str, str], sandbox: SandboxClient) -> Runtime:
    """A worker's runtime on this test's database, with the shipped config, on the sandbox of
    the test's module (each module seeds the one it needs)."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}
    return build_runtime(load_settings(env), env)
