"""The webhook service: one ASGI app, `POST /webhooks/<connector>` per configured connector.

Every delivery goes the same way, whatever the vendor (DESIGN.md section 5):
1. the vendor module verifies the signature over the raw body, checks the timestamp window,
   decrypts, answers a URL-verification handshake, and decodes the event (delivery.py);
2. a signed request seen before inside its window is a replay (Redis SET NX with the window as
   TTL; if Redis lost it, step 3 still holds);
3. the event is recorded once in PostgreSQL under the vendor's event id (`inbound.record`): a
   second delivery of the same event is acknowledged with the vendor's success answer, counted
   as a duplicate, and not enqueued; an event nothing handles (EventKind.UNHANDLED, Agora's
   echoes of our own messages) is recorded as ignored and not enqueued, so its id is taken;
4. the vendor gets its answer in its format;
5. then `events.handle` is sent with the row id (after the answer, so a slow broker never
   delays it) by the process's one sending thread (`dispatch.EventSender`, the service's only
   Celery producer), which sends the rows recorded close together as one task; if the broker
   is down the rows stay `queued` and the sweeper (sweep.py) sends them later.
Nothing here calls a vendor: a handler does that later, in a worker, so every answer is within
the vendors' deadlines (1 to 5 s).
Refusals (forged, stale, replayed, malformed, incomplete) get a 4xx, are counted per connector
and reason (`inbound.refuse`), and nothing is recorded or enqueued for them. A request that
meets a bug of ours is counted as `error` and answered with a bare 500, logged in one line.
How long a request may take to arrive is server.py's business.

The app never imports the sandbox, the workers or Celery (lint-imports checks it): tasks go by
name through `dispatch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import redis
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipeline import dispatch, metrics
from sync_pipeline.config.connector import Vendor, resolve_credentials
from sync_pipeline.config.loader import CONNECTORS_FILE, TOP, Config, load_config
from sync_pipeline.errors import ConfigError, Reason, Refused
from sync_pipeline.logging import configure_logging
from sync_pipeline.presence import Presence
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state import inbound
from sync_pipeline.state.db import engine_for
from sync_pipeline.untrusted import excerpt
from sync_pipeline.webhooks import agora, dingtalk, feishu, oa, rest, slack, wecom
from sync_pipeline.webhooks.auth import admin_token
from sync_pipeline.webhooks.delivery import Accepted, Answer, Endpoint, Incoming
from sync_pipeline.webhooks.metrics import CONTENT_TYPE, StateCollector, exposition
from sync_pipeline.webhooks.stats import DUPLICATE, ERROR, webhook_stats
from sync_pipeline.webhooks.verify import WXCrypt

log = logging.getLogger(__name__)

Receiver = Callable[[Endpoint, Incoming], Accepted]
RECEIVERS: Mapping[Vendor, Receiver] = {
    Vendor.OA: oa.receive,
    Vendor.WECOM: wecom.receive,
    Vendor.DINGTALK: dingtalk.receive,
    Vendor.FEISHU: feishu.receive,
    Vendor.AGORA: agora.receive,
    Vendor.REST: rest.receive,
    Vendor.SLACK: slack.receive,
}
MAX_BODY_BYTES = 1 << 20  # callbacks are a few KB; Feishu's largest card callback is far below
CLOSE = {"connection": "close"}  # after an answer given before the body was read whole
# Deliveries verified and recorded at once, each on a pooled PostgreSQL connection: no more
# than the pool keeps (engine_for: 5), or every burst would open and close connections beyond
# it, each a new PostgreSQL backend. More wait on the event loop, a few milliseconds each.
DELIVERING = 5


def load_endpoints(config: Config, env: Mapping[str, str], config_dir: Path) -> dict[str, Endpoint]:
    """Every connector with a `webhook:` section, its secrets resolved; ConfigError names each
    missing variable or unusable key at once."""
    problems: list[tuple[str, str]] = []
    endpoints: dict[str, Endpoint] = {}
    for name, connector in config.connectors.items():
        if connector.webhook is None:
            continue
        secrets, missing = resolve_credentials(connector.webhook.secrets, env, config_dir)
        problems += [(f"{name}.webhook.{key}", expected) for key, expected in missing]
        spec = connector.declarative.webhook if connector.declarative else None
        endpoint = Endpoint(name, connector.vendor, secrets, connector.webhook.window_s, spec)
        if not missing:
            problems += _key_problems(endpoint)
        endpoints[name] = endpoint
    if not endpoints:
        problems.append((TOP, "expected a connector with a webhook: section"))
    if problems:
        raise ConfigError(str(config_dir / CONNECTORS_FILE), problems)
    return endpoints


def _key_problems(endpoint: Endpoint) -> list[tuple[str, str]]:
    """An AES key of the wrong shape is a config error at start, not a 500 per request."""
    key = {Vendor.WECOM: "encoding_aes_key", Vendor.DINGTALK: "aes_key"}.get(endpoint.vendor)
    if key is None:
        return []
    try:
        WXCrypt("", endpoint.secret(key), "")
    except ValueError as exc:
        return [(f"{endpoint.connector}.webhook.{key}", str(exc))]
    return []


class WebhookService:
    """The process's long-lived clients (PostgreSQL pool, Redis, the sending thread) and what
    one delivery goes through."""

    def __init__(
        self, settings: Settings, endpoints: Mapping[str, Endpoint], config: Config
    ) -> None:
        redis_url, database_url = settings.urls()
        self.endpoints = dict(endpoints)
        self.engine = engine_for(database_url, settings.connect_timeout_s)
        timeout = settings.connect_timeout_s
        self.redis = redis.Redis.from_url(
            redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self.sender = dispatch.EventSender(settings)
        self.admin = admin_token(settings)  # guards /metrics (auth.py says why a token)
        self.state = StateCollector(self.engine, self.redis, config)
        self.files = metrics.FilesCollector(metrics.metrics_root(settings.data_dir))
        self._delivering: anyio.CapacityLimiter | None = None  # made on the event loop

    def close(self) -> None:
        self.sender.close()
        self.redis.close()

    # -- one delivery --------------------------------------------------------------------------
    def deliver(self, connector: str, incoming: Incoming) -> tuple[Answer, int | None]:
        """Verify, deduplicate and record: the vendor's answer, and the row id to enqueue once
        the answer is sent (None: nothing to enqueue). See the module docstring."""
        endpoint = self.endpoints.get(connector)
        if endpoint is None:
            return Answer.json({"error": f"no webhook for {connector!r}"}, 404), None
        gets = endpoint.vendor is Vendor.WECOM
        receive = RECEIVERS[endpoint.vendor] if incoming.method == "POST" or gets else _no_get
        try:
            accepted = receive(endpoint, incoming)
            if accepted.replay_key is not None:
                self._remember(endpoint, accepted, incoming.now)
        except Refused as exc:
            self.refuse(endpoint.connector, exc)
            return Answer.json({"error": exc.reason.value}, exc.status), None
        if accepted.event is None:
            return accepted.answer, None
        try:
            row_id = self.record(endpoint.connector, accepted.event)
        except sa.exc.SQLAlchemyError as exc:
            # Not recorded: the vendor retries, and its retry must not pass for a replay.
            self._forget(endpoint, accepted)
            log.warning("webhook %s: cannot record the event: %s", connector, type(exc).__name__)
            return Answer.json({"error": "unavailable"}, 503), None
        if row_id is None:
            log.info("webhook %s: duplicate of event %s", connector, accepted.event.event_id)
        if accepted.event.kind is EventKind.UNHANDLED:
            return accepted.answer, None  # recorded as ignored: its id is taken, nothing to do
        return accepted.answer, row_id

    def record(self, connector: str, event: InboundEvent) -> int | None:
        """Record `event` once: its row id, or None for a duplicate (counted as one). Raises
        SQLAlchemyError when it could not be recorded: the vendor must deliver it again."""
        with self.engine.begin() as conn:
            row_id = inbound.record(conn, event)
            if row_id is None:
                inbound.refuse(conn, connector, DUPLICATE)
        return row_id

    def refuse(self, connector: str, refusal: Refused) -> None:
        log.warning("webhook %s refused: %s", connector, refusal)
        self._count(connector, refusal.reason.value)

    def fail(self, connector: str, exc: Exception) -> None:
        """A bug of ours met a request: one line naming where, and the `error` count."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        log.error(
            "webhook %s: unexpected %s%s: %s; answered 500",
            connector,
            type(exc).__name__,
            where,
            excerpt(str(exc)),
        )
        self._count(connector, ERROR)

    def _count(self, connector: str, reason: str) -> None:
        try:
            with self.engine.begin() as conn:
                inbound.refuse(conn, connector, reason)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("webhook %s: cannot count %s: %s", connector, reason, type(exc).__name__)

    def _replay_key(self, endpoint: Endpoint, accepted: Accepted) -> str:
        digest = hashlib.sha256(str(accepted.replay_key).encode()).hexdigest()
        return f"webhooks:seen:{endpoint.connector}:{digest}"

    def _remember(self, endpoint: Endpoint, accepted: Accepted, now: float) -> None:
        """Refused as a replay if this signed request was seen inside its window. Redis is a
        fast path only: unreachable, it lets the request on to the PostgreSQL dedupe."""
        ttl = max(1, math.ceil(accepted.valid_until - now) + 1)
        try:
            first = self.redis.set(self._replay_key(endpoint, accepted), "1", nx=True, ex=ttl)
        except redis.exceptions.RedisError as exc:
            log.warning("webhook %s: no replay check, Redis: %s", endpoint.connector, exc)
            return
        if not first:
            raise Refused(Reason.REPLAY, "this signed request was received before")

    def _forget(self, endpoint: Endpoint, accepted: Accepted) -> None:
        if accepted.replay_key is None:
            return
        with contextlib.suppress(redis.exceptions.RedisError):
            self.redis.delete(self._replay_key(endpoint, accepted))

    async def enqueue(self, connector: str, row_id: int) -> None:
        """Have `events.handle` sent (Sender); on failure the row stays queued for the
        sweeper. Runs on the event loop after the answer: it only hands the row on."""
        self.sender.put(connector, row_id)

    # -- health and figures --------------------------------------------------------------------
    def health(self) -> tuple[bool, dict[str, str]]:
        """PostgreSQL must answer (no delivery is accepted without it); Redis is reported."""
        report = {"postgres": "ok", "redis": "ok"}
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            report["postgres"] = type(exc).__name__
        try:
            self.redis.ping()
        except redis.exceptions.RedisError as exc:
            report["redis"] = type(exc).__name__
        return report["postgres"] == "ok", report

    def figures(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            found = webhook_stats(conn)
        return {"connectors": [s.as_json() for s in found]}

    # -- HTTP ----------------------------------------------------------------------------------
    def app(self, presence: Presence | None = None) -> Starlette:
        """The ASGI app; `presence` records the service while it serves (presence.py)."""

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            if presence is not None:
                await run_in_threadpool(presence.start)
            yield
            if presence is not None:
                await run_in_threadpool(presence.stop)
            self.close()

        return Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/metrics", self.admin.guard(self._metrics), methods=["GET"]),
                Route("/webhooks/{connector}", self._webhook, methods=["GET", "POST"]),
            ],
            lifespan=lifespan,
        )

    async def _webhook(self, request: Request) -> Response:
        connector = request.path_params["connector"]
        if connector not in self.endpoints:  # never counted: anyone could invent names
            return JSONResponse({"error": "no webhook here"}, status_code=404)
        try:
            return await self._receive(connector, request)
        except Exception as exc:  # noqa: BLE001 - a bug of ours: counted, one line, no detail out
            await run_in_threadpool(self.fail, connector, exc)
            return JSONResponse({"error": ERROR}, status_code=500, headers=CLOSE)

    async def _receive(self, connector: str, request: Request) -> Response:
        now = time.time()
        try:
            body = await _body(request)
        except Refused as refusal:
            await run_in_threadpool(self.refuse, connector, refusal)
            error = {"error": refusal.reason.value}
            return JSONResponse(error, status_code=refusal.status, headers=CLOSE)
        incoming = Incoming(
            method=request.method,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            now=now,
        )
        if self._delivering is None:
            self._delivering = anyio.CapacityLimiter(DELIVERING)
        answer, row_id = await anyio.to_thread.run_sync(
            self.deliver, connector, incoming, limiter=self._delivering
        )
        send = None if row_id is None else BackgroundTask(self.enqueue, connector, row_id)
        return Response(
            answer.body, status_code=answer.status, media_type=answer.media_type, background=send
        )

    async def _healthz(self, request: Request) -> Response:
        """Open to anyone, so it tells only up or down; what is down goes to the log."""
        healthy, report = await run_in_threadpool(self.health)
        if not healthy:
            log.warning("webhooks: unhealthy: %s", report)
        status = "ok" if healthy else "unavailable"
        return JSONResponse({"status": status}, status_code=200 if healthy else 503)

    async def _metrics(self, request: Request) -> Response:
        """Prometheus's text format (webhooks/metrics.py); the webhook figures as JSON to a
        client that asks for JSON (`Accept: application/json`)."""
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(await run_in_threadpool(self.figures))
        text = await run_in_threadpool(exposition, self.state, self.files)
        return Response(text, media_type=CONTENT_TYPE)


