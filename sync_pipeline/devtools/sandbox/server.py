"""`syncctl sandbox up`: every emulator and the control API in one process, one port each.

Each emulator's bare routes are wrapped by `FaultInjector`, which counts calls and applies the
generic faults (latency, 5xx, the vendor's own throttle answer, malformed or truncated JSON),
so emulators never implement those themselves. Token expiry is one-shot (it expires every
token issued so far); `down` closes the platform's listening socket until the fault ends.
`applied_no_answer` lets a write through and then loses its answer: the connection is closed
with no answer, or the answer comes after the client stopped waiting. A write is a request
during which the emulator recorded an entry in its ledger, whatever its method (vendors read
with POST too); a call that changed nothing, a resend the vendor deduped among them, is
answered as usual, as a vendor answers a retry.

The control app listens on 127.0.0.1 only, answers only requests whose Host is loopback (so a
web page cannot reach it through DNS rebinding), and wants `Authorization: Bearer <admin
token>` on every route but `GET /_sandbox/health`: `info` hands out every emulated credential
and the ledger every message, so reading is as much an admin act as writing, and any local
process (another user's, a browser's) can reach a loopback port. The token is generated once
per store and kept in it (readable by its owner only, core.py): `syncctl sandbox` commands and
`SandboxClient` read it from the data dir, so knowing the token means being able to read the
store, which holds every credential anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import uvicorn
from anyio import to_thread
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sync_pipeline.devtools.sandbox.core import (
    FAULT_KINDS,
    LATE_ANSWER_MS,
    Fault,
    SandboxStore,
    watching_writes,
)
from sync_pipeline.devtools.sandbox.emulator import Emulator, PressError
from sync_pipeline.devtools.sandbox.oa import OAEmulator
from sync_pipeline.devtools.sandbox.registry import (
    DEFAULT_PORT_BASE,
    Registry,
    load_registry,
    port_for,
)
from sync_pipeline.devtools.sandbox.seed import seed_all

log = logging.getLogger(__name__)

FAULT_CACHE_S = 0.3  # how stale a fault may be on the request path
HANG_UP_WAIT_S = 5.0  # how long a hung-up request waits for the server to see the close
SUPERVISE_EVERY_S = 0.2  # how soon `down` takes effect and ends
CONTROL_KEEP_ALIVE_S = 120  # idle keep-alive of the control API (uvicorn's default is 5 s)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def default_data_dir() -> Path:
    return Path(os.environ.get("SYNC_DATA_DIR", ".sync-data"))


def store_path(data_dir: Path) -> Path:
    return data_dir / "sandbox" / "sandbox.db"


def build_emulators(
    store: SandboxStore, registry: Registry, port_base: int, host: str = "127.0.0.1"
) -> dict[str, Emulator]:
    url_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - not a bind
    return {
        platform: cls(store, f"http://{url_host}:{port_for(platform, port_base)}")
        for platform, cls in registry.classes.items()
    }


class FaultCache:
    """Active faults per platform, re-read from the store at most every FAULT_CACHE_S."""

    def __init__(self, store: SandboxStore) -> None:
        self.store = store
        self._cached: dict[str, tuple[float, dict[str, Fault]]] = {}

    def get(self, platform: str) -> dict[str, Fault]:
        now = time.monotonic()
        hit = self._cached.get(platform)
        if hit is None or now - hit[0] > FAULT_CACHE_S:
            faults = {f.kind: f for f in self.store.faults(platform)}
            hit = (now, faults)
            self._cached[platform] = hit
        return hit[1]

    def invalidate(self) -> None:
        self._cached.clear()


HangUp = Callable[[Scope], bool]  # close the connection a request came on, with no answer


class FaultInjector:
    """ASGI middleware in front of one emulator: counts the call, then applies its faults.

    `hang_up` closes a request's connection without answering (the SandboxServer's; without
    one, a lost answer is cut short after its headers instead)."""

    def __init__(
        self, app: ASGIApp, emulator: Emulator, faults: FaultCache, hang_up: HangUp | None = None
    ) -> None:
        self.app, self.emulator, self.faults, self.hang_up = app, emulator, faults, hang_up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        platform = self.emulator.platform
        endpoint = f"{scope['method']} {scope['path']}"
        await to_thread.run_sync(self.emulator.store.count_call, platform, endpoint)
        faults = self.faults.get(platform)

        def hit(kind: str) -> bool:
            fault = faults.get(kind)
            return fault is not None and random.random() < fault.rate

        if hit("latency"):
            await asyncio.sleep(float(faults["latency"].params.get("ms", 1000)) / 1000)
        if hit("error5xx"):
            status = random.choice((500, 503))
            text = "Internal Server Error" if status == 500 else "Service Unavailable"
            await PlainTextResponse(text, status_code=status)(scope, receive, send)
            return
        if hit("ratelimit"):
            await self.emulator.throttle_response()(scope, receive, send)
            return
        mangle = "malformed" if hit("malformed") else "truncated" if hit("truncated") else None
        answer = send if mangle is None else _Mangler(send, mangle)
        lost = faults.get("applied_no_answer")
        if lost is None:
            await self.app(scope, receive, answer)
            return
        await self._perhaps_lose_answer(lost, scope, receive, answer)

    async def _perhaps_lose_answer(
        self, fault: Fault, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve the request holding its answer back; if it wrote to the ledger and the fault
        strikes, lose the answer (drop the connection, or answer after `delay_ms`)."""
        held = _Held()
        with watching_writes() as written:
            await self.app(scope, receive, held)
        strikes = (
            bool(written)
            and random.random() < fault.rate
            and await to_thread.run_sync(
                self.emulator.store.spend_fault, fault.platform, fault.kind
            )
        )
        if strikes:
            self.faults.invalidate()  # a counted fault may have ended
            if fault.params.get("how", "drop") == "late":
                await asyncio.sleep(float(fault.params.get("delay_ms", LATE_ANSWER_MS)) / 1000)
            elif self.hang_up is not None and self.hang_up(scope):
                await _until_disconnected(receive)
                return
            else:
                await held.cut_short(send)
                return
        await held.replay(send)


