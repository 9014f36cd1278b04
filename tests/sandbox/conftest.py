"""Fixtures for the emulators' contract tests: a real uvicorn server on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from sync_pipeline.processes import free_port
from sync_pipeline.sandbox.core import SandboxStore
from sync_pipeline.sandbox.emulator import Emulator


@pytest.fixture
def store(tmp_path: Path) -> SandboxStore:
    return SandboxStore(tmp_path / "sandbox.db")


@pytest.fixture
def serve() -> Iterator[Callable[[type[Emulator], SandboxStore], Emulator]]:
    """Serve one emulator's bare routes through uvicorn in a thread; yields a factory."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(cls: type[Emulator], store: SandboxStore) -> Emulator:
        port = free_port()
        emulator = cls(store, f"http://127.0.0.1:{port}")
        app = Starlette(routes=emulator.routes())
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cls.platform} emulator did not start on port {port}")
            time.sleep(0.02)
        servers.append((server, thread))
        return emulator

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
