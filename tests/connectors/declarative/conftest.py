"""A small REST API served over HTTP on a loopback port, and rest connectors loaded from YAML.

The API (`TestAPI`) is written here for these tests, from what its routes document, and
shares no code with the connector: each route is the shape some real API has (page numbers
with has_more, offsets with a total, cursors, Link headers, next URLs in the body, OAuth2,
a login, HMAC-signed requests, an idempotent create). Each connector under test is written
as a user would write it, in a connectors.yaml loaded by load_config.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.processes import free_port

API_KEY = "k-123"
CLIENT_ID, CLIENT_SECRET = "client", "s3cret"
HMAC_KEY = "hmac-key"
START = datetime(2026, 3, 1, tzinfo=UTC)
ENV = {
    "T_API_KEY": API_KEY,
    "T_CLIENT_ID": CLIENT_ID,
    "T_CLIENT_SECRET": CLIENT_SECRET,
    "T_REFRESH": "r-0",
    "T_HMAC": HMAC_KEY,
    "T_USER": "bot",
    "T_PASSWORD": "pw",
}


ACTING_USERS = ("ann", "bob")  # the users the login endpoint binds a session to


def item(i: int) -> dict[str, Any]:
    """Item i, updated i hours after START: `updated` in Asia/Shanghai time, `epoch` in s."""
    at = START + timedelta(hours=i)
    local = (at + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "id": f"i{i:03d}",
        "name": f"item {i}",
        "kind": "odd" if i % 2 else "even",
        "updated": local,
        "epoch": int(at.timestamp()),
    }


@dataclass
class TestAPI:
    """The API's state: its items, the tokens it issued, what it was asked."""

    __test__ = False
    base_url: str = ""
    items: list[dict[str, Any]] = field(default_factory=lambda: [item(i) for i in range(25)])
    access_tokens: set[str] = field(default_factory=set)
    refresh_token: str = "r-0"  # the one refresh token it accepts now (rotated on each use)
    token_calls: int = 0
    windows: list[tuple[str, str]] = field(default_factory=list)
    made: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotency key -> object
    creates: int = 0
    acting: dict[str, str] = field(default_factory=dict)  # token -> the user it is bound to
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # (id, verdict, by)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/keyed/items", self.keyed_items),
                Route("/offset/items", self.offset_items),
                Route("/cursor/items", self.cursor_items),
                Route("/stuck/items", self.stuck_items),
                Route("/deaf/items", self.deaf_items),
                Route("/link/items", self.link_items),
                Route("/next/items", self.next_items),
                Route("/events", self.events),
                Route("/unfiltered/events", self.unfiltered_events),
                Route("/groups", self.groups),
                Route("/groups/{group}/members", self.members),
                Route("/oauth/token", self.oauth_token, methods=["POST"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/requests/{rid}", self.one_request),
                Route("/requests/{rid}/{verdict}", self.decide_request, methods=["POST"]),
                Route("/bearer/items", self.bearer_items),
                Route("/basic/items", self.basic_items),
                Route("/signed/items", self.signed_items, methods=["POST"]),
                Route("/todos", self.create_todo, methods=["POST"]),
                Route("/todos/{todo}", self.update_todo, methods=["PUT"]),
                Route("/busy", self.busy),
            ]
        )

    # -- paging --------------------------------------------------------------------------------
    async def keyed_items(self, request: Request) -> Response:
        """?page=N&size=M (from 1), X-API-Key: {"data": {"list": [...], "has_more": bool}}."""
        if request.headers.get("X-API-Key") != API_KEY:
            return JSONResponse({"error": "no key"}, 403)
        page, size = int(request.query_params["page"]), int(request.query_params["size"])
        rows = self.items[(page - 1) * size : page * size]
        return JSONResponse({"data": {"list": rows, "has_more": page * size < len(self.items)}})

    async def offset_items(self, request: Request) -> Response:
        """?offset=&limit=: {"items": [...], "total": N}."""
        offset, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
        return JSONResponse(
            {"items": self.items[offset : offset + limit], "total": len(self.items)}
        )

    async def cursor_items(self, request: Request) -> Response:
        """?cursor=&size=: {"items": [...], "next": cursor or null}."""
        start = int(request.query_params.get("cursor") or 0)
        size = int(request.query_params["size"])
        rows = self.items[start : start + size]
        following = start + size if start + size < len(self.items) else None
        return JSONResponse({"items": rows, "next": None if following is None else str(following)})

    async def stuck_items(self, request: Request) -> Response:
        """A broken cursor API: the first page's cursor is "a", every later one is "b"."""
        given = request.query_params.get("cursor")
        return JSONResponse(
            {
                "items": self.items[:2] if not given else self.items[2:4],
                "next": "a" if not given else "b",
            }
        )

    async def deaf_items(self, request: Request) -> Response:
        """An API that ignores ?page=: the same full page, forever, and no has_more."""
        return JSONResponse({"items": self.items[:5]})

    async def link_items(self, request: Request) -> Response:
        """?page=&per_page=, with a GitHub-style Link header naming the next page."""
        page = int(request.query_params.get("page") or 1)
        size = int(request.query_params["per_page"])
        rows = self.items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(self.items):
            headers["Link"] = (
                f'<{self.base_url}/link/items?page={page + 1}&per_page={size}>; rel="next"'
            )
        return JSONResponse(rows, headers=headers)

    async def next_items(self, request: Request) -> Response:
        """{"results": [...], "links": {"next": URL or null}}."""
        start = int(request.query_params.get("from") or 0)
        rows = self.items[start : start + 10]
        nxt = (
            f"{self.base_url}/next/items?from={start + 10}"
            if start + 10 < len(self.items)
            else None
        )
        return JSONResponse({"results": rows, "links": {"next": nxt}})

    # -- incremental ---------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """?from=&to= (local "%Y-%m-%d %H:%M:%S", Asia/Shanghai): items updated in [from, to)."""
        since, until = request.query_params["from"], request.query_params["to"]
        self.windows.append((since, until))
        rows = [r for r in self.items if since <= _local(r) < until]
        return JSONResponse({"items": rows})

    async def unfiltered_events(self, request: Request) -> Response:
        """An API that ignores its filter: every item, whatever the window."""
        return JSONResponse({"items": self.items})

    async def groups(self, request: Request) -> Response:
        """Parents, two per page: ?page=."""
        page = int(request.query_params.get("page") or 1)
        ids = ["g1", "g2", "g3"][(page - 1) * 2 : page * 2]
        return JSONResponse({"groups": [{"gid": g} for g in ids], "has_more": page * 2 < 3})

    async def members(self, request: Request) -> Response:
        """Children of a group, paged by ?page= with one member per page, two per group."""
        group, page = request.path_params["group"], int(request.query_params.get("page") or 1)
        rows = [{"uid": f"{group}-m{page}", "group": group}] if page <= 2 else []
        return JSONResponse({"members": rows})

    # -- auth ----------------------------------------------------------------------------------
    async def oauth_token(self, request: Request) -> Response:
        form = await _form(request)
        with self.lock:
            self.token_calls += 1
            if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                return JSONResponse({"error": "invalid_client"}, 401)
            if form.get("grant_type") == "refresh_token":
                if form.get("refresh_token") != self.refresh_token:
                    return JSONResponse({"error": "invalid_grant"}, 400)
                self.refresh_token = f"r-{self.token_calls}"  # rotated: the old one is dead
            token = secrets.token_hex(8)
            self.access_tokens.add(token)
            return JSONResponse(
                {"access_token": token, "expires_in": 3600, "refresh_token": self.refresh_token}
            )

    async def login(self, request: Request) -> Response:
        """{"user", "password"} -> a session; with "as": a session bound to that user (only
        the users of ACTING_USERS), which alone may decide that user's requests."""
        body = await request.json()
        acting = body.pop("as", None)
        if body != {"user": "bot", "password": "pw"} or acting not in (None, *ACTING_USERS):
            return JSONResponse({"error": "bad login"}, 403)
        token = secrets.token_hex(8)
        with self.lock:
            self.token_calls += 1
            self.access_tokens.add(token)
            if acting is not None:
                self.acting[token] = acting
        return JSONResponse({"result": {"session": token, "ttl": 600}})

    async def one_request(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access_tokens:
            return JSONResponse({"error": "expired"}, 401)
        return JSONResponse({"id": request.path_params["rid"], "status": "pending"})

    async def decide_request(self, request: Request) -> Response:
        """Decided as whoever the session is bound to; a session bound to no one is refused."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access_tokens:
            return JSONResponse({"error": "expired"}, 401)
        by = self.acting.get(token)
        if by is None:
            return JSONResponse({"code": 403, "msg": "a session bound to no user decides nothing"})
        with self.lock:
            self.decisions.append((request.path_params["rid"], request.path_params["verdict"], by))
        return JSONResponse({"code": 0})

    async def bearer_items(self, request: Request) -> Response:
        """Authorization: Bearer <a token it issued> (or the static API key as a bearer)."""
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if given not in self.access_tokens and given != API_KEY:
            return JSONResponse({"error": "expired"}, 401)
        return JSONResponse({"items": self.items[:3]})

    async def basic_items(self, request: Request) -> Response:
        expected = base64.b64encode(b"bot:pw").decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return JSONResponse({"error": "who"}, 401)
        return JSONResponse({"items": self.items[:3]})

    async def signed_items(self, request: Request) -> Response:
        """X-Signature: hex HMAC-SHA256(key, "POST\\n/signed/items\\n<X-Timestamp>\\n<body>")."""
        body = (await request.body()).decode()
        message = f"POST\n/signed/items\n{request.headers.get('X-Timestamp')}\n{body}"
        expected = hmac.new(HMAC_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Signature", ""), expected):
            return JSONResponse({"code": "BAD_SIGN"}, 401)
        return JSONResponse({"items": self.items[:3]})

    # -- writes and errors ---------------------------------------------------------------------
    async def create_todo(self, request: Request) -> Response:
        """A create that drops a resend with the same Idempotency-Key (answers the first)."""
        key = request.headers.get("Idempotency-Key", "")
        body = await request.json()
        with self.lock:
            if key and key in self.made:
                return JSONResponse({"code": 0, "data": self.made[key]})
            if not body.get("title"):
                return JSONResponse({"code": 4001, "msg": "title required"})
            self.creates += 1
            made = {"todo_id": f"t{self.creates}", **body}
            if key:
                self.made[key] = made
            return JSONResponse({"code": 0, "data": made})

    async def update_todo(self, request: Request) -> Response:
        form = await _form(request)
        return JSONResponse({"code": 0, "data": {"todo_id": request.path_params["todo"], **form}})

    async def busy(self, request: Request) -> Response:
        """503, throttled, with the wait in the body (a gateway that answers 503 when busy)."""
        return JSONResponse({"code": 42900, "wait_s": 7}, 503)


async def _form(request: Request) -> dict[str, str]:
    """A form-urlencoded body (read by hand: the test server needs no multipart library)."""
    return {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}


def _local(row: Mapping[str, Any]) -> str:
    """An item's update time in Asia/Shanghai, as the events API compares them."""
    return str(row["updated"])


@pytest.fixture
def api(serve_app: Callable[[Any, int], None]) -> TestAPI:
    port = free_port()
    served = TestAPI(base_url=f"http://127.0.0.1:{port}")
    serve_app(served.app(), port)
    return served


Make = Callable[..., Connector]


@pytest.fixture
def rest(api: TestAPI, ctx: ConnectorContext, tmp_path: Path) -> Iterator[Make]:
    """Write a connectors.yaml with one rest connector described by `description`, load it
    as the product does, and make the connector."""

    def make(
        description: Mapping[str, Any],
        credentials: Mapping[str, str] | None = None,
        context: ConnectorContext | None = None,
    ) -> Connector:
        entry = {
            "vendor": "rest",
            "base_url": api.base_url,
            "credentials": {name: {"env": env} for name, env in (credentials or {}).items()},
            "declarative": description,
        }
        (tmp_path / "connectors.yaml").write_text(yaml.safe_dump({"test_api": entry}), "utf-8")
        config = load_config(tmp_path, ENV)
        return make_connector(config.connectors["test_api"], context or ctx)

    return make
