"""The admin API's compose service: published on the host's loopback only, at the port it
serves and checks, with the token from the environment."""

from __future__ import annotations

from typing import Any

from tests.compose import load

SERVICE: dict[str, Any] = load()["services"]["admin"]


def test_the_admin_service_publishes_on_loopback_the_port_it_serves_and_checks() -> None:
    command = SERVICE["command"]
    port = command[command.index("--port") + 1]

    assert command[:2] == ["admin", "serve"]
    assert SERVICE["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f":{port}/healthz" in " ".join(SERVICE["healthcheck"]["test"])


def test_the_admin_service_takes_its_token_from_the_environment() -> None:
    assert SERVICE["environment"]["SYNC_ADMIN_TOKEN"] == "${SYNC_ADMIN_TOKEN:-}"
