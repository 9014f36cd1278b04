"""The registry makes the connector of a config's vendor, importing only that vendor."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sync_pipeline.config.connector import BreakerConfig, ConnectorConfig, Secret, Vendor
from sync_pipeline.connectors import registry
from sync_pipeline.connectors.agora import AgoraConnector
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.errors import ConfigError, VendorUnavailable
from sync_pipeline.http.breaker import BreakerState


def config(vendor: Vendor, credentials: dict[str, str], options: dict[str, str]) -> ConnectorConfig:
    return ConnectorConfig(
        name=f"my_{vendor.value}",
        vendor=vendor,
        base_url="http://127.0.0.1:9",  # never called: making a connector sends nothing
        credentials={k: Secret(v) for k, v in credentials.items()},
        rate_limits={},
        monthly_quota={},
        timeout_s=5.0,
        options=registry.option_schema(vendor)().load(options),
    )


def test_given_a_feishu_config_the_registry_makes_a_feishu_connector(ctx) -> None:
    made = registry.make_connector(
        config(Vendor.FEISHU, {"app_id": "cli_1", "app_secret": "s"}, {}), ctx
    )

    assert isinstance(made, FeishuConnector)


def test_given_an_agora_config_the_registry_makes_an_agora_connector(ctx) -> None:
    made = registry.make_connector(
        config(
            Vendor.AGORA,
            {"app_id": "a" * 32, "app_certificate": "b" * 32},
            {"org_name": "1", "app_name": "2"},
        ),
        ctx,
    )

    assert isinstance(made, AgoraConnector)


def test_a_connector_s_breaker_opens_after_the_failures_its_config_gives(ctx) -> None:
    feishu = replace(
        config(Vendor.FEISHU, {"app_id": "cli_breaker", "app_secret": "s"}, {}),
        breaker=BreakerConfig(failures=2, reset_s=60),
    )
    breaker = registry.make_connector(feishu, ctx).client.breaker

    opened = [breaker.record_failure(), breaker.record_failure()]

    assert opened == [False, True]
    assert breaker.state() is BreakerState.OPEN
    with pytest.raises(VendorUnavailable):  # calls fail fast until reset_s has passed
        breaker.before_call()


def test_every_vendor_has_a_connector_entry() -> None:
    assert set(registry.CONNECTORS) == set(Vendor)


def test_given_a_vendor_whose_module_is_missing_the_error_names_the_connector(
    ctx: ConnectorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    oa = config(Vendor.OA, {}, {"userid": "1"})
    monkeypatch.setitem(
        registry.CONNECTORS,
        Vendor.OA,
        ("sync_pipeline.connectors.not_built", "OAConnector"),
    )

    with pytest.raises(ConfigError) as caught:
        registry.make_connector(oa, ctx)

    assert caught.value.problems == [("my_oa.vendor", "no oa connector in this build")]
