"""Connectors against the real sandbox emulators, served over HTTP on loopback ports.

The emulators are written from the vendors' contracts and share no code with the connectors
(DESIGN.md section 8), so a connector that passes here agrees with the contract, not with
itself. Tokens live in this test's own Redis database, as in production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import pytest
import redis

from sync_pipeline.config.connector import ConnectorConfig, Secret, Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.registry import option_schema
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.http import make_session
from tests.sandbox.conftest import serve, serve_app, store  # noqa: F401 - the emulators' own fixtures

SEED = 7
E = TypeVar("E", bound=Emulator)


@pytest.fixture
def ctx(redis_url: str) -> Iterator[ConnectorContext]:
    """What a worker process gives its connectors: shared Redis, one pooled session."""
    client = redis.Redis.from_url(redis_url)
    session = make_session()
    yield ConnectorContext(client, None, session)
    session.close()
    client.close()


def connector_config(
    vendor: Vendor,
    emulator: Emulator,
    credentials: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
) -> ConnectorConfig:
    """The config a connectors.yaml entry for this served emulator would load into, its
    options loaded by the vendor's schema as load_config loads them."""
    return ConnectorConfig(
        name=f"test_{vendor.value}",
        vendor=vendor,
        base_url=emulator.base_url,
        credentials={name: Secret(value) for name, value in credentials.items()},
        rate_limits={},
        monthly_quota={},
        timeout_s=10.0,
        options=option_schema(vendor)().load(dict(options or {})),
    )


def seeded(
    serve_emulator: Callable[[type[Emulator], SandboxStore], Emulator],
    cls: type[E],
    in_store: SandboxStore,
    approvals: int,
) -> E:
    """An emulator of `cls` served by the `serve` fixture on a free port, seeded from
    World(SEED) with `approvals` and no check-ins."""
    emulator = serve_emulator(cls, in_store)
    assert isinstance(emulator, cls)
    emulator.seed(World(SEED), approvals=approvals, checkin_days=0)
    return emulator
