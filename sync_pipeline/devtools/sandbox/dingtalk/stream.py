"""DingTalk's Stream mode (platform-apis.md §2.2 and §9), as the `dingtalk-stream` SDK and the
protocol page of open-dingtalk/developerpedia describe it:

1. `POST /v1.0/gateway/connections/open` with `{clientId, clientSecret, subscriptions[]{type,
   topic}}` answers `{endpoint, ticket}`; the ticket opens one connection, within 90 s;
2. the client connects to `endpoint?ticket=...` (a websocket) and receives JSON frames
   `{specVersion, type: SYSTEM|EVENT|CALLBACK, headers{messageId, topic, time, ...}, data}`
   where `data` is a JSON text; EVENT headers also carry eventId, eventType, eventBornTime,
   eventCorpId and eventUnifiedAppId;
3. it acks each by messageId: `{code, headers{messageId, contentType}, message, data}`, an
   EVENT's `data` holding `{"status": "SUCCESS" | "LATER"}` (the official SDK's default ack
   echoes the event there instead, so a 200 without LATER is taken as done); an event acked
   with LATER or 500, or not acked at all, is pushed again every `stream_repush_s`, to any
   connection, until it is acked (400 and 404 refuse it for good);
4. SYSTEM `ping` frames every `stream_ping_s` carry `{"opaque": ...}`, which the client echoes;
   SYSTEM `disconnect` announces that the server closes the socket `stream_disconnect_s` later.

When the app's setting `events_mode` is `stream`, the simulated user's events (callbacks.py)
are pushed here instead of POSTed to `callback_url`: approval events as EVENT frames (topic
and eventType the EventType), card presses as CALLBACK frames on `/v1.0/card/instances/
callback`. Faults, as simulated-user presses: `stream_drop` closes every socket,
`stream_silence {for_s}` sends nothing (no frames, no pings, to old or new sockets) for that
long, `stream_disconnect` sends the SYSTEM disconnect frame.

Unconfirmed (the protocol page does not say): the ping interval (default here 10 s), the
re-push interval (default 3 s), whether a re-push keeps its messageId (it does here), and the
error answer to a bad clientSecret (the token endpoint's is used).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.dingtalk.base import PLATFORM, DingTalkBase, api_error
from sync_pipeline.devtools.sandbox.emulator import PressError

CARD_TOPIC = "/v1.0/card/instances/callback"
TICKET_TTL_S = 90.0
DEFAULTS = {"stream_ping_s": 10.0, "stream_repush_s": 3.0, "stream_disconnect_s": 10.0}


@dataclass
class _Push:
    frame: dict[str, Any]
    sent_at: float = 0.0  # monotonic; 0: not sent yet
    tries: int = 0


@dataclass
class _Gateway:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tickets: dict[str, float] = field(default_factory=dict)
    sockets: dict[str, WebSocket] = field(default_factory=dict)
    pending: dict[str, _Push] = field(default_factory=dict)
    silent_until: float = 0.0  # monotonic
    loop: asyncio.AbstractEventLoop | None = None
    repusher: asyncio.Task[None] | None = None


class Stream(DingTalkBase):
    """The Stream gateway: the open-connection API, the websocket, pushes and their acks."""

    @property
    def _gateway(self) -> _Gateway:
        gateway: _Gateway | None = getattr(self, "_stream_gateway", None)
        if gateway is None:
            gateway = _Gateway()
            self._stream_gateway = gateway
        return gateway

    def streaming(self) -> bool:
        return self.store.setting(PLATFORM, "events_mode") == "stream"

    def _stream_setting(self, name: str) -> float:
        value = self.store.setting(PLATFORM, name)
        return float(value) if value else DEFAULTS[name]

    # -- 1. open a connection ------------------------------------------------------------------
    async def _open_connection(self, request: Request) -> Response:
        self._gateway.loop = asyncio.get_running_loop()
        args = await self._args(request)
        if args is None:
            return api_error(400, "InvalidParameter", "request body is not a JSON object")
        creds = self.credentials()
        for name in ("clientId", "clientSecret"):
            if not args.get(name):
                return api_error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if args["clientId"] != creds["appKey"] or args["clientSecret"] != creds["appSecret"]:
            return api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        subscriptions = args.get("subscriptions")
        if not isinstance(subscriptions, list) or not subscriptions:
            return api_error(400, "Missingsubscriptions", "subscriptions is mandatory.")
        ticket = str(uuid.uuid4())
        with self._gateway.lock:
            now = time.monotonic()
            self._gateway.tickets = {
                t: until for t, until in self._gateway.tickets.items() if until > now
            }
            self._gateway.tickets[ticket] = now + TICKET_TTL_S
        base = str(request.base_url).replace("http", "ws", 1)
        return JSONResponse({"endpoint": f"{base}connect", "ticket": ticket})

    def _take_ticket(self, ticket: str) -> bool:
        with self._gateway.lock:
            until = self._gateway.tickets.pop(ticket, None)
        return until is not None and until > time.monotonic()

    # -- 2. the socket -------------------------------------------------------------------------
    async def _connect(self, websocket: WebSocket) -> None:
        gateway = self._gateway
        gateway.loop = asyncio.get_running_loop()
        if not self._take_ticket(websocket.query_params.get("ticket", "")):
            await websocket.close(code=1008)  # before accept: the handshake is refused (403)
            return
        await websocket.accept()
        connection = uuid.uuid4().hex
        gateway.sockets[connection] = websocket
        if gateway.repusher is None or gateway.repusher.done():
            gateway.repusher = asyncio.create_task(self._repush())
        pinger = asyncio.create_task(self._ping(websocket))
        try:
            for message_id in list(gateway.pending):  # what waits goes to the new socket
                await self._send(message_id, websocket)
            while True:
                self._on_answer(json.loads(await websocket.receive_text()))
        except (WebSocketDisconnect, ValueError, RuntimeError):
            pass
        finally:
            pinger.cancel()
            gateway.sockets.pop(connection, None)

    def _silent(self) -> bool:
        return time.monotonic() < self._gateway.silent_until

    async def _ping(self, websocket: WebSocket) -> None:
        while True:
            await asyncio.sleep(self._stream_setting("stream_ping_s"))
            if self._silent():
                continue
            frame = self._frame("SYSTEM", "ping", {"opaque": secrets.token_hex(8)}, {})
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps(frame, ensure_ascii=False))

    async def _send(self, message_id: str, websocket: WebSocket | None = None) -> None:
        gateway = self._gateway
        push = gateway.pending.get(message_id)
        if push is None or self._silent():
            return
        target = websocket or next(iter(gateway.sockets.values()), None)
        if target is None:
            return
        push.sent_at, push.tries = time.monotonic(), push.tries + 1
        with contextlib.suppress(Exception):
            await target.send_text(json.dumps(push.frame, ensure_ascii=False))

    async def _repush(self) -> None:
        while True:
            every = self._stream_setting("stream_repush_s")
            await asyncio.sleep(min(every, 0.5))
            due = time.monotonic() - every
            for message_id, push in list(self._gateway.pending.items()):
                if push.sent_at < due:
                    await self._send(message_id)

    # -- 3. acks -------------------------------------------------------------------------------
    def _on_answer(self, answer: Mapping[str, Any]) -> None:
        headers = answer.get("headers") or {}
        message_id = str(headers.get("messageId", "")) if isinstance(headers, Mapping) else ""
        push = self._gateway.pending.get(message_id)
        if push is None:
            return  # a ping's echo, or an ack of something already acked
        code = answer.get("code")
        ok = code == 200
        if ok and push.frame["type"] == "EVENT":
            try:
                ok = json.loads(str(answer.get("data") or "{}")).get("status") != "LATER"
            except (ValueError, AttributeError):
                ok = True  # the official SDK's default ack echoes the event as data
        topic = push.frame["headers"]["topic"]
        self.callback_answers.append(
            {"event": topic, "status": code, "acknowledged": ok, "via": "stream"}
        )
        if ok or code in (400, 404):  # done, or refused for good: pushing again is no use
            del self._gateway.pending[message_id]
        else:
            push.sent_at = time.monotonic()  # LATER or an error: pushed again later

    # -- pushes from the simulated user (a worker thread) --------------------------------------
    def stream_push(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Push one event (callbacks.py's shape: EventType names it) to a connected client."""
        body = {k: v for k, v in event.items() if k != "EventType"}
        topic = str(event["EventType"])
        if topic == CARD_TOPIC:
            frame = self._frame("CALLBACK", topic, body, {})
        else:
            creds = self.credentials()
            extra = {
                "eventId": uuid.uuid4().hex,
                "eventType": topic,
                "eventBornTime": str(now_ms()),
                "eventCorpId": creds["corpId"],
                "eventUnifiedAppId": creds["appKey"],
            }
            frame = self._frame("EVENT", topic, body, extra)
        message_id = frame["headers"]["messageId"]
        self._call_soon(self._enqueue(message_id, frame))
        return {"pushed": message_id, "event": dict(event)}

    async def _enqueue(self, message_id: str, frame: dict[str, Any]) -> None:
        self._gateway.pending[message_id] = _Push(frame)
        await self._send(message_id)

    def _call_soon(self, coroutine: Any) -> None:
        loop = self._gateway.loop
        if loop is None:
            coroutine.close()
            raise PressError("no Stream client has asked for a connection yet")
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=10)

    def _frame(
        self, kind: str, topic: str, data: Mapping[str, Any], extra: Mapping[str, str]
    ) -> dict[str, Any]:
        headers = {
            "appId": self.credentials()["appKey"],
            "connectionId": "",
            "contentType": "application/json",
            "messageId": uuid.uuid4().hex,
            "time": str(now_ms()),
            "topic": topic,
            **extra,
        }
        return {
            "specVersion": "1.0",
            "type": kind,
            "headers": headers,
            "data": json.dumps(dict(data), ensure_ascii=False),
        }

    # -- faults --------------------------------------------------------------------------------
    def stream_fault(self, action: Mapping[str, Any]) -> dict[str, Any]:
        kind = action.get("kind")
        if kind == "stream_silence":
            for_s = float(action.get("for_s", 30))
            self._gateway.silent_until = time.monotonic() + for_s
            return {"silent_s": for_s}
        self._call_soon(self._drop() if kind == "stream_drop" else self._disconnect())
        return {"sockets": len(self._gateway.sockets)}

    async def _drop(self, told: list[WebSocket] | None = None) -> None:
        for websocket in list(self._gateway.sockets.values()) if told is None else told:
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)

    async def _disconnect(self) -> None:
        """Tell every socket; close those (not the ones opened since) the grace period later."""
        grace = self._stream_setting("stream_disconnect_s")
        told = list(self._gateway.sockets.values())
        for websocket in told:
            frame = self._frame("SYSTEM", "disconnect", {"reason": "server restart"}, {})
            with contextlib.suppress(Exception):
                await websocket.send_text(json.dumps(frame, ensure_ascii=False))
        loop = asyncio.get_running_loop()
        loop.call_later(grace, lambda: asyncio.ensure_future(self._drop(told)))
