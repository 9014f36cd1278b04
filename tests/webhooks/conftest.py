"""The webhook service served for real, fed by the real sandbox.

The sandbox's emulators implement each vendor's callback crypto on their own (DESIGN.md
section 8), so a callback the sandbox sends and the service accepts checks both sides. Each test
gets its own PostgreSQL schema and Redis database (tests/conftest.py); the sandbox is shared by
the tests of one module, its callback URLs pointed at the test's own service.
"""

from __future__ import annotations

import base64
import gc
import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa
import uvicorn

from sync_pipeline import dispatch
from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.http import make_session
from sync_pipeline.processes import free_port
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteResult
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state import inbound
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.quotas import PostgresQuotaStore
from sync_pipeline.state.schema import inbound_events
from sync_pipeline.webhooks.app import build_app
from sync_pipeline.webhooks.server import uvicorn_options
from tests.conftest import ROOT, wait_for
from tests.e2e.spine import CALLBACK_SETTING, emptied, redis_server

CONFIG_DIR = ROOT / "config"
ADMIN_TOKEN = "test-admin-token-0123456789"  # what every service here takes as SYNC_ADMIN_TOKEN
FIXTURES = Path(__file__).parent / "fixtures"
CONNECTOR = {
    "oa": "sandbox_oa",
    "wecom": "sandbox_wecom",
    "dingtalk": "sandbox_dingtalk",
    "feishu": "sandbox_feishu",
    "agora": "sandbox_agora",
    "slack": "sandbox_slack",
}


def fixture_text(vendor: str, name: str) -> str:
    return (FIXTURES / vendor / name).read_text("utf-8")


