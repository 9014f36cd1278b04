"""How the webhook service is served: uvicorn on h11, with deadlines for reading a request.

uvicorn times out only an idle keep-alive connection (`timeout_keep_alive`), and any byte
resets that timer: a client that sends its head or its body one byte at a time holds a
connection, and a slot of the event loop, for as long as it likes. h11 parses what uvicorn
receives and says at every moment which part of the request it is waiting for
(`their_state`: IDLE for the head, SEND_BODY for the body), so DeadlineProtocol, a small
subclass of uvicorn's h11 protocol, puts one timer on each part:

- the head must be whole within HEAD_TIMEOUT_S of the connection being made or, on a kept-alive
  connection, of the next request's first byte;
- the body must be whole within BODY_TIMEOUT_S of its head.

The vendors' deadlines for our answer are 1 to 5 s, so a request that takes longer to arrive
is already lost; the deadlines are totals, not gaps between bytes, which is what stops a
trickle. Past one, the connection is closed without an answer: the app, if it was reading the
body, sees the client gone and counts an `incomplete` refusal (app.py); a head that never
completed names no connector and is only logged. h11 bounds the head's size as well (16 kB,
its default), and the app the body's (app.MAX_BODY_BYTES).

This always uses h11, even where httptools is installed: the deadlines are written against
h11's states.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 5.0


class Part(StrEnum):
    """The part of a request being read, each with its own deadline."""

    HEAD = "head"
    BODY = "body"

    @property
    def timeout_s(self) -> float:
        return HEAD_TIMEOUT_S if self is Part.HEAD else BODY_TIMEOUT_S


class DeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head or body is not whole
    within its deadline (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: Part | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect(Part.HEAD)

    def data_received(self, data: bytes) -> None:
        if self._reading is None and self.conn.their_state is h11.IDLE:
            self._expect(Part.HEAD)  # the first bytes of the next request on this connection
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self._expect(None)  # waiting for another request: uvicorn's keep-alive timeout
        else:
            self._follow()  # a body still coming after the answer keeps its deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._expect(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move the deadline along with h11's reading of the request."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._expect(Part.BODY)
        elif state is not h11.IDLE:
            self._expect(None)  # the request is whole (or the connection is done)

    def _expect(self, part: Part | None) -> None:
        """Start the deadline of `part` (None: no deadline), unless it runs already."""
        if part is self._reading:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._reading = part
        if part is not None:
            self._deadline = self.loop.call_later(part.timeout_s, self._expired, part)

    def _expired(self, part: Part) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if part is Part.HEAD:
            client = "%s:%d" % self.client if self.client else "a client"  # noqa: UP031
            log.info(
                "webhooks: closed the connection of %s: no whole request head within %g s",
                client,
                part.timeout_s,
            )
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """What every server of the webhook service runs with (`syncctl webhooks serve`, tests)."""
    return {
        "http": DeadlineProtocol,
        "access_log": False,  # query strings carry signatures; refusals are logged instead
    }
