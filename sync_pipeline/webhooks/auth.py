"""The admin token on the webhook service's admin routes (`/metrics`).

A bearer token rather than "loopback only": the service sits behind the reverse proxy that
faces the vendors, and on the proxy's host every request arrives from 127.0.0.1, so a loopback
check would serve the figures to the internet. With no SYNC_ADMIN_TOKEN set, the admin routes
refuse every request (closed, not open), and the service says so in its log when it starts.

Tokens are compared as SHA-256 digests with hmac.compare_digest: constant time, without the
early return compare_digest makes on a length mismatch, so timing tells nothing of the token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.settings import Settings

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sync_pipeline admin"'}


class AdminToken:
    """Admits a request whose `Authorization` is `Bearer <the token>`; no token admits none."""

    def __init__(self, token: str | None) -> None:
        self._digest = None if token is None else _digest(token)

    def admits(self, authorization: str) -> bool:
        if self._digest is None:
            return False
        scheme, _, presented = authorization.partition(" ")
        matches = hmac.compare_digest(_digest(presented.strip()), self._digest)
        return scheme.lower() == "bearer" and matches

    def guard(self, endpoint: Endpoint) -> Endpoint:
        """The endpoint, answering 401 (and nothing else) to a request the token does not admit."""

        async def guarded(request: Request) -> Response:
            if not self.admits(request.headers.get("authorization", "")):
                return JSONResponse({"error": "unauthorized"}, status_code=401, headers=CHALLENGE)
            return await endpoint(request)

        return guarded


def admin_token(settings: Settings) -> AdminToken:
    """The service's admin token; says in the log when there is none, as every admin route is
    then closed."""
    if settings.admin_token is None:
        log.warning("webhooks: SYNC_ADMIN_TOKEN is not set, so /metrics refuses every request")
    return AdminToken(settings.admin_token)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()
