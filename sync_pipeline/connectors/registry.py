"""One connector class per vendor, found by the vendor's name in the connector config.

Modules are imported only when a connector of their vendor is made, so a worker loads the
vendors it uses (and their SDKs) and nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import cast

from sync_pipeline.config.connector import ConnectorConfig, Vendor
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.errors import ConfigError

# vendor -> (module, class); each class is built as cls(config, ctx).
CONNECTORS: Mapping[Vendor, tuple[str, str]] = {
    Vendor.OA: ("sync_pipeline.connectors.oa", "OAConnector"),
    Vendor.WECOM: ("sync_pipeline.connectors.wecom", "WeComConnector"),
    Vendor.DINGTALK: ("sync_pipeline.connectors.dingtalk", "DingTalkConnector"),
    Vendor.FEISHU: ("sync_pipeline.connectors.feishu", "FeishuConnector"),
    Vendor.AGORA: ("sync_pipeline.connectors.agora", "AgoraConnector"),
}


def make_connector(config: ConnectorConfig, ctx: ConnectorContext) -> Connector:
    """The connector for `config.vendor`; a vendor this build lacks is a config error."""
    if not config.resolved:
        raise ValueError(f"connector {config.name} was loaded without its secrets")
    module_name, class_name = CONNECTORS[config.vendor]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the module exists but one of its own imports is missing: a broken install
        raise ConfigError(
            "connectors.yaml",
            [(f"{config.name}.vendor", f"no {config.vendor} connector in this build")],
        ) from None
    return cast(Connector, getattr(module, class_name)(config, ctx))
