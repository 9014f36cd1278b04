"""Slack Socket Mode: button presses without a public URL (`syncctl webhooks slack-socket`).

The receiver asks `apps.connections.open` (with the app-level `xapp-` token, the connector's
credential `app_token`) for a one-use WebSocket URL, connects, and for every envelope
(`{envelope_id, type, payload}`) does what the webhook service does for an HTTP delivery:
decode it (webhooks/slack.py `decode`, the same as the Request URL's), record the event once
in PostgreSQL, and only then ack it with `{"envelope_id": ...}` (Slack sends an envelope again
when no ack comes within 3 s, so a crash between the two loses nothing, and the resend is a
counted duplicate); then `events.handle` is sent for the row. An envelope that cannot be
recorded (PostgreSQL down) is not acked, and Slack sends it again. Envelopes we do not handle
(events_api, slash_commands) are acked and dropped, as the HTTP side answers them.

A `disconnect` frame (`refresh_requested`, `warning`, `link_disabled`) opens the next
connection before the old one is closed; a connection that drops is reopened with backoff
(1 s doubling to 30 s). The socket's keepalive pings (every 10 s, 10 s to answer) find a dead
connection, which is then reopened rather than left deaf. Source: docs.slack.dev "Using Socket
Mode", platform-apis.md §9.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import requests
import sqlalchemy as sa
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from sync_pipeline.config.connector import ConnectorConfig, Vendor
from sync_pipeline.errors import ConfigError, Refused
from sync_pipeline.records import EventKind
from sync_pipeline.webhooks import slack
from sync_pipeline.webhooks.app import WebhookService

log = logging.getLogger(__name__)

PING_INTERVAL_S = 10.0
PING_TIMEOUT_S = 10.0
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
OPEN_TIMEOUT_S = 10.0


class SocketModeError(Exception):
    """apps.connections.open refused (bad token, too many connections)."""


def app_token(config: ConnectorConfig) -> str:
    """The connector's app-level token; a config without one cannot use Socket Mode."""
    if config.vendor is not Vendor.SLACK:
        raise ConfigError("connectors", [(config.name, "Socket Mode is for slack connectors")])
    secret = config.credentials.get("app_token")
    if secret is None:
        raise ConfigError(
            "connectors",
            [(f"{config.name}.credentials", "expected app_token (xapp-) for Socket Mode")],
        )
    return secret.reveal()


class SlackSocketReceiver:
    """One connector's Socket Mode connection, kept open until `stop` is set."""

    def __init__(self, service: WebhookService, config: ConnectorConfig) -> None:
        self.service = service
        self.config = config
        self.token = app_token(config)
        self.stop = threading.Event()
        self.session = requests.Session()

    def run(self) -> None:
        """Connect, receive, reconnect with backoff, until `stop`."""
        failures = 0
        socket: ClientConnection | None = None
        while not self.stop.is_set():
            try:
                socket = socket or self._open()
                failures = 0
                socket = self._receive(socket)
            except (OSError, ConnectionClosed, SocketModeError, requests.RequestException) as exc:
                socket = None
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning(
                    "slack socket %s: %s; reconnecting in %.0f s",
                    self.config.name,
                    type(exc).__name__,
                    wait,
                )
                self.stop.wait(wait)
        if socket is not None:
            socket.close()
        self.session.close()

    def _open(self) -> ClientConnection:
        answer = self.session.post(
            self.config.base_url.rstrip("/") + "/apps.connections.open",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=OPEN_TIMEOUT_S,
        )
        try:
            body = answer.json()
        except ValueError:
            raise SocketModeError(f"apps.connections.open: HTTP {answer.status_code}") from None
        if not isinstance(body, dict) or not body.get("ok") or not body.get("url"):
            error = body.get("error") if isinstance(body, dict) else None
            raise SocketModeError(f"apps.connections.open: {error or 'no url'}")
        socket = connect(
            str(body["url"]),
            open_timeout=OPEN_TIMEOUT_S,
            ping_interval=PING_INTERVAL_S,
            ping_timeout=PING_TIMEOUT_S,
        )
        log.info("slack socket %s: connected", self.config.name)
        return socket

    def _receive(self, socket: ClientConnection) -> ClientConnection | None:
        """Frames until the connection ends (None: reopen) or a `disconnect` frame (the next
        connection, opened before this one is closed)."""
        while not self.stop.is_set():
            try:
                text = socket.recv(timeout=1.0)
            except TimeoutError:
                continue
            frame = _frame(text)
            if frame.get("type") == "disconnect":
                log.info("slack socket %s: disconnect (%s)", self.config.name, frame.get("reason"))
                following = self._open()
                socket.close()
                return following
            if frame.get("envelope_id"):
                self._envelope(socket, frame)
        return socket

    def _envelope(self, socket: ClientConnection, frame: Mapping[str, Any]) -> None:
        """Record once, then ack, then enqueue (module docstring)."""
        connector = self.config.name
        ack = json.dumps({"envelope_id": str(frame["envelope_id"])})
        payload = frame.get("payload")
        if frame.get("type") != "interactive" or not isinstance(payload, Mapping):
            socket.send(ack)
            return
        try:
            event = slack.decode(connector, payload)
        except Refused as exc:
            self.service.refuse(connector, exc)
            socket.send(ack)  # the same envelope again would be refused the same way
            return
        row_id = None
        if event is not None:
            try:
                row_id = self.service.record(connector, event)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("slack socket %s: cannot record: %s", connector, type(exc).__name__)
                return  # not acked: Slack sends it again
        socket.send(ack)
        if row_id is not None and event is not None and event.kind is not EventKind.UNHANDLED:
            self.service.sender.put(connector, row_id)


def _frame(text: str | bytes) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
