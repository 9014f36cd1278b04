"""The webhook service records the configuration it loaded while it serves."""

from __future__ import annotations

from sync_pipeline.config.loader import load_config
from sync_pipeline.state import instances
from tests.webhooks.conftest import CONFIG_DIR, running_service


def test_given_the_service_serving_it_is_recorded_with_its_digest_and_not_after(
    sandbox, redis_url, database_url, tmp_path
) -> None:
    digest = load_config(CONFIG_DIR, sandbox.env()).digest

    with running_service(sandbox, redis_url, database_url, tmp_path) as service:
        with service.engine.connect() as conn:
            serving = instances.running(conn)
        engine = service.engine

    assert [(s.kind, s.config_digest) for s in serving] == [("webhooks", digest)]
    with engine.connect() as conn:
        assert instances.running(conn) == []
