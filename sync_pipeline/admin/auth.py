"""The admin API's door: a bearer token on every route but /healthz, and a tally of answers.

The token is SYNC_ADMIN_TOKEN; the API refuses to start without one (closed, never open).
Tokens are compared as SHA-256 digests with `hmac.compare_digest`: constant time, without the
early return compare_digest makes on a length mismatch, so timing tells nothing of the token.
A request without it, or with another, is answered 401 and nothing else.

Every answer is counted by route (its template, or `unmatched`) and status, and served at
`GET /stats`: refusals (4xx) are counted, never silent. Counts live in the process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections import Counter
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sync_pipeline admin"'}
OPEN_PATHS = frozenset({"/healthz"})  # the container's healthcheck: says nothing of the state
UNMATCHED = "unmatched"  # a path no route serves: its text is not a label (it is anyone's)
TURNED_AWAY = "unauthorized"  # the label of what the guard refused: the token came first


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class BearerToken:
    """Admits `Authorization: Bearer <the token>`, compared in constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an admin token is required")
        self._digest = _digest(token)

    def admits(self, authorization: str) -> bool:
        scheme, _, presented = authorization.partition(" ")
        matches = hmac.compare_digest(_digest(presented.strip()), self._digest)
        return scheme.lower() == "bearer" and matches


@dataclass(frozen=True)
class Answered:
    """How many answers of one status one route gave."""

    route: str
    status: int
    count: int


class Tally:
    """Answers counted by (route, status), safe across the server's threads."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()

    def count(self, route: str, status: int) -> None:
        with self._lock:
            self._counts[(route, status)] += 1

    def answered(self) -> list[Answered]:
        with self._lock:
            return [Answered(r, s, n) for (r, s), n in sorted(self._counts.items())]


class Guard:
    """ASGI middleware: the token on every route but OPEN_PATHS, and every answer counted."""

    def __init__(self, app: ASGIApp, token: BearerToken, tally: Tally) -> None:
        self.app, self.token, self.tally = app, token, tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if nothing answers (a bug of ours)
        admitted = False

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            admitted = scope["path"] in OPEN_PATHS or self.token.admits(
                Headers(scope=scope).get("authorization", "")
            )
            if admitted:
                await self.app(scope, receive, counted)
            else:
                refusal = JSONResponse(
                    {"error": "unauthorized", "detail": "expected Authorization: Bearer <token>"},
                    status_code=401,
                    headers=CHALLENGE,
                )
                await refusal(scope, receive, counted)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or (UNMATCHED if admitted else TURNED_AWAY)
            self.tally.count(label, status)
            if status >= 400:
                log.info("admin: %s %s answered %d", scope["method"], label, status)
