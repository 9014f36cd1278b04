"""Fixtures for the emulators' contract tests: a real uvicorn server on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.processes import free_port


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    return SandboxStore(tmp_path / "sandbox.db")


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any, int], None]]:
    """Serve an ASGI app through uvicorn in a thread on a loopback port; yields a factory."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no server started on port {port}")
            time.sleep(0.02)
        servers.append((server, thread))

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve(
    serve_app: Callable[[Any, int], None],
) -> Callable[[type[Emulator], SandboxStore], Emulator]:
    """Serve one emulator's bare routes on a free port; a factory."""

    def start(cls: type[Emulator], store: SandboxStore) -> Emulator:
        port = free_port()
        emulator = cls(store, f"http://127.0.0.1:{port}")
        serve_app(Starlette(routes=emulator.routes()), port)
        return emulator

    return start
