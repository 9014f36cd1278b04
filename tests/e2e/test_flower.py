"""`syncctl flower`: an admin surface that never admits a blank or missing login."""

from __future__ import annotations

import pytest

from sync_pipeline.processes import free_port
from tests.conftest import syncctl


@pytest.mark.parametrize("auth", [":", "admin:", ":hunter2"])
def test_given_a_blank_user_or_password_settings_are_refused_in_one_line(
    service_env, auth: str
) -> None:
    # Redis unreachable: were the login admitted, the command would stop there, not serve.
    env = {**service_env, "FLOWER_BASIC_AUTH": auth, "REDIS_URL": "redis://127.0.0.1:1/0"}

    result = syncctl("flower", "--port", str(free_port()), env=env)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "syncctl: environment: FLOWER_BASIC_AUTH: expected user:password, neither empty"
        " (several separated by commas)"
    ]
