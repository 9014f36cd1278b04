"""A real Synapse per test module (tests/matrix/synapse.py), and Matrix connectors on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import redis

from sync_pipeline.config.connector import ConnectorConfig, Secret, Vendor
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.matrix import MatrixConnector
from sync_pipeline.connectors.registry import option_schema
from sync_pipeline.http import make_session
from tests.e2e.conftest import migrated, private_redis, private_redis_url  # noqa: F401 - reused
from tests.matrix.synapse import MatrixUser, Synapse, running_synapse


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    with running_synapse(tmp_path_factory.mktemp("synapse")) as server:
        yield server


@pytest.fixture
def ctx(redis_url: str) -> Iterator[ConnectorContext]:
    client = redis.Redis.from_url(redis_url)
    session = make_session()
    yield ConnectorContext(client, None, session)
    session.close()
    client.close()


def matrix_config(
    synapse: Synapse, bot: MatrixUser, options: Mapping[str, Any] | None = None
) -> ConnectorConfig:
    """What a connectors.yaml entry for this homeserver and bot loads into."""
    return ConnectorConfig(
        name="test_matrix",
        vendor=Vendor.MATRIX,
        base_url=synapse.base_url,
        credentials={"access_token": Secret(bot.access_token)},
        rate_limits={},
        monthly_quota={},
        timeout_s=10.0,
        options=option_schema(Vendor.MATRIX)().load(dict(options or {})),
    )


MakeConnector = Callable[..., MatrixConnector]


@pytest.fixture
def make_connector(synapse: Synapse, ctx: ConnectorContext) -> MakeConnector:
    def made(bot: MatrixUser, **options: Any) -> MatrixConnector:
        return MatrixConnector(matrix_config(synapse, bot, options), ctx)

    return made
