"""Feishu / Lark's long connection, client side (platform-apis.md §3.2, §9; lark-oapi's
ws/client.py):

1. `POST {base_url}/callback/ws/endpoint` with `{AppID, AppSecret}` gives `{code: 0, data:
   {URL, ClientConfig{PingInterval, ...}}}`; the URL's query names the `service_id`;
2. binary protobuf frames (pbbp2.py). We ping (a CONTROL frame, `type: ping`) every
   PingInterval, or every third of `silence_s` when that is sooner; the server pongs;
3. DATA frames of `type: event` carry the plaintext event envelope: decoded by the webhook
   service's Feishu decoder (webhooks/feishu.py `decode`: card presses, approval events,
   messages), recorded once, then answered with the same frame and payload `{"code": 200,
   "data": base64("{}")}` (a card press gets no toast: the card is updated by the worker), all
   within Feishu's 3 s; `code: 500` when it could not be recorded, and Feishu pushes it again.
   A frame that is not a usable event is counted as refused and answered 200: pushing it
   again would not make it one. A message of several parts (`sum` > 1) is refused likewise;
4. no frame at all, pongs included, for `silence_s`: the socket is dead (lark-oapi's own
   reconnect has no such limit: one bot stayed deaf for 3 days, larksuite/oapi-sdk-python#169).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
import websockets

from sync_pipeline.errors import Reason, Refused
from sync_pipeline.untrusted import excerpt
from sync_pipeline.webhooks import feishu
from sync_pipeline.webhooks.delivery import json_object
from sync_pipeline.webhooks.longconn import pbbp2
from sync_pipeline.webhooks.longconn.dingtalk import (
    MAX_FRAME_BYTES,
    ConnectionConfig,
    Silent,
    StreamClient,
)

log = logging.getLogger(__name__)

ENDPOINT_PATH = "/callback/ws/endpoint"
DEFAULT_PING_S = 120.0
ANSWER_OK = json.dumps({"code": 200, "headers": {}, "data": base64.b64encode(b"{}").decode()})
ANSWER_LATER = json.dumps({"code": 500, "headers": {}})


def endpoint(cfg: ConnectionConfig) -> tuple[str, float]:
    """The socket URL and the ping interval it comes with (blocking: called in a thread)."""
    body = {"AppID": cfg.client_id.reveal(), "AppSecret": cfg.client_secret.reveal()}
    url = cfg.base_url.rstrip("/") + ENDPOINT_PATH
    answer = requests.post(url, json=body, headers={"locale": "zh"}, timeout=cfg.timeout_s)
    if answer.status_code != 200:
        raise ConnectionError(f"{ENDPOINT_PATH} answered {answer.status_code}")
    found = answer.json()
    if not isinstance(found, dict) or found.get("code") != 0:
        what = excerpt(str(found.get("msg") if isinstance(found, dict) else found))
        raise ConnectionError(f"{ENDPOINT_PATH} refused: {what}")
    data = found.get("data") or {}
    socket_url = data.get("URL")
    if not isinstance(socket_url, str):
        raise ConnectionError(f"{ENDPOINT_PATH} gave no URL")
    config = data.get("ClientConfig") or {}
    ping = config.get("PingInterval") if isinstance(config, dict) else None
    return socket_url, float(ping) if isinstance(ping, int | float) and ping > 0 else DEFAULT_PING_S


class LongConnectionClient(StreamClient):
    """StreamClient's reconnecting loop (keep) around Feishu's session."""

    async def _session(self, stop: asyncio.Event) -> None:
        url, ping_s = await asyncio.to_thread(endpoint, self.cfg)
        service = int((parse_qs(urlparse(url).query).get("service_id") or ["0"])[0] or 0)
        async with websockets.connect(
            url, open_timeout=self.cfg.timeout_s, max_size=MAX_FRAME_BYTES
        ) as socket:
            log.info("events %s: connected", self.cfg.connector)
            every = min(ping_s, self.cfg.silence_s / 3)
            pinger = asyncio.create_task(self._ping(socket, service, every))
            try:
                await self._receive(socket, stop)
            finally:
                pinger.cancel()

    async def _ping(self, socket: websockets.ClientConnection, service: int, every: float) -> None:
        ping = pbbp2.encode(pbbp2.Frame(service=service, headers=(("type", "ping"),)))
        with contextlib.suppress(websockets.ConnectionClosed):  # the receiver sees it too
            while True:
                await socket.send(ping)
                await asyncio.sleep(every)

    async def _receive(self, socket: websockets.ClientConnection, stop: asyncio.Event) -> None:
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
            answer = await self._data(raw)
            if answer is not None:
                await socket.send(answer)

    async def _data(self, raw: str | bytes) -> bytes | None:
        """The answer to one frame (None for control frames and what is not an event)."""
        try:
            frame = pbbp2.decode(raw if isinstance(raw, bytes) else raw.encode())
        except ValueError:
            await asyncio.to_thread(self.keeper.refuse, Refused(Reason.MALFORMED, "not a frame"))
            return None
        if frame.method != pbbp2.DATA or frame.header("type") != "event":
            return None
        started = time.monotonic()
        try:
            event = feishu.decode(self.cfg.connector, _whole(frame))
        except Refused as refusal:
            await asyncio.to_thread(self.keeper.refuse, refusal)
            return pbbp2.encode(frame.answered(ANSWER_OK.encode(), biz_rt="0"))
        recorded = await asyncio.to_thread(self.keeper.record, event)
        took = str(int((time.monotonic() - started) * 1000))
        payload = ANSWER_OK if recorded else ANSWER_LATER
        return pbbp2.encode(frame.answered(payload.encode(), biz_rt=took))


def _whole(frame: pbbp2.Frame) -> dict[str, Any]:
    """The event envelope of a frame that holds all of it."""
    if frame.header("sum") not in ("", "1"):
        raise Refused(Reason.MALFORMED, "an event in several parts")
    return json_object(frame.payload)
