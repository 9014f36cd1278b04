"""A real HTTP peer for the HTTP layer's tests: scripted answers, every call recorded.

The server is a stdlib `ThreadingHTTPServer` in a thread of the test process. Each path plays
its script of answers in order, then keeps answering the last one; every request is recorded
with its arrival time on the server's own clock, so tests assert on what the vendor saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis

from sync_pipeline import processes
from sync_pipeline.errors import (
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)

OK: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Mapping[str, Any] | bytes = field(default_factory=lambda: OK)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # answer late, for read timeouts


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived


class ScriptedServer:
    def __init__(self, port: int = 0) -> None:
        self._scripts: dict[str, list[Answer]] = {}
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, path: str, *answers: Answer) -> None:
        with self._lock:
            self._scripts[path] = list(answers)

    def calls(self, path: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if path is None or c.path == path]

    def _next_answer(self, call: Call) -> Answer:
        with self._lock:
            self._calls.append(call)
            script = self._scripts.get(call.path, [])
            if len(script) > 1:
                return script.pop(0)
            return script[0] if script else Answer()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as vendors do

            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                call = Call(self.command, parts.path, query, dict(self.headers), body, arrived)
                answer = server._next_answer(call)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                raw = (
                    answer.body
                    if isinstance(answer.body, bytes)
                    else json.dumps(answer.body).encode()
                )
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if "Content-Type" not in answer.headers:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up waiting (read-timeout tests)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    return processes.free_port()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """A WeCom-like classification: errors inside HTTP 200, throttles as 429 + Retry-After."""
    if status == 429:
        hint = headers.get("Retry-After")
        return RateLimited("test", "429", retry_after=float(hint) if hint else None)
    if status >= 500:
        return VendorUnavailable("test", str(status))
    code = int(body.get("errcode", 0))
    if code in (40014, 42001):
        return TokenExpired("test", str(code))
    if code or status != 200:
        return VendorRejected("test", str(code or status))
    return None