async def _until_disconnected(receive: Receive) -> None:
    """Wait until the server has seen the connection close, so that it neither answers the
    request nor reports it unanswered."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANG_UP_WAIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass


class _AnswerLost(Exception):
    """Raised after a response's headers: the server then closes the connection."""


class _Held:
    """An ASGI `send` that keeps the messages of one response until told what to do."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    async def replay(self, send: Send) -> None:
        for message in self.messages:
            await send(message)

    async def cut_short(self, send: Send) -> None:
        """The headers only, then the connection closes mid-answer."""
        for message in self.messages:
            if message["type"] == "http.response.start":
                await send(message)
                break
        raise _AnswerLost("applied_no_answer: the answer is cut after its headers")


class _Mangler:
    """Buffers one response and spoils its JSON body: not JSON at all, or cut in half."""

    def __init__(self, send: Send, how: str) -> None:
        self.send, self.how = send, how
        self.start: Message | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        headers = [
            (k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"
        ]
        content_type = dict(headers).get(b"content-type", b"")
        body = self.body
        if b"json" in content_type:
            if self.how == "malformed":
                body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            else:
                body = body[: len(body) // 2]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


class _QuietServer(uvicorn.Server):
    """Signals are the SandboxServer's business: it stops every port at once."""

    def capture_signals(self) -> Any:
        return contextlib.nullcontext()


class PortInUse(Exception):
    def __init__(self, platform: str, port: int, reason: str) -> None:
        super().__init__(platform, port, reason)
        self.platform, self.port, self.reason = platform, port, reason

    def __str__(self) -> str:
        return f"cannot listen on port {self.port} for {self.platform}: {self.reason}"


