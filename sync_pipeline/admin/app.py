"""The admin API as a Starlette app: routes, and each one's OpenAPI description.

Each endpoint's docstring ends, after `---`, with its OpenAPI operation in YAML: starlette's
SchemaGenerator reads them from the routes into `/openapi.json` (openapi.py holds the shared
schemas), so the description is written beside the code it describes. Every endpoint runs the
service's (blocking) work in the thread pool. A refusal (errors.AdminRefused) is answered as
`{"error": code, "detail": one line}` with its status; an unknown route is a JSON 404, a
method a route does not take a JSON 405: never a 500 for anything a client sends.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import redis
import sqlalchemy as sa
from marshmallow import Schema
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from sync_pipeline.admin import bodies
from sync_pipeline.admin.auth import BearerToken, Guard, Tally
from sync_pipeline.admin.openapi import BASE_SCHEMA
from sync_pipeline.admin.service import AdminService, alert_json, resync_view
from sync_pipeline.errors import AdminRefused, ServiceUnavailable
from sync_pipeline.failures import describe
from sync_pipeline.state.effects import EffectStatus

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BODY_BYTES = 64 * 1024  # the largest body (a replay of 1000 ids) is a few KB


def _service(request: Request) -> AdminService:
    service: AdminService = request.app.state.service
    return service


async def _work(fn: Callable[..., T], *args: Any) -> T:
    return await run_in_threadpool(fn, *args)


async def _body(request: Request, schema: Schema) -> dict[str, Any]:
    raw = b""
    async for chunk in request.stream():  # read no further than the limit
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise AdminRefused(
                413, "too_large", f"expected a body of at most {MAX_BODY_BYTES} bytes"
            )
    if not raw.strip():
        return bodies.load(schema, {})
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past reason
        raise AdminRefused(400, "malformed", "expected a JSON object") from None
    return bodies.load(schema, data)


def _query(request: Request, schema: Schema) -> dict[str, Any]:
    return bodies.load(schema, dict(request.query_params))


def _flow(request: Request) -> str:
    flow: str = request.path_params["flow"]
    return flow


# -- flows -------------------------------------------------------------------------------------
async def healthz(request: Request) -> Response:
    """Answers while the API serves; needs no token and says nothing of the state.
    ---
    summary: Liveness
    security: []
    responses:
      "200":
        description: The API is serving.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Health"}
    """
    return JSONResponse({"ok": True})


async def list_flows(request: Request) -> Response:
    """Every flow and its status, as `syncctl status --json` shows it.
    ---
    summary: Flows and their status
    responses:
      "200":
        description: One entry a flow, by name.
        content:
          application/json:
            schema:
              type: array
              items: {$ref: "#/components/schemas/FlowStatus"}
      "401": {$ref: "#/components/responses/Unauthorized"}
    """
    found = await _work(_service(request).statuses)
    return JSONResponse([f.as_json() for f in found])


async def show_flow(request: Request) -> Response:
    """One flow's status: lag, last pull and event, dead letters, pause, running resync.
    ---
    summary: A flow's status
    parameters: [{$ref: "#/components/parameters/Flow"}]
    responses:
      "200":
        description: The flow's status.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/FlowStatus"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
    """
    found = await _work(_service(request).status, _flow(request))
    return JSONResponse(found.as_json())


async def trigger_run(request: Request) -> Response:
    """Record a pull of the flow and send it to a worker, as `syncctl run` does.
    ---
    summary: Trigger a run
    parameters: [{$ref: "#/components/parameters/Flow"}]
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/RunBody"}
    responses:
      "202":
        description: The run is recorded and queued; follow it at /requests/{id}.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/WorkRequest"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "409": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    body = await _body(request, bodies.RunBody())
    service = _service(request)
    made = await _work(service.trigger_run, _flow(request), body["even_if_disabled"])
    view = await _work(service.request, made.id)
    return JSONResponse(view.as_json(), status_code=202)


