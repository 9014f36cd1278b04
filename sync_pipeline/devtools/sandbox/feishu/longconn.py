"""Feishu's long connection (platform-apis.md §9), as lark-oapi's `ws.Client` speaks it:

1. `POST /callback/ws/endpoint` with `{AppID, AppSecret}` answers `{code: 0, data: {URL,
   ClientConfig{ReconnectCount, ReconnectInterval, ReconnectNonce, PingInterval}}}`; the URL
   carries `device_id` and `service_id` and is good for one connection;
2. frames are binary protobuf `pbbp2.Frame`s (pbbp2.py). The client pings (CONTROL, header
   `type: ping`) every PingInterval; the server answers each with a pong (CONTROL, `type:
   pong`). Events come as DATA frames (`type: event`, `message_id`, `sum: 1`, `seq: 0`,
   `trace_id`), the payload the plaintext event envelope (v2, or v1 for approval events);
3. the client answers a DATA frame with the same frame, its payload `{"code": 200, "headers",
   "data"}` (`data`: base64 of the handler's result, a card action's toast or card). An event
   not answered within `ws_answer_s` (3 s, Feishu's handling limit) is pushed again every
   `ws_repush_s`, to any connection, until answered.

With the setting `events_mode` `long_connection`, callbacks.py pushes its events here instead of
POSTing them to `callback_url`, and waits up to 3 s for the answer (a card action's toast and
card come back that way). Faults, as presses: `ws_drop` closes every socket; `ws_silence
{for_s}` sends nothing (no pongs, no events) for that long.

Unconfirmed: the re-push schedule (the docs give 5 s / 5 min / 1 h / 6 h for HTTP; 3 s here,
`ws_repush_s`), and the error codes of the endpoint request (the SDK's constants are used).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.feishu import pbbp2
from sync_pipeline.devtools.sandbox.feishu.base import PLATFORM, FeishuBase

DEFAULTS = {"ws_ping_s": 120.0, "ws_repush_s": 3.0, "ws_answer_s": 3.0}
URL_TTL_S = 300.0
SERVICE_ID = 1


@dataclass
class _Push:
    frame: pbbp2.Frame
    sent_at: float = 0.0
    answer: bytes | None = None
    answered: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Gateway:
    lock: threading.Lock = field(default_factory=threading.Lock)
    devices: dict[str, float] = field(default_factory=dict)
    sockets: dict[str, WebSocket] = field(default_factory=dict)
    pending: dict[str, _Push] = field(default_factory=dict)
    silent_until: float = 0.0
    loop: asyncio.AbstractEventLoop | None = None
    repusher: asyncio.Task[None] | None = None
    answers: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))


class LongConnection(FeishuBase):
    @property
    def _gateway(self) -> _Gateway:
        gateway: _Gateway | None = getattr(self, "_ws_gateway", None)
        if gateway is None:
            gateway = _Gateway()
            self._ws_gateway = gateway
        return gateway

    def long_connected(self) -> bool:
        return self.store.setting(PLATFORM, "events_mode") == "long_connection"

    def _ws_setting(self, name: str) -> float:
        value = self.store.setting(PLATFORM, name)
        return float(value) if value else DEFAULTS[name]

    # -- 1. the endpoint -----------------------------------------------------------------------
    async def _ws_endpoint(self, request: Request) -> Response:
        self._gateway.loop = asyncio.get_running_loop()
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"code": 1000040343, "msg": "body is not a JSON object"})
        creds = self.credentials()
        if body.get("AppID") != creds["app_id"] or body.get("AppSecret") != creds["app_secret"]:
            return JSONResponse({"code": 514, "msg": "app_id or app_secret is invalid"})
        device = uuid.uuid4().hex
        with self._gateway.lock:
            self._gateway.devices[device] = time.monotonic() + URL_TTL_S
        base = str(request.base_url).replace("http", "ws", 1)
        ping_s = self._ws_setting("ws_ping_s")
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": 120,
            "ReconnectNonce": 30,
            "PingInterval": ping_s if ping_s < 1 else int(ping_s),
        }
        url = f"{base}ws?device_id={device}&service_id={SERVICE_ID}"
        return JSONResponse({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}})

    # -- 2. the socket -------------------------------------------------------------------------
    async def _ws(self, websocket: WebSocket) -> None:
        gateway = self._gateway
        gateway.loop = asyncio.get_running_loop()
        device = websocket.query_params.get("device_id", "")
        with gateway.lock:
            until = gateway.devices.pop(device, None)
        if until is None or until < time.monotonic():
            await websocket.close(code=1008)
            return
        await websocket.accept()
        gateway.sockets[device] = websocket
        if gateway.repusher is None or gateway.repusher.done():
            gateway.repusher = asyncio.create_task(self._repush())
        try:
            for message_id in list(gateway.pending):
                await self._send(message_id, websocket)
            while True:
                data = await websocket.receive_bytes()
                await self._on_frame(websocket, pbbp2.decode(data))
        except (WebSocketDisconnect, ValueError, RuntimeError, KeyError):
            pass
        finally:
            gateway.sockets.pop(device, None)

    def _silent(self) -> bool:
        return time.monotonic() < self._gateway.silent_until

    async def _on_frame(self, websocket: WebSocket, frame: pbbp2.Frame) -> None:
        if frame.method == pbbp2.CONTROL:
            if frame.header("type") == "ping" and not self._silent():
                pong = pbbp2.Frame(service=frame.service, headers=(("type", "pong"),))
                with contextlib.suppress(Exception):
                    await websocket.send_bytes(pbbp2.encode(pong))
            return
        push = self._gateway.pending.get(frame.header("message_id"))
        if push is None:
            return
        try:
            answer = json.loads(frame.payload or b"{}")
        except ValueError:
            answer = {}
        code = answer.get("code") if isinstance(answer, dict) else None
        self._gateway.answers.append(
            {"event": frame.header("type"), "status": code, "acknowledged": code == 200}
        )
        if code == 200:
            data = answer.get("data")
            push.answer = base64.b64decode(data) if isinstance(data, str) and data else b""
            del self._gateway.pending[frame.header("message_id")]
            push.answered.set()
        else:
            push.sent_at = time.monotonic()

    async def _send(self, message_id: str, websocket: WebSocket | None = None) -> None:
        gateway = self._gateway
        push = gateway.pending.get(message_id)
        if push is None or self._silent():
            return
        target = websocket or next(iter(gateway.sockets.values()), None)
        if target is None:
            return
        push.sent_at = time.monotonic()
        with contextlib.suppress(Exception):
            await target.send_bytes(pbbp2.encode(push.frame))

    async def _repush(self) -> None:
        while True:
            every = self._ws_setting("ws_repush_s")
            await asyncio.sleep(min(every, 0.5))
            due = time.monotonic() - every
            for message_id, push in list(self._gateway.pending.items()):
                if push.sent_at < due:
                    await self._send(message_id)

    # -- pushes from the simulated users (a worker thread) -------------------------------------
    def ws_push(self, envelope: Mapping[str, Any]) -> tuple[list[int], list[tuple[int, bytes]]]:
        """Push one event; wait `ws_answer_s` for its answer: ([200], [(200, data)]) when it
        came, ([0], []) when not (it stays pending and is pushed again)."""
        message_id = uuid.uuid4().hex
        headers = (
            ("type", "event"),
            ("message_id", message_id),
            ("sum", "1"),
            ("seq", "0"),
            ("trace_id", secrets.token_hex(8)),
        )
        frame = pbbp2.Frame(
            seq_id=0,
            log_id=int(time.time() * 1000),
            service=SERVICE_ID,
            method=pbbp2.DATA,
            headers=headers,
            payload=json.dumps(dict(envelope), ensure_ascii=False).encode(),
        )
        push = _Push(frame)
        self._call_soon(self._enqueue(message_id, push))
        if push.answered.wait(self._ws_setting("ws_answer_s")):
            return [200], [(200, push.answer or b"")]
        return [0], []

    async def _enqueue(self, message_id: str, push: _Push) -> None:
        self._gateway.pending[message_id] = push
        await self._send(message_id)

    def _call_soon(self, coroutine: Any) -> None:
        loop = self._gateway.loop
        if loop is None:
            coroutine.close()
            raise PressError("no long-connection client has asked for an endpoint yet")
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    # -- faults --------------------------------------------------------------------------------
    def ws_fault(self, action: Mapping[str, Any]) -> dict[str, Any]:
        if action.get("kind") == "ws_silence":
            for_s = float(action.get("for_s", 30))
            self._gateway.silent_until = time.monotonic() + for_s
            return {"silent_s": for_s}
        self._call_soon(self._drop())
        return {"sockets": len(self._gateway.sockets)}

    async def _drop(self) -> None:
        for websocket in list(self._gateway.sockets.values()):
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)