class SandboxServer:
    """All emulators plus the control app, each on port_base + its offset, in one process."""

    def __init__(
        self,
        path: Path,
        port_base: int = DEFAULT_PORT_BASE,
        host: str = "127.0.0.1",
    ) -> None:
        self.store = SandboxStore(path)
        self.port_base, self.host = port_base, host
        self.registry = load_registry()
        self.emulators = build_emulators(self.store, self.registry, port_base, host)
        self.admin_token = self.store.admin_token()
        self.faults = FaultCache(self.store)
        self.control_url = f"http://127.0.0.1:{port_for('control', port_base)}"
        self._servers: dict[str, tuple[uvicorn.Server, asyncio.Task[None]]] = {}
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what `info` shows -------------------------------------------------------------------
    def info(self) -> dict[str, dict[str, Any]]:
        return describe(self.emulators, self.control_url, self.admin_token)

    # -- lifecycle ---------------------------------------------------------------------------
    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until stop() or SIGINT/SIGTERM; every port is bound before `on_ready`."""
        loop = self._loop = asyncio.get_running_loop()
        signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread():
            signals = ()  # served from a thread (tests, benchmarks): stop() is the way out
        for sig in signals:
            loop.add_signal_handler(sig, self._stop.set)
        self.store.set_setting("sandbox", "port_base", str(self.port_base))
        # Every port is bound before any of them answers: a port someone else took between
        # the caller's choice of base and now stops the sandbox before its control port says
        # it is up, rather than after (the caller would see a healthy sandbox, then none).
        up = [p for p in self.emulators if "down" not in self.faults.get(p)]
        bound: dict[str, socket.socket] = {}
        try:
            for platform in ("control", *up):
                bound[platform] = self._bind(
                    platform, "127.0.0.1" if platform == "control" else self.host
                )
        except PortInUse:
            for sock in bound.values():
                sock.close()
            raise
        try:
            await self._start("control", self._control_app(), bound.pop("control"))
            for platform in up:
                await self._start(
                    platform, self._emulator_app(self.emulators[platform]), bound.pop(platform)
                )
            if on_ready is not None:
                on_ready()
            while not self._stop.is_set():
                await self._supervise()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), SUPERVISE_EVERY_S)
        finally:
            for platform in list(self._servers):
                await self._halt(platform)
            for sig in signals:
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Safe from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _bind(self, platform: str, host: str) -> socket.socket:
        port = port_for(platform, self.port_base)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when their
        # proto says TCP, and without it every response waits out a delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise PortInUse(platform, port, exc.strerror or str(exc)) from None
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    async def _start(self, platform: str, app: ASGIApp, sock: socket.socket) -> None:
        port = port_for(platform, self.port_base)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
            # The control API's clients (tests, the demo) sit idle between calls for longer
            # than uvicorn's 5 s: a connection closed as a client reuses it is a reset request.
            timeout_keep_alive=CONTROL_KEEP_ALIVE_S if platform == "control" else 5,
        )
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"sandbox-{platform}")
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise PortInUse(platform, port, "the server stopped while starting")
            await asyncio.sleep(0.01)
        self._servers[platform] = (server, task)

    async def _halt(self, platform: str) -> None:
        server, task = self._servers.pop(platform)
        server.should_exit = True
        await task

    async def _supervise(self) -> None:
        """Take platforms down and bring them back as `down` faults start and end; apply
        `token_expire` faults written straight into the store (the API applies its own)."""
        for platform, emulator in self.emulators.items():
            faults = self.faults.get(platform)
            if "token_expire" in faults:
                await run_in_threadpool(self._expire_tokens, platform)
            down = "down" in faults
            if down and platform in self._servers:
                log.warning("sandbox: %s is down", platform)
                await self._halt(platform)
            elif not down and platform not in self._servers:
                try:
                    await self._start(
                        platform, self._emulator_app(emulator), self._bind(platform, self.host)
                    )
                except PortInUse as exc:  # someone took the port meanwhile: try again soon
                    log.warning("sandbox: %s", exc)
                else:
                    log.warning("sandbox: %s is back up", platform)

    def _expire_tokens(self, platform: str) -> int:
        expired = self.store.expire_tokens(platform)
        self.store.clear_faults(platform, "token_expire")
        self.faults.invalidate()
        return expired

    def _emulator_app(self, emulator: Emulator) -> ASGIApp:
        app = Starlette(routes=emulator.routes())
        return FaultInjector(
            app, emulator, self.faults, functools.partial(self._hang_up, emulator.platform)
        )

    def _hang_up(self, platform: str, scope: Scope) -> bool:
        """Close the connection that `scope` came on, answering nothing: a vendor whose answer
        was lost on the way. Whether that connection was found among the server's (uvicorn
        keeps its open connections, each with the scope of its current request, in
        `server_state`; ASGI itself has no way to close a connection unanswered)."""
        served = self._servers.get(platform)
        if served is None:
            return False
        for connection in list(served[0].server_state.connections):
            if getattr(connection, "scope", None) is scope:
                transport: asyncio.BaseTransport = connection.transport
                transport.close()
                return True
        return False

    # -- control API -------------------------------------------------------------------------
    def _control_app(self) -> ASGIApp:
        routes = [
            Route("/_sandbox/health", _health, methods=["GET"]),
            Route("/_sandbox/info", self._guarded(self._info), methods=["GET"]),
            Route("/_sandbox/ledger", self._guarded(self._ledger), methods=["GET"]),
            Route("/_sandbox/calls", self._guarded(self._calls), methods=["GET"]),
            Route("/_sandbox/faults", self._guarded(self._faults), methods=["GET"]),
            Route("/_sandbox/fault", self._guarded(self._set_fault), methods=["POST"]),
            Route("/_sandbox/fault", self._guarded(self._clear_fault), methods=["DELETE"]),
            Route("/_sandbox/seed", self._guarded(self._seed), methods=["POST"]),
            Route("/_sandbox/oa/approvals", self._guarded(self._oa_create), methods=["POST"]),
            Route(
                "/_sandbox/oa/approvals/{request_id}/transition",
                self._guarded(self._oa_transition),
                methods=["POST"],
            ),
            Route("/_sandbox/{platform}/press", self._guarded(self._press), methods=["POST"]),
            Route("/_sandbox/{platform}/settings", self._guarded(self._settings), methods=["POST"]),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)],
        )

    def _guarded(
        self, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        expected = hashlib.sha256(self.admin_token.encode()).digest()

        async def guarded(request: Request) -> Response:
            if not _bearer_matches(request.headers.get("authorization", ""), expected):
                return JSONResponse(
                    {"error": "the control API wants 'Authorization: Bearer <admin token>'"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="sandbox control"'},
                )
            try:
                return await endpoint(request)
            except _BadRequest as exc:
                return _error(exc.status, exc.message)

        return guarded

    async def _info(self, request: Request) -> Response:
        return JSONResponse(self.info())

    async def _ledger(self, request: Request) -> Response:
        platform = request.query_params.get("platform") or None
        since = _int(request.query_params.get("since_seq", "0"), "since_seq")
        if isinstance(since, Response):
            return since
        entries = await run_in_threadpool(self.store.ledger, platform, since)
        return JSONResponse({"entries": [e.as_json() for e in entries]})

    async def _calls(self, request: Request) -> Response:
        platform = request.query_params.get("platform") or None
        return JSONResponse({"calls": await run_in_threadpool(self.store.calls, platform)})

    async def _faults(self, request: Request) -> Response:
        faults = await run_in_threadpool(self.store.faults, None)
        return JSONResponse({"faults": [_fault_json(f) for f in faults]})

    async def _set_fault(self, request: Request) -> Response:
        body = await _json_object(request)
        platform = self._platform(str(body.get("platform", "")))
        kind = str(body.get("kind", ""))
        if kind not in FAULT_KINDS:
            raise _BadRequest(400, f"kind must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
        if kind == "token_expire":
            expired = await run_in_threadpool(self._expire_tokens, platform)
            return JSONResponse({"platform": platform, "kind": kind, "expired_tokens": expired})
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise _BadRequest(400, "params must be a JSON object")
        try:
            rate = float(body.get("rate", 1.0))
            for_s = None if body.get("for_s") is None else float(body["for_s"])
            fault = await run_in_threadpool(
                self.store.set_fault, platform, kind, rate, for_s, params
            )
        except (TypeError, ValueError) as exc:
            raise _BadRequest(400, str(exc)) from None
        self.faults.invalidate()
        return JSONResponse({"fault": _fault_json(fault)})

    async def _clear_fault(self, request: Request) -> Response:
        platform = request.query_params.get("platform") or None
        if platform is not None:
            self._platform(platform)
        kind = request.query_params.get("kind") or None
        cleared = await run_in_threadpool(self.store.clear_faults, platform, kind)
        self.faults.invalidate()
        return JSONResponse({"cleared": cleared})

    async def _press(self, request: Request) -> Response:
        emulator = self.emulators[self._platform(request.path_params["platform"])]
        action = await _json_object(request)
        try:
            # In a worker thread: a press may send a callback whose receiver calls us back.
            result = await run_in_threadpool(emulator.press, action)
        except PressError as exc:
            raise _BadRequest(409, str(exc)) from None
        return JSONResponse(result)

    async def _settings(self, request: Request) -> Response:
        platform = self._platform(request.path_params["platform"])
        body = await _json_object(request)
        for key, value in body.items():
            text = value if isinstance(value, str) else json.dumps(value)
            await run_in_threadpool(self.store.set_setting, platform, str(key), text)
        return JSONResponse({"platform": platform, "settings": sorted(body)})

    async def _seed(self, request: Request) -> Response:
        body = await _json_object(request)
        try:
            options = {
                key: int(body[key])
                for key in ("seed", "approvals", "checkin_days", "progress_per_project")
                if key in body
            }
        except (TypeError, ValueError):
            raise _BadRequest(400, "seed options must be integers") from None
        started = time.monotonic()
        counts = await run_in_threadpool(
            lambda: seed_all(self.store, emulators=self.emulators, **options)
        )
        return JSONResponse({"counts": counts, "elapsed_s": round(time.monotonic() - started, 3)})

    def _oa(self) -> OAEmulator:
        oa = self.emulators.get("oa")
        if not isinstance(oa, OAEmulator):
            raise _BadRequest(404, "the OA emulator is not in this build")
        return oa

    async def _oa_create(self, request: Request) -> Response:
        """A new pending approval, as if `applicant` filed it in the OA's own UI."""
        body = await _json_object(request)
        try:
            result = await run_in_threadpool(self._oa().press, {**body, "action": "create"})
        except PressError as exc:
            raise _BadRequest(409, str(exc)) from None
        return JSONResponse(result)

    async def _oa_transition(self, request: Request) -> Response:
        """approve | reject | revoke | comment by `by`; bumps lastOperateTime, fires the webhook."""
        body = await _json_object(request)
        action = {**body, "requestId": request.path_params["request_id"]}
        if action.get("action") not in ("approve", "reject", "revoke", "comment"):
            raise _BadRequest(400, "action must be approve, reject, revoke or comment")
        try:
            result = await run_in_threadpool(self._oa().press, action)
        except PressError as exc:
            raise _BadRequest(409, str(exc)) from None
        return JSONResponse(result)

    def _platform(self, name: str) -> str:
        if name not in self.emulators:
            known = ", ".join(self.emulators)
            raise _BadRequest(404, f"no platform {name!r} in this sandbox; known: {known}")
        return name