async def show_request(request: Request) -> Response:
    """A work request (a run, a resync's task, a replay) and the run it opened, if any.
    ---
    summary: A work request
    parameters: [{$ref: "#/components/parameters/RequestId"}]
    responses:
      "200":
        description: The request and its run.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/WorkRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
    """
    request_id = bodies.path_id(request.path_params["request_id"], "request")
    view = await _work(_service(request).request, request_id)
    return JSONResponse(view.as_json())


# -- resyncs -----------------------------------------------------------------------------------
async def ask_resync(request: Request) -> Response:
    """Record a resync of the flow (from `since`, or the beginning) and send it, as
    `syncctl resync` does; `dry_run` makes nothing and counts what it would do.
    ---
    summary: Start a resync
    parameters: [{$ref: "#/components/parameters/Flow"}]
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/ResyncBody"}
    responses:
      "202":
        description: The resync is recorded and queued; follow it at /resyncs/{id}.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/ResyncAsked"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "409": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    body = await _body(request, bodies.ResyncBody())
    service = _service(request)
    asked = await _work(
        service.ask_resync, _flow(request), body["since"], body["dry_run"], body["by"]
    )
    return JSONResponse(asked.as_json(), status_code=202)


async def show_resync(request: Request) -> Response:
    """A resync and how far it has come (`fraction` of its window, counts so far).
    ---
    summary: A resync's progress
    parameters: [{$ref: "#/components/parameters/ResyncId"}]
    responses:
      "200":
        description: The resync.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Resync"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
    """
    resync_id = bodies.path_id(request.path_params["resync_id"], "resync")
    found = await _work(_service(request).resync, resync_id)
    return JSONResponse(resync_view(found))


# -- pause and resume --------------------------------------------------------------------------
async def pause(request: Request) -> Response:
    """Pause the flow, as `syncctl flow pause` does: its pulls are turned away, runs and
    resyncs refused, its events wait and its resync stops at its checkpoint.
    ---
    summary: Pause a flow
    parameters: [{$ref: "#/components/parameters/Flow"}]
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/PauseBody"}
    responses:
      "200":
        description: The flow is paused (`changed` false if it was already).
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Pause"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    body = await _body(request, bodies.PauseBody())
    service = _service(request)
    view = await _work(service.set_paused, _flow(request), True, body["by"], body["reason"])
    return JSONResponse(view.as_json())


async def resume(request: Request) -> Response:
    """Resume the flow, as `syncctl flow resume` does; its resync goes on from its checkpoint.
    ---
    summary: Resume a flow
    parameters: [{$ref: "#/components/parameters/Flow"}]
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/ResumeBody"}
    responses:
      "200":
        description: The flow is resumed (`changed` false if it was not paused).
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Pause"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    body = await _body(request, bodies.ResumeBody())
    service = _service(request)
    view = await _work(service.set_paused, _flow(request), False, body["by"], None)
    return JSONResponse(view.as_json())


# -- cursors -----------------------------------------------------------------------------------
class Cursor(HTTPEndpoint):
    """A flow's cursor: shown, and set (one route, so its Allow names both methods)."""

    async def get(self, request: Request) -> Response:
        """The flow's cursor (where its next pull reads from) and fence.
        ---
        summary: A flow's cursor
        parameters: [{$ref: "#/components/parameters/Flow"}]
        responses:
          "200":
            description: The cursor; null when the next pull reads everything.
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Cursor"}
          "401": {$ref: "#/components/responses/Unauthorized"}
          "404": {$ref: "#/components/responses/Refused"}
        """
        view = await _work(_service(request).cursor, _flow(request))
        return JSONResponse(view.as_json())

    async def put(self, request: Request) -> Response:
        """Set the flow's cursor, as `syncctl cursor set` does: refused while a pull holds
        the flow; recorded in the run history with who.
        ---
        summary: Set a flow's cursor
        parameters: [{$ref: "#/components/parameters/Flow"}]
        requestBody:
          required: true
          content:
            application/json:
              schema: {$ref: "#/components/schemas/CursorBody"}
        responses:
          "200":
            description: The cursor as set, and the one it replaced.
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Cursor"}
          "400": {$ref: "#/components/responses/Refused"}
          "401": {$ref: "#/components/responses/Unauthorized"}
          "404": {$ref: "#/components/responses/Refused"}
          "409": {$ref: "#/components/responses/Refused"}
          "413": {$ref: "#/components/responses/Refused"}
          "422": {$ref: "#/components/responses/Refused"}
        """
        body = await _body(request, bodies.CursorBody())
        service = _service(request)
        view = await _work(service.set_cursor, _flow(request), body["value"], body["by"])
        return JSONResponse(view.as_json())