def _declared_over_max(content_length: str) -> bool:
    """Whether a Content-Length announces more than MAX_BODY_BYTES (compared by length first:
    int() refuses numbers of over 4,300 digits)."""
    digits = content_length.lstrip("0")
    if not (digits.isascii() and digits.isdigit()):
        return False  # h11 refuses a malformed length before the app sees it
    return len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES


def _no_get(endpoint: Endpoint, incoming: Incoming) -> Accepted:
    """Only WeCom verifies its URL with GET: to any other vendor's webhook a GET is not theirs."""
    raise Refused(Reason.MALFORMED, "only WeCom verifies its URL with GET", status=405)


async def _body(request: Request) -> bytes:
    """The raw body; Refused past MAX_BODY_BYTES (read no further than that), or when the
    client goes before it is whole (server.py closes a connection whose body is late)."""
    too_large = Refused(Reason.MALFORMED, f"the body is over {MAX_BODY_BYTES} bytes", status=413)
    if _declared_over_max(request.headers.get("content-length", "")):
        raise too_large
    chunks = bytearray()
    try:
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > MAX_BODY_BYTES:
                raise too_large
    except ClientDisconnect:
        raise Refused(Reason.INCOMPLETE, "the client went before the body was whole") from None
    return bytes(chunks)


def build_app(settings: Settings, env: Mapping[str, str]) -> Starlette:
    """The service for resolved settings; `env` resolves the connectors' secrets."""
    config = load_config(settings.config_dir, env)
    endpoints = load_endpoints(config, env, settings.config_dir)
    presence = Presence(settings.urls()[1], "webhooks", config.digest)
    return WebhookService(settings, endpoints, config).app(presence)


def create_app() -> Starlette:
    """uvicorn's factory (`syncctl webhooks serve` exports the resolved service URLs first)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return build_app(settings, os.environ)
