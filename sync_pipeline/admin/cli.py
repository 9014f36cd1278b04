"""`syncctl admin serve`: the admin HTTP API on its own port, 127.0.0.1 by default.

Exit codes as for every syncctl command: 2 when it cannot run (no SYNC_ADMIN_TOKEN, bad
configuration, the port taken, Redis or PostgreSQL unreachable), with one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import click
import uvicorn
from rich.console import Console

from sync_pipeline.config.loader import load_config
from sync_pipeline.logging import configure_logging
from sync_pipeline.oneline import fail, one_line_errors
from sync_pipeline.services import services
from sync_pipeline.settings import load_settings
from sync_pipeline.state.migrate import migrate

console = Console()
DEFAULT_PORT = 18710


@click.group()
def admin() -> None:
    """The admin HTTP API: flows, runs, resyncs, pauses, dead letters, effects, alerts."""


@admin.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Listen address. Keep it on loopback (in a container: 0.0.0.0, published on the"
    " host's 127.0.0.1).",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535))
@one_line_errors
def serve(host: str, port: int) -> None:
    """Serve the admin API (README, "Admin API"); every route but /healthz wants
    `Authorization: Bearer $SYNC_ADMIN_TOKEN`, and it refuses to start without one."""
    from sync_pipeline.admin.app import create_app
    from sync_pipeline.admin.service import AdminService

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if settings.admin_token is None:
        fail("SYNC_ADMIN_TOKEN is not set: the admin API does not start without a token", 2)
    config = load_config(settings.config_dir, environment=False)  # the workers hold secrets
    _check_port(host, port)
    with services(settings) as resolved:
        migrate(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)
        for line in resolved.started:
            console.print(line)
        app = create_app(AdminService(resolved.settings, config), settings.admin_token)
        server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=settings.log_level.lower(),
                access_log=False,  # the Guard logs each refusal in one line, never a header
                timeout_graceful_shutdown=5,
            )
        )
        console.print(f"admin: listening on http://{host}:{port}/ (OpenAPI at /openapi.json)")
        asyncio.run(_serve(server))
    console.print("admin: stopped")


class _Server(uvicorn.Server):
    """Signals are handled by `_serve`, so the services' block ends (embedded engines stop)."""

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