def describe(
    emulators: Mapping[str, Emulator], control_url: str, token: str
) -> dict[str, dict[str, Any]]:
    """{platform: {title, base_url, credentials}}, control first: what `sandbox info` shows."""
    info: dict[str, dict[str, Any]] = {
        "control": {
            "title": "Sandbox control API",
            "base_url": control_url,
            "credentials": {"admin_token": token},
        }
    }
    for platform, emulator in emulators.items():
        info[platform] = {
            "title": emulator.title,
            "base_url": emulator.base_url,
            "credentials": emulator.credentials(),
        }
    return info


def env_vars(info: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """SANDBOX_<PLATFORM>_<KEY> for every base URL and credential: the names the shipped
    config/connectors.yaml reads (appKey -> SANDBOX_DINGTALK_APP_KEY)."""
    found: dict[str, str] = {}
    for platform, entry in info.items():
        prefix = f"SANDBOX_{platform.upper()}_"
        found[prefix + "BASE_URL"] = str(entry["base_url"])
        for key, value in entry.get("credentials", {}).items():
            name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).replace(".", "_").upper()
            found[prefix + name] = str(value)
    return found


def _bearer_matches(authorization: str, expected_digest: bytes) -> bool:
    """Compared as SHA-256 digests, so the time taken tells nothing of the token, its length
    included (compare_digest returns early on a length mismatch)."""
    scheme, _, presented = authorization.partition(" ")
    digest = hashlib.sha256(presented.strip().encode()).digest()
    return scheme.lower() == "bearer" and hmac.compare_digest(digest, expected_digest)


async def _health(request: Request) -> Response:
    """Open to anyone on loopback, and so it says nothing but that the server answers."""
    return JSONResponse({"status": "ok"})


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise _BadRequest(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(400, "the body must be a JSON object")
    return body


def _int(text: str, name: str) -> int | Response:
    try:
        return int(text or "0")
    except ValueError:
        return _error(400, f"{name} must be an integer")


def _fault_json(fault: Fault) -> dict[str, Any]:
    return {
        "platform": fault.platform,
        "kind": fault.kind,
        "rate": fault.rate,
        "until_ms": fault.until_ms,
        "params": fault.params,
    }
