"""DingTalk's Stream mode, client side (platform-apis.md §2.2, §9; the `dingtalk-stream` SDK's
stream.py and frames.py):

1. `POST {base_url}/v1.0/gateway/connections/open` with `{clientId, clientSecret,
   subscriptions}` (every EVENT, and the card callback topic) gives `{endpoint, ticket}`;
2. the websocket `endpoint?ticket=...` brings JSON frames `{type, headers, data}`;
3. SYSTEM `ping`: echo its data; SYSTEM `disconnect`: the server closes soon, so connect anew;
   EVENT (approvals: `headers.eventType` is the EventType) and CALLBACK (card presses on
   `/v1.0/card/instances/callback`): decoded by the webhook service's decoder
   (webhooks/dingtalk.py `decode`, so the same InboundEvent comes out), recorded once, then
   acked: `{code: 200, headers: {messageId, contentType}, message, data}` with an EVENT's data
   `{"status": "SUCCESS"}`, or `LATER` when it could not be recorded (DingTalk pushes it again);
4. no frame at all, not even a ping, for `silence_s`: the socket is dead (the official SDK's
   has no such limit, hence deaf clients); close it, say so (Keeper.lost), connect anew.
Reconnects back off from BACKOFF_MIN_S to BACKOFF_MAX_S, reset by a connection that works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import requests
import websockets

from sync_pipeline.config.connector import Secret
from sync_pipeline.errors import Reason, Refused
from sync_pipeline.untrusted import excerpt
from sync_pipeline.webhooks import dingtalk
from sync_pipeline.webhooks.delivery import json_object
from sync_pipeline.webhooks.longconn.keeper import Keeper

log = logging.getLogger(__name__)

OPEN_PATH = "/v1.0/gateway/connections/open"
CARD_TOPIC = "/v1.0/card/instances/callback"
SUBSCRIPTIONS = ({"type": "EVENT", "topic": "*"}, {"type": "CALLBACK", "topic": CARD_TOPIC})
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 60.0
MAX_FRAME_BYTES = 1 << 20


@dataclass(frozen=True)
class ConnectionConfig:
    connector: str
    base_url: str
    client_id: Secret = field(repr=False)
    client_secret: Secret = field(repr=False)
    silence_s: float
    timeout_s: float


class Silent(Exception):
    """No frame for longer than silence_s."""


class Reconnect(Exception):
    """The server announced it is closing (SYSTEM disconnect)."""


def open_connection(cfg: ConnectionConfig) -> str:
    """The websocket URL with its one-use ticket (blocking: called in a thread)."""
    body = {
        "clientId": cfg.client_id.reveal(),
        "clientSecret": cfg.client_secret.reveal(),
        "subscriptions": list(SUBSCRIPTIONS),
        "ua": "sync_pipeline",
    }
    answer = requests.post(cfg.base_url.rstrip("/") + OPEN_PATH, json=body, timeout=cfg.timeout_s)
    if answer.status_code != 200:
        raise ConnectionError(f"{OPEN_PATH} answered {answer.status_code}: {excerpt(answer.text)}")
    found = answer.json()
    endpoint, ticket = found.get("endpoint"), found.get("ticket")
    if not isinstance(endpoint, str) or not isinstance(ticket, str):
        raise ConnectionError(f"{OPEN_PATH} gave no endpoint and ticket")
    return f"{endpoint}?ticket={quote_plus(ticket)}"


def ack(headers: Mapping[str, Any], data: Mapping[str, Any], code: int = 200) -> str:
    return json.dumps(
        {
            "code": code,
            "headers": {
                "messageId": str(headers.get("messageId", "")),
                "contentType": "application/json",
            },
            "message": "OK" if code == 200 else "refused",
            "data": json.dumps(dict(data)),
        }
    )


class StreamClient:
    def __init__(self, cfg: ConnectionConfig, keeper: Keeper) -> None:
        self.cfg, self.keeper = cfg, keeper
        self.heard = False  # whether the current connection brought a frame

    async def keep(self, stop: asyncio.Event) -> None:
        """Connect, and connect again whatever happens, until `stop` is set."""
        backoff = BACKOFF_MIN_S
        while not stop.is_set():
            self.heard = False
            try:
                await self._session(stop)
            except Silent:
                await asyncio.to_thread(
                    self.keeper.lost, f"no frame for {self.cfg.silence_s:.0f} s"
                )
            except Reconnect:
                backoff = 0.0
            except (OSError, ValueError, websockets.WebSocketException) as exc:  # requests: OSError
                await asyncio.to_thread(self.keeper.lost, failure(exc))
            if self.heard:
                backoff = min(backoff, BACKOFF_MIN_S)  # the connection worked: start over
            if stop.is_set():
                break
            if backoff:
                log.info("events %s: reconnecting in %.1f s", self.cfg.connector, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(max(backoff * 2, BACKOFF_MIN_S), BACKOFF_MAX_S)

    async def _session(self, stop: asyncio.Event) -> None:
        uri = await asyncio.to_thread(open_connection, self.cfg)
        async with websockets.connect(
            uri, open_timeout=self.cfg.timeout_s, max_size=MAX_FRAME_BYTES
        ) as socket:
            log.info("events %s: connected", self.cfg.connector)
            while not stop.is_set():
                stopping = asyncio.ensure_future(stop.wait())
                receiving = asyncio.ensure_future(socket.recv())
                done, _ = await asyncio.wait(
                    {stopping, receiving},
                    timeout=self.cfg.silence_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                stopping.cancel()
                if receiving not in done:
                    receiving.cancel()
                    if stop.is_set():
                        return
                    raise Silent
                raw = receiving.result()
                self.heard = True
                await asyncio.to_thread(self.keeper.heard)
                answer = await self._frame(raw)
                if answer is not None:
                    await socket.send(answer)

    async def _frame(self, raw: str | bytes) -> str | None:
        """The ack for one frame (None: none is due); Reconnect on a disconnect."""
        try:
            frame = json_object(raw)
        except Refused as refusal:
            await asyncio.to_thread(self.keeper.refuse, refusal)
            return None
        kind = frame.get("type")
        written = frame.get("headers")
        headers: Mapping[str, Any] = written if isinstance(written, Mapping) else {}
        topic = str(headers.get("topic", ""))
        if kind == "SYSTEM":
            if topic == "disconnect":
                log.info("events %s: the server will disconnect", self.cfg.connector)
                raise Reconnect
            data = _data(frame)
            return ack(headers, data if isinstance(data, Mapping) else {})
        if kind not in ("EVENT", "CALLBACK"):
            return None
        try:
            payload = json_object(str(frame.get("data") or ""))
            if kind == "EVENT":
                payload = {**payload, "EventType": headers.get("eventType") or topic}
            sent_at = _sent_at(headers)
            event = dingtalk.decode(self.cfg.connector, payload, sent_at)
        except Refused as refusal:
            await asyncio.to_thread(self.keeper.refuse, refusal)
            return ack(headers, {"status": "SUCCESS"} if kind == "EVENT" else {}, code=400)
        recorded = await asyncio.to_thread(self.keeper.record, event)
        if kind == "CALLBACK":
            return ack(headers, {"response": {}}, code=200 if recorded else 500)
        return ack(headers, {"status": "SUCCESS" if recorded else "LATER"})


QUERY = re.compile(r"\?\S*")


def failure(exc: BaseException) -> str:
    """One line for the log and the liveness row: a socket URL's query (its ticket, its
    device id) is left out."""
    return QUERY.sub("?...", f"{type(exc).__name__}: {excerpt(str(exc))}")[:200]


def _data(frame: Mapping[str, Any]) -> Any:
    try:
        return json.loads(str(frame.get("data") or "{}"))
    except ValueError:
        return {}


def _sent_at(headers: Mapping[str, Any]) -> float:
    for name in ("eventBornTime", "time"):
        value = headers.get(name)
        try:
            return int(str(value)) / 1000.0
        except (TypeError, ValueError):
            continue
    raise Refused(Reason.MALFORMED, "the frame has no time")
