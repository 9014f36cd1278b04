"""`syncctl webhooks serve|stats`: run the webhook service, and read what it counted.

Exit codes as for every syncctl command: 2 when it cannot run (bad configuration, Redis or
PostgreSQL unreachable), with one line on stderr naming what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any, ParamSpec, TypeVar

import click
import uvicorn
from rich.console import Console
from rich.table import Table

from sync_pipeline.config.loader import load_config
from sync_pipeline.logging import configure_logging
from sync_pipeline.oneline import fail, one_line_errors
from sync_pipeline.services import export_env, services
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.webhooks.server import uvicorn_options

console = Console()
err_console = Console(stderr=True)
DEFAULT_PORT = 18700
P = ParamSpec("P")
R = TypeVar("R")


def _settings() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@click.group()
def webhooks() -> None:
    """Receive the vendors' webhooks and callbacks: verify, record once, enqueue."""


@webhooks.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen address. Vendors reach it through a reverse proxy (TLS); bind elsewhere "
    "only for that proxy (in a container: 0.0.0.0, published on the host's 127.0.0.1).",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@one_line_errors
def serve(host: str, port: int, workers: int) -> None:
    """Serve POST /webhooks/<connector> for every connector with a webhook: section."""
    from sync_pipeline.webhooks.app import load_endpoints

    settings = _settings()
    # Fail here, naming every problem, rather than in each server process.
    config = load_config(settings.config_dir, webhook_secrets=True)
    load_endpoints(config, os.environ, settings.config_dir)
    _check_port(host, port)
    with services(settings) as resolved:
        migrate(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)
        export_env(resolved)  # the server processes build their app from the environment
        for line in resolved.started:
            console.print(line)
        options: dict[str, Any] = {
            "factory": True,
            "host": host,
            "port": port,
            "workers": workers,
            "log_level": settings.log_level.lower(),
            "timeout_graceful_shutdown": 5,
            **uvicorn_options(),  # h11 with deadlines for a request's head and body
        }
        console.print(f"webhooks: listening on http://{host}:{port}/webhooks/<connector>")
        if workers > 1:
            uvicorn.run(APP, **options)  # its supervisor stops every process on SIGINT/SIGTERM
        else:
            asyncio.run(_serve(_Server(uvicorn.Config(APP, **options))))
    console.print("webhooks: stopped")


APP = "sync_pipeline.webhooks.app:create_app"


class _Server(uvicorn.Server):
    """Signals are handled by `_serve`: uvicorn's own handling re-raises them once stopped,
    and SIGTERM would then end the process before the services were stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server) -> None:
    """Serve until SIGINT or SIGTERM (a second one stops at once)."""

    def stop() -> None:
        server.force_exit = server.should_exit
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await server.serve()


def _check_port(host: str, port: int) -> None:
    """One clear line now, rather than a server that exits while starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port", 2)


@webhooks.command(name="slack-socket")
@click.argument("connector")
@one_line_errors
def slack_socket(connector: str) -> None:
    """Receive a Slack connector's button presses over Socket Mode (no public URL): record
    each once, ack it, have it handled. Needs the connector's credential app_token (xapp-)."""
    from sync_pipeline.webhooks.app import WebhookService, load_endpoints
    from sync_pipeline.webhooks.slack_socket import SlackSocketReceiver, app_token

    settings = _settings()
    config = load_config(settings.config_dir, os.environ)
    if connector not in config.connectors:
        fail(f"no connector {connector!r} in {settings.config_dir}/connectors.yaml", 2)
    app_token(config.connectors[connector])  # a slack connector with an app_token, or exit 2
    with services(settings) as resolved:
        migrate(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)
        endpoints = load_endpoints(config, os.environ, settings.config_dir)
        service = WebhookService(resolved.settings, endpoints, config)
        receiver = SlackSocketReceiver(service, config.connectors[connector])
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: receiver.stop.set())
        console.print(f"webhooks: {connector} over Slack Socket Mode")
        try:
            receiver.run()
        finally:
            service.close()
    console.print("webhooks: stopped")


@webhooks.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@one_line_errors
def stats(as_json: bool) -> None:
    """Deliveries accepted, duplicates and refusals per connector and reason (PostgreSQL)."""
    from sync_pipeline.webhooks.stats import webhook_stats

    settings = _settings()
    with services(settings, need_redis=False) as resolved:
        engine = engine_for(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)
        with engine.connect() as conn:
            found = webhook_stats(conn)
    if as_json:
        click.echo(json.dumps([s.as_json() for s in found], indent=2))
        return
    table = Table(title="Webhooks")
    for column in ("connector", "accepted", "queued", "duplicates"):
        table.add_column(column, justify="left" if column == "connector" else "right")
    table.add_column("refused (reason: count)")
    for s in found:
        refused = "\n".join(f"{reason}: {n}" for reason, n in sorted(s.refused.items())) or "-"
        table.add_row(
            s.connector,
            str(s.accepted),
            str(s.queued),
            str(s.duplicates),
            refused,
            end_section=True,
        )
    console.print(table)