_redis_dbs = itertools.cycle(range(16))


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of these tests' own. The machine's Redis is shared with other test runs,
    whose workers would consume this test's "events" queue before it could be counted."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(private_redis: str) -> str:
    """A database of the private Redis, emptied first (overrides tests/conftest.py's)."""
    return emptied(private_redis, next(_redis_dbs))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The sandbox as a real server (a child process) on free ports, with a small world."""
    from sync_pipeline.devtools.sandbox.client import seeded_sandbox

    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(
        data, seed=7, approvals=20, checkin_days=1, progress_per_project=1
    ) as client:
        yield client


def queued_tasks(client: redis.Redis) -> list[list[int]]:
    """The row ids each `events.handle` task on the "events" queue carries, oldest first
    (kombu keeps a Redis list per queue; the body's args are [row id] or [row id, [more]])."""
    messages = [json.loads(raw) for raw in reversed(client.lrange("events", 0, -1))]
    assert all(m["headers"]["task"] == dispatch.EVENT_TASK for m in messages)
    tasks = []
    for message in messages:
        args = json.loads(base64.b64decode(message["body"]).decode())[0]
        tasks.append([int(args[0]), *(int(r) for r in (args[1] if len(args) > 1 else []))])
    return tasks


def queued_rows(client: redis.Redis) -> list[int]:
    """Every row id the queued `events.handle` tasks carry, in the order they were sent."""
    return [row_id for task in queued_tasks(client) for row_id in task]


@dataclass
class Service:
    """The webhook service on a free loopback port, and what it wrote."""

    url: str
    settings: Settings
    engine: sa.engine.Engine
    redis: redis.Redis
    env: Mapping[str, str]

    def endpoint(self, platform: str) -> str:
        return f"{self.url}/webhooks/{CONNECTOR[platform]}"

    def rows(self, platform: str) -> list[inbound.StoredEvent]:
        with self.engine.connect() as conn:
            ids = conn.execute(
                sa.select(inbound_events.c.id)
                .where(inbound_events.c.connector == CONNECTOR[platform])
                .order_by(inbound_events.c.id)
            ).scalars()
            return [row for row_id in list(ids) if (row := inbound.get(conn, row_id)) is not None]

    def enqueued(self) -> int:
        """Event rows sent for handling and waiting on the "events" queue (one task carries
        the rows that arrived together)."""
        return len(queued_rows(self.redis))

    def wait_enqueued(self, count: int) -> int:
        """The rows enqueued once there are `count`: the service sends tasks just after its
        answers, so the vendor may hear back a moment before the task is queued."""
        wait_for(lambda: self.enqueued() >= count, 20, what=f"{count} row(s) on 'events'")
        return self.enqueued()

    def metrics(self) -> requests.Response:
        """GET /metrics as an operator does, with the admin token, asking for JSON figures."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": "application/json"}
        return requests.get(f"{self.url}/metrics", headers=headers, timeout=10)

    def prometheus(self) -> requests.Response:
        """GET /metrics as Prometheus does, with the admin token."""
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return requests.get(f"{self.url}/metrics", headers=headers, timeout=10)

    def refusals(self, platform: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            counted = inbound.refusals(conn)
        return {reason: n for (name, reason), n in counted.items() if name == CONNECTOR[platform]}

    def wait_rows(self, platform: str, count: int) -> list[inbound.StoredEvent]:
        def enough() -> list[inbound.StoredEvent] | None:
            rows = self.rows(platform)
            return rows if len(rows) >= count else None

        found: list[inbound.StoredEvent] = wait_for(
            enough, deadline_s=20, what=f"{count} inbound event(s) of {platform}"
        )
        return found


def serve_in_thread(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """`app` served as `syncctl webhooks serve` serves it (server.py's protocol and options)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_options()
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the webhook service did not start on port {port}")
        time.sleep(0.02)
    return server, thread


def service_settings(redis_url: str, database_url: str, tmp_path: Path, **more: str) -> Settings:
    return load_settings(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SYNC_CONFIG_DIR": str(CONFIG_DIR),
            "SYNC_DATA_DIR": str(tmp_path / "data"),
            "SYNC_ADMIN_TOKEN": ADMIN_TOKEN,
            **more,
        }
    )


@pytest.fixture
def service(sandbox, redis_url: str, database_url: str, tmp_path: Path) -> Iterator[Service]:
    """The webhook service of this test, with every sandbox platform calling it."""
    with running_service(sandbox, redis_url, database_url, tmp_path) as running:
        for platform in CONNECTOR:
            key = CALLBACK_SETTING.get(platform, "callback_url")
            sandbox.settings(platform, {key: running.endpoint(platform)})
        yield running
        sandbox.clear_faults()


@contextmanager
def running_service(
    sandbox, redis_url: str, database_url: str, tmp_path: Path, **more: str
) -> Iterator[Service]:
    """The webhook service on a free port, its settings given `more` (service_settings), the
    sandbox's faults cleared; shut down when the block ends. No platform calls it yet."""
    migrate(database_url)
    settings = service_settings(redis_url, database_url, tmp_path, **more)
    env = sandbox.env()
    port = free_port()
    server, thread = serve_in_thread(build_app(settings, env), port)
    running = Service(
        url=f"http://127.0.0.1:{port}",
        settings=settings,
        engine=engine_for(database_url),
        redis=redis.Redis.from_url(redis_url),
        env=env,
    )
    sandbox.clear_faults()
    yield running
    shut_down(server, thread, running)


def shut_down(server: uvicorn.Server, thread: threading.Thread, running: Service) -> None:
    """Stop the service and close its connections."""
    server.should_exit = True
    thread.join(timeout=10)
    running.redis.close()
    running.engine.dispose()
    # The service's own pool and migrate()'s engine close their connections only when the
    # garbage collector breaks their reference cycles: collect them now, or a run of these
    # tests holds a pool per test and PostgreSQL runs out of connections.
    gc.collect()


@pytest.fixture
def connectors(service: Service) -> Iterator[dict[str, Connector]]:
    """Our own connectors pointed at the sandbox, to send the cards users then press."""
    config = load_config(CONFIG_DIR, service.env)
    client = redis.Redis.from_url(service.settings.urls()[0])
    session = make_session()
    ctx = ConnectorContext(client, PostgresQuotaStore(service.settings.urls()[1]), session)
    yield {
        platform: make_connector(config.connectors[name], ctx)
        for platform, name in CONNECTOR.items()
    }
    session.close()
    client.close()


def im_user(connector: Connector, employee_no: str) -> str:
    """The IM's own id of a seeded person, as our directory sees it."""
    return next(u.user_id for u in connector.list_users() if u.employee_no == employee_no)


def send_card(connector: Connector, to: str, source_id: str) -> WriteResult:
    """A pending approval's card with Approve / Reject, sent as the pipeline sends it."""
    request = WriteRequest(
        effect_key=f"test:{source_id}:{to}",
        source_id=source_id,
        op=WriteOp.CREATE,
        notification=Notification.from_json(
            {
                "kind": "card",
                "to": to,
                "content": {"title": f"Leave {source_id}", "text": "3 days", "status": "pending"},
            }
        ),
    )
    result = connector.write("messages", request)
    assert result.status.value == "done", result.reason
    return result


def post(url: str, body: bytes, **kwargs: Any) -> requests.Response:
    return requests.post(url, data=body, timeout=10, **kwargs)


@dataclass(frozen=True)
class Captured:
    """One callback as the sandbox sent it, to be sent again, tampered with or re-signed."""

    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def send(self, url: str, **changes: Any) -> requests.Response:
        """Send it (or a changed copy: query=, headers=, body=) to `url` as the vendor did."""
        query = changes.get("query", self.query)
        headers = changes.get("headers", self.headers)
        body = changes.get("body", self.body)
        return requests.request(
            self.method, url, params=query, headers=headers, data=body, timeout=10
        )


class Recorder:
    """A stand-in receiver: records what the sandbox sends and answers 200, so a test holds
    a genuine signed callback without the service having seen it."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.captured: list[Captured] = []

        async def record(request: Request) -> Response:
            kept = {"content-type", "x-oa-timestamp", "x-oa-signature"} | {
                k for k in request.headers if k.startswith(("x-lark-", "x-slack-"))
            }
            self.captured.append(
                Captured(
                    request.method,
                    dict(request.query_params),
                    {k: v for k, v in request.headers.items() if k in kept},
                    await request.body(),
                )
            )
            return Response(b"", status_code=200)

        self.port = free_port()
        app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
        self.server, self.thread = serve_in_thread(app, self.port)
        self.url = f"http://127.0.0.1:{self.port}/recorder"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    found = Recorder()
    yield found
    found.close()


def capture(sandbox, service: Service, recorder: Recorder, platform: str, press) -> Captured:
    """The callback `press()` makes the sandbox send, caught by the recorder instead of the
    service; the platform calls the service again afterwards."""
    key = CALLBACK_SETTING.get(platform, "callback_url")
    sandbox.settings(platform, {key: recorder.url})
    try:
        before = len(recorder.captured)
        press()
        wait_for(lambda: len(recorder.captured) > before, 20, what=f"a {platform} callback")
    finally:
        sandbox.settings(platform, {key: service.endpoint(platform)})
    return recorder.captured[before]
