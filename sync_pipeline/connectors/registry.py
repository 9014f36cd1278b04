"""One connector class per vendor, found by the vendor's name in the connector config.

Modules are imported only when a connector of their vendor is made, or its streams or
options are asked for (`capabilities`, `option_schema`, by the config's checks), so a process
loads the vendors its configuration names (and their SDKs) and nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Protocol, cast

from sync_pipeline.config.connector import ConnectorConfig, Vendor
from sync_pipeline.config.declarative import RestSpec
from sync_pipeline.config.options import OptionsSchema
from sync_pipeline.connectors.base import Connector, ConnectorContext, StreamCapabilities
from sync_pipeline.errors import ConfigError
from sync_pipeline.records import EventKind

# vendor -> (module, class); each class is built as cls(config, ctx).
CONNECTORS: Mapping[Vendor, tuple[str, str]] = {
    Vendor.OA: ("sync_pipeline.connectors.oa", "OAConnector"),
    Vendor.WECOM: ("sync_pipeline.connectors.wecom", "WeComConnector"),
    Vendor.DINGTALK: ("sync_pipeline.connectors.dingtalk", "DingTalkConnector"),
    Vendor.FEISHU: ("sync_pipeline.connectors.feishu", "FeishuConnector"),
    Vendor.AGORA: ("sync_pipeline.connectors.agora", "AgoraConnector"),
    Vendor.REST: ("sync_pipeline.connectors.declarative.connector", "DeclarativeConnector"),
    Vendor.MATRIX: ("sync_pipeline.connectors.matrix", "MatrixConnector"),
    Vendor.SLACK: ("sync_pipeline.connectors.slack", "SlackConnector"),
}


def make_connector(config: ConnectorConfig, ctx: ConnectorContext) -> Connector:
    """The connector for `config.vendor`; a vendor this build lacks is a config error."""
    if not config.resolved:
        raise ValueError(f"connector {config.name} was loaded without its secrets")
    return connector_class(config.vendor, config.name)(config, ctx)


def capabilities(vendor: Vendor, name: str = "") -> Mapping[str, StreamCapabilities]:
    """The streams of `vendor`'s connector and what each can do, read from its class
    (imported, never made: no secret, no network)."""
    streams: Mapping[str, StreamCapabilities] = connector_class(vendor, name).STREAMS
    return streams


def declared_streams(spec: RestSpec) -> Mapping[str, StreamCapabilities]:
    """A rest connector's streams, as its description declares them: read where it has
    `read:`, written where it has `write:`, synced on approval_changed events where its
    `webhook:` names it."""
    evented = spec.evented()
    return {
        name: StreamCapabilities(
            read=stream.read is not None,
            write=stream.write is not None,
            events=frozenset({EventKind.APPROVAL_CHANGED}) if name in evented else frozenset(),
        )
        for name, stream in spec.streams.items()
    }


def streams_of(config: ConnectorConfig) -> Mapping[str, StreamCapabilities]:
    """The streams of one configured connector: its vendor's, or a rest connector's own."""
    if config.vendor is Vendor.REST:
        return {} if config.declarative is None else declared_streams(config.declarative)
    return capabilities(config.vendor, config.name)


def option_schema(vendor: Vendor, name: str = "") -> type[OptionsSchema]:
    """The options `vendor`'s connector reads, as its class declares them (imported, never
    made), which the config checks `options:` against (config/options.py)."""
    return connector_class(vendor, name).OPTIONS


class ConnectorClass(Protocol):
    """A connector class: its declared streams and options, and how it is made."""

    STREAMS: Mapping[str, StreamCapabilities]
    OPTIONS: type[OptionsSchema]

    def __call__(self, config: ConnectorConfig, ctx: ConnectorContext) -> Connector: ...


def connector_class(vendor: Vendor, name: str = "") -> ConnectorClass:
    """`vendor`'s connector class; `name` (of the config's connector) names the problem when
    this build lacks the vendor's module."""
    module_name, class_name = CONNECTORS[vendor]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its own imports is missing: a broken install
        raise ConfigError(
            "connectors.yaml",
            [(f"{name or vendor}.vendor", f"no {vendor} connector in this build")],
        ) from None
    return cast(ConnectorClass, getattr(module, class_name))
