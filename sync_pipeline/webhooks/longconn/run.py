"""`syncctl events connect CONNECTOR`: keep one connector's no-public-URL connection until
SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal

from sync_pipeline.config.connector import ConnectorConfig, EventsMode
from sync_pipeline.presence import Presence
from sync_pipeline.settings import Settings
from sync_pipeline.webhooks.longconn.dingtalk import ConnectionConfig, StreamClient
from sync_pipeline.webhooks.longconn.feishu import LongConnectionClient
from sync_pipeline.webhooks.longconn.keeper import Keeper

log = logging.getLogger(__name__)


# The credentials each mode logs in with: (client id, client secret) names in `credentials:`.
CREDENTIALS = {
    EventsMode.STREAM: ("app_key", "app_secret"),
    EventsMode.LONG_CONNECTION: ("app_id", "app_secret"),
}
CLIENTS = {EventsMode.STREAM: StreamClient, EventsMode.LONG_CONNECTION: LongConnectionClient}


def connection_config(connector: ConnectorConfig) -> ConnectionConfig:
    events = connector.events
    if events is None:
        raise ValueError(f"{connector.name} has no events: section")
    client_id, client_secret = CREDENTIALS[events.mode]
    return ConnectionConfig(
        connector=connector.name,
        base_url=connector.base_url,
        client_id=connector.credentials[client_id],
        client_secret=connector.credentials[client_secret],
        silence_s=events.silence_s,
        timeout_s=connector.timeout_s,
    )


def connect(settings: Settings, connector: ConnectorConfig, digest: str) -> None:
    """Run the connection in this process until told to stop."""
    assert connector.events is not None  # noqa: S101 - the CLI refused it otherwise
    keeper = Keeper(settings, connector.name, connector.events.silence_s)
    client = CLIENTS[connector.events.mode](connection_config(connector), keeper)
    presence = Presence(settings.urls()[1], "events-connect", digest)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await client.keep(stop)

    presence.start()
    try:
        asyncio.run(main())
    finally:
        presence.stop()
        keeper.close()
        log.info("events %s: stopped", connector.name)