# -- dead letters ------------------------------------------------------------------------------
async def list_dead_letters(request: Request) -> Response:
    """Open dead letters, oldest first (with `all`, closed and discarded ones too).
    ---
    summary: Dead letters
    parameters:
      - {name: flow, in: query, required: false, schema: {type: string, minLength: 1}}
      - {name: all, in: query, required: false, schema: {type: boolean}}
      - {name: limit, in: query, required: false,
         schema: {type: integer, minimum: 1, maximum: 10000}}
    responses:
      "200":
        description: The letters.
        content:
          application/json:
            schema:
              type: array
              items: {$ref: "#/components/schemas/DeadLetter"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    query = _query(request, bodies.LettersQuery())
    service = _service(request)
    found = await _work(service.dead_letters, query["flow"], query["all"], query["limit"])
    return JSONResponse([d.as_json() for d in found])


async def replay_dead_letters(request: Request) -> Response:
    """Send open dead letters (these ids, a flow's, or all) through their flow again, as
    `syncctl dlq replay` does; a worker does it. Letters that fail again stay open.
    ---
    summary: Replay dead letters
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/ReplayBody"}
    responses:
      "202":
        description: The replay is recorded and queued; follow it at /requests/{id}.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/WorkRequest"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    body = await _body(request, bodies.ReplayBody())
    service = _service(request)
    made = await _work(service.replay, body["flow"], body["ids"])
    view = await _work(service.request, made.id)
    return JSONResponse(view.as_json(), status_code=202)


# -- effects -----------------------------------------------------------------------------------
async def list_effects(request: Request) -> Response:
    """Effects with a status, newest first; by default those parked as unknown, for an
    operator to check at the vendor and settle.
    ---
    summary: Effects
    parameters:
      - {name: status, in: query, required: false,
         schema: {type: string, enum: [unknown, pending, failed, done]}}
      - {name: limit, in: query, required: false,
         schema: {type: integer, minimum: 1, maximum: 10000}}
    responses:
      "200":
        description: The effects.
        content:
          application/json:
            schema:
              type: array
              items: {$ref: "#/components/schemas/Effect"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    query = _query(request, bodies.EffectsQuery())
    service = _service(request)
    found = await _work(service.effects, EffectStatus(query["status"]), query["limit"])
    return JSONResponse([e.as_json() for e in found])


async def settle_effect(request: Request) -> Response:
    """Close a parked (unknown) effect after checking the vendor, as `syncctl effects
    settle` does: `done` records it made; `retry` makes it sendable again and replays its
    dead letters, so it is made once.
    ---
    summary: Settle an unknown effect
    parameters: [{$ref: "#/components/parameters/EffectId"}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/SettleBody"}
    responses:
      "200":
        description: Settled; with retry, the replay's request if it had dead letters.
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Settled"}
      "400": {$ref: "#/components/responses/Refused"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/Refused"}
      "409": {$ref: "#/components/responses/Refused"}
      "413": {$ref: "#/components/responses/Refused"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    effect_id = bodies.path_id(request.path_params["effect_id"], "effect")
    body = await _body(request, bodies.SettleBody())
    service = _service(request)
    settled = await _work(service.settle, effect_id, body["verdict"], body["by"])
    return JSONResponse(settled.as_json())


# -- alerts and the API's own counts -----------------------------------------------------------
async def list_alerts(request: Request) -> Response:
    """Firing and resolved alerts (with `all`, pending and ok ones too).
    ---
    summary: Alerts
    parameters:
      - {name: all, in: query, required: false, schema: {type: boolean}}
    responses:
      "200":
        description: The alerts.
        content:
          application/json:
            schema:
              type: array
              items: {$ref: "#/components/schemas/Alert"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "422": {$ref: "#/components/responses/Refused"}
    """
    query = _query(request, bodies.AlertsQuery())
    found = await _work(_service(request).alerts, query["all"])
    return JSONResponse([alert_json(a) for a in found])


async def stats(request: Request) -> Response:
    """The answers this process gave, by route and status (refusals included).
    ---
    summary: Answers counted
    responses:
      "200":
        description: One entry a route and status.
        content:
          application/json:
            schema:
              type: array
              items: {$ref: "#/components/schemas/Answered"}
      "401": {$ref: "#/components/responses/Unauthorized"}
    """
    tally: Tally = request.app.state.tally
    return JSONResponse(
        [{"route": a.route, "status": a.status, "count": a.count} for a in tally.answered()]
    )


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/stats", stats, methods=["GET"]),
    Route("/flows", list_flows, methods=["GET"]),
    Route("/flows/{flow}", show_flow, methods=["GET"]),
    Route("/flows/{flow}/runs", trigger_run, methods=["POST"]),
    Route("/flows/{flow}/resyncs", ask_resync, methods=["POST"]),
    Route("/flows/{flow}/pause", pause, methods=["POST"]),
    Route("/flows/{flow}/resume", resume, methods=["POST"]),
    Route("/flows/{flow}/cursor", Cursor),
    Route("/requests/{request_id}", show_request, methods=["GET"]),
    Route("/resyncs/{resync_id}", show_resync, methods=["GET"]),
    Route("/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/dead-letters/replay", replay_dead_letters, methods=["POST"]),
    Route("/effects", list_effects, methods=["GET"]),
    Route("/effects/{effect_id}/settle", settle_effect, methods=["POST"]),
    Route("/alerts", list_alerts, methods=["GET"]),
]

SCHEMAS = SchemaGenerator(BASE_SCHEMA)


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI 3 description, read from the routes' docstrings; every operation but
    /healthz may answer 503 while PostgreSQL or Redis is away."""
    described = SCHEMAS.get_schema(routes=list(ROUTES))
    for path, operations in described["paths"].items():
        for operation in operations.values():
            if path != "/healthz":
                operation["responses"]["503"] = {"$ref": "#/components/responses/Unavailable"}
    return described


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdminRefused)  # noqa: S101 - registered for it only
    return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)


# PostgreSQL or Redis gone while serving: 503, the cause in the log (never in the answer).
UNAVAILABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    ServiceUnavailable,
)


async def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("admin: %s %s: %s", request.method, request.url.path, describe(exc))
    return JSONResponse(
        {"error": "unavailable", "detail": "PostgreSQL or Redis did not answer; see the log"},
        status_code=503,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as JSON like every other answer."""
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for it only
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "refused")
    return JSONResponse(
        {"error": code, "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def create_app(service: AdminService, token: str) -> Starlette:
    """The app over a service; `token` is SYNC_ADMIN_TOKEN (required: none refuses here)."""
    tally = Tally()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = Starlette(
        routes=[*ROUTES, Route("/openapi.json", openapi, include_in_schema=False)],
        middleware=[Middleware(Guard, token=BearerToken(token), tally=tally)],
        exception_handlers={
            AdminRefused: refused,
            HTTPException: http_error,
            **dict.fromkeys(UNAVAILABLE, unavailable),
        },
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.tally = tally
    app.state.openapi = openapi_schema()
    return app
