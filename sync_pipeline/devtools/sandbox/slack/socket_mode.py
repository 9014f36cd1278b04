"""Socket Mode: `apps.connections.open` with the app-level (`xapp-`) token answers a one-use
WebSocket URL; the connection is greeted with `hello`, carries envelopes
`{envelope_id, type, payload, accepts_response_payload, retry_attempt, retry_reason}` that
the app acks by sending `{"envelope_id": ...}` within 3 s (else the envelope is sent again,
up to three retries), and ends with a `disconnect` frame (`refresh_requested`, `warning`,
`link_disabled`). At most 10 connections per app (`too_many_websockets`).
Source: docs.slack.dev "Using Socket Mode", slack-sdk `socket_mode/builtin/client.py`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.slack.base import SlackBase, SlackError

ACK_WITHIN_S = 3.0
RETRIES = 3
TICKET_TTL_S = 30.0
MAX_CONNECTIONS = 10


@dataclass
class _Link:
    socket: WebSocket
    loop: asyncio.AbstractEventLoop
    acks: dict[str, threading.Event] = field(default_factory=dict)


class SocketMode(SlackBase):
    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._tickets: dict[str, float] = {}  # one-use ticket -> monotonic expiry
        self._links: list[_Link] = []

    def _connections_open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if len(self._links) >= MAX_CONNECTIONS:
                raise SlackError("too_many_websockets")
            ticket = uuid.uuid4().hex
            self._tickets[ticket] = time.monotonic() + TICKET_TTL_S
        app_id = self.credentials()["app_id"]
        host = self.base_url.replace("http://", "ws://").replace("https://", "wss://")
        return {"url": f"{host}/link/?ticket={ticket}&app_id={app_id}"}

    async def _link(self, socket: WebSocket) -> None:
        ticket = socket.query_params.get("ticket", "")
        with self._lock:
            expiry = self._tickets.pop(ticket, 0.0)  # one use
        if expiry < time.monotonic():
            await socket.close(code=1008)
            return
        await socket.accept()
        link = _Link(socket, asyncio.get_running_loop())
        with self._lock:
            self._links.append(link)
            count = len(self._links)
        hello = {
            "type": "hello",
            "num_connections": count,
            "debug_info": {"host": "sandbox-slack", "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.credentials()["app_id"]},
        }
        try:
            await socket.send_text(json.dumps(hello))
            while True:
                text = await socket.receive_text()
                try:
                    frame = json.loads(text)
                except ValueError:
                    continue
                envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
                ack = link.acks.get(str(envelope_id)) if envelope_id else None
                if ack is not None:
                    ack.set()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            with self._lock:
                if link in self._links:
                    self._links.remove(link)

    def _connected(self) -> bool:
        return bool(self._links)

    def _send_envelope(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one interactive envelope until a connection acks it (at most 1 + RETRIES
        sends, each to one connection chosen at random, as Slack spreads them)."""
        envelope_id = str(uuid.uuid4())
        acked = threading.Event()
        sent = 0
        for attempt in range(RETRIES + 1):
            with self._lock:
                links = list(self._links)
            if not links:
                break
            link = secrets.choice(links)
            link.acks[envelope_id] = acked
            envelope: dict[str, Any] = {
                "envelope_id": envelope_id,
                "type": "interactive",
                "payload": dict(payload),
                "accepts_response_payload": False,
            }
            if attempt:
                envelope.update(retry_attempt=attempt, retry_reason="timeout")
            future = asyncio.run_coroutine_threadsafe(
                link.socket.send_text(json.dumps(envelope, ensure_ascii=False)), link.loop
            )
            try:
                future.result(timeout=ACK_WITHIN_S)
            except Exception:  # noqa: BLE001,S112 - a socket closing under us: try another
                continue
            sent += 1
            if acked.wait(ACK_WITHIN_S):
                return {"envelope_id": envelope_id, "acked": True, "sent": sent}
        if not sent:
            raise PressError("no Socket Mode connection took the envelope")
        return {"envelope_id": envelope_id, "acked": False, "sent": sent}

    def _press_disconnect(self, action: Mapping[str, Any]) -> dict[str, Any]:
        reason = str(action.get("reason") or "refresh_requested")
        with self._lock:
            links = list(self._links)
        frame = json.dumps(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox-slack"}}
        )
        for link in links:

            async def bye(socket: WebSocket = link.socket) -> None:
                await socket.send_text(frame)
                await socket.close()

            try:
                asyncio.run_coroutine_threadsafe(bye(), link.loop).result(timeout=ACK_WITHIN_S)
            except Exception:  # noqa: BLE001,S112 - already gone
                continue
        return {"disconnected": len(links)}
