"""What every Seeyon A8 API family shares: ids, answers, refusals, the authenticated call, and
the emulator's state (credentials, rate limit). The contract is docs/sandbox/seeyon.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette import responses
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import SandboxStore, SlidingWindow, TokenState
from sync_pipeline.devtools.sandbox.emulator import Emulator

log = logging.getLogger(__name__)

PLATFORM = "seeyon"
REST = "/seeyon/rest"
APP_NAME = "collaboration"  # bpm calls' appName for 协同 (form flows included)
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000  # larger pageSize is capped (sandbox choice)
RATE_LIMIT_PER_S = 100  # per token; sandbox-chosen: Seeyon documents none
DEFAULT_TOKEN_TTL_S = 900  # 15 minutes (unconfirmed), setting `token_ttl_s`

# Business answer codes (HTTP 200, `{"code": int, "message", "data"}`); 0 is success. Seeyon
# documents only 0; the others are the sandbox's own, one per kind of refusal.
OK = 0
BAD_PARAM = 1001
NOT_FOUND = 1002
NO_PERMISSION = 1003
ALREADY_DONE = 1004
# The auth filter's answer: HTTP 401 with a *string* code (observed on real A8 servers).
AUTH_CODE = "1010"


SERVER_TZ = timezone(timedelta(hours=8))  # A8 shows form dates in server time: China time
FORM_TIME_FMT = "%Y-%m-%d %H:%M"


def fmt_time(ms: int) -> str:
    """A date-time form value as A8 shows it: "yyyy-MM-dd HH:mm", server time."""
    return datetime.fromtimestamp(ms / 1000, SERVER_TZ).strftime(FORM_TIME_FMT)


def long_id(*parts: object) -> int:
    """A Seeyon-style id: a signed 64-bit integer (often negative), deterministic per key."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def fresh_id() -> int:
    return long_id("new", secrets.token_hex(16))


ACCOUNT_ID = long_id("account", 1)  # the one 单位 (orgAccount) of the sandbox's company
ACCOUNT_NAME = "Example Co."
POST_ID = long_id("post", "staff")
LEVEL_ID = long_id("level", "staff")


# Partial expression indexes over the shared objects table: a member's affair lists, a flow's
# affairs and a workitem's affair stay index lookups with a million seeded flows. Queries must
# spell the same expressions and the literal platform/kind for SQLite to use them.
AFFAIR_INDEXES = tuple(
    f"CREATE INDEX IF NOT EXISTS seeyon_affairs_by_{name} ON objects ({columns})"
    " WHERE platform = 'seeyon' AND kind = 'affair'"
    for name, columns in (
        (
            "member",
            "json_extract(body, '$.memberId'), json_extract(body, '$.state'), updated_ms, id",
        ),
        ("flow", "json_extract(body, '$.objectId')"),
        ("workitem", "json_extract(body, '$.subObjectId')"),
    )
)

_AFFAIRS = "SELECT body FROM objects WHERE platform = 'seeyon' AND kind = 'affair'"
AFFAIRS_OF_FLOW = _AFFAIRS + " AND json_extract(body, '$.objectId') = ?"
AFFAIR_OF_WORKITEM = _AFFAIRS + " AND json_extract(body, '$.subObjectId') = ?"


class JSONResponse(responses.JSONResponse):
    """Seeyon's JSON answers: UTF-8, non-ASCII kept as is."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


class Refused(Exception):
    """A business refusal: HTTP 200 with a non-zero `code` (see the codes above)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"code": self.code, "message": self.message, "data": None})


def auth_failure(message: str) -> JSONResponse:
    return JSONResponse({"code": AUTH_CODE, "message": message}, status_code=401)


def success(data: Any) -> JSONResponse:
    return JSONResponse({"code": OK, "message": "", "data": data})


@dataclass(frozen=True)
class Call:
    """One authenticated REST call."""

    token: str
    member_id: int | None  # the member the token is bound to (loginName), if any
    params: Mapping[str, str]  # query string
    path_params: Mapping[str, str]
    body: Any  # parsed JSON body, or None
    path: str
    method: str

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"

    def int_param(self, name: str, default: int) -> int:
        raw = self.params.get(name, "").strip()
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            raise Refused(BAD_PARAM, f"{name} must be an integer, not {raw!r}") from None

    def page(self) -> tuple[int, int]:
        """(pageNo from 1, pageSize capped), from the query string."""
        number = max(1, self.int_param("pageNo", 1))
        size = self.int_param("pageSize", DEFAULT_PAGE_SIZE)
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        return number, size

    def id_path(self, name: str) -> int:
        raw = self.path_params.get(name, "")
        try:
            return int(raw)
        except ValueError:
            raise Refused(BAD_PARAM, f"{name} must be a numeric id, not {raw!r}") from None

    def json_object(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise Refused(BAD_PARAM, "the body must be a JSON object")
        return self.body


def flip_info(rows: list[Any], total: int, page: int, size: int) -> dict[str, Any]:
    """One page in CTP's FlipInfo shape: the rows under `data`, with the totals."""
    return {
        "page": page,
        "size": size,
        "pages": (total + size - 1) // size,
        "total": total,
        "needTotal": True,
        "data": rows,
    }


class SeeyonBase(Emulator):
    """The Seeyon emulator's state and the helpers its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._creds = self._credentials_once()
        self._limiter = SlidingWindow()
        self._lock = threading.Lock()  # read-modify-write of one flow at a time
        with store.write() as conn:
            for statement in AFFAIR_INDEXES:
                conn.execute(statement)

    # -- credentials -------------------------------------------------------------------------
    def _credentials_once(self) -> dict[str, str]:
        """The REST account (系统管理 → REST 用户), generated once and kept in the store."""
        kept = self.store.setting(PLATFORM, "credentials")
        if kept is not None:
            return dict(json.loads(kept))
        fresh = {"restUser": "sync-rest", "restPassword": secrets.token_urlsafe(18)}
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO settings (platform, key, value)"
                " VALUES (?, 'credentials', ?)",
                (PLATFORM, json.dumps(fresh)),
            )
            row = conn.execute(
                "SELECT value FROM settings WHERE platform = ? AND key = 'credentials'",
                (PLATFORM,),
            ).fetchone()
        return dict(json.loads(row[0]))

    def credentials(self) -> dict[str, str]:
        """The REST user and password, and the company's orgAccountId (org lists take it)."""
        return {**self._creds, "orgAccountId": str(ACCOUNT_ID)}

    def throttle_response(self) -> Response:
        return JSONResponse(
            {"code": "1429", "message": "request frequency limit exceeded, retry after 1 s"},
            status_code=429,
            headers={"Retry-After": "1"},
        )

    def number_setting(self, key: str, default: float) -> float:
        raw = self.store.setting(PLATFORM, key)
        try:
            return default if raw is None else float(raw)
        except ValueError:
            log.warning("seeyon setting %s=%r is not a number; using %s", key, raw, default)
            return default

    def rate_limited(self, key: str) -> bool:
        scale = self.number_setting("rate_limit_scale", 1.0)
        if scale <= 0:
            return False
        return not self._limiter.allow((key,), max(1, round(RATE_LIMIT_PER_S * scale)), 1.0)

    # -- affairs -----------------------------------------------------------------------------
    def _affairs_where(self, sql: str, value: int) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.store.conn().execute(sql, (value,))]

    def affairs_of(self, summary_id: int) -> list[dict[str, Any]]:
        return self._affairs_where(AFFAIRS_OF_FLOW, summary_id)

    def affair_of_workitem(self, workitem: int) -> dict[str, Any] | None:
        found = self._affairs_where(AFFAIR_OF_WORKITEM, workitem)
        return found[0] if found else None

    # -- members -----------------------------------------------------------------------------
    def member(self, member_id: int) -> dict[str, Any] | None:
        return self.store.get(PLATFORM, "member", str(member_id))

    def member_by(self, field: str, value: str) -> dict[str, Any] | None:
        found = self.store.list(PLATFORM, "member", equals={field: value}, limit=1)
        return found[0] if found else None

    # -- the authenticated call --------------------------------------------------------------
    def rest(self, fn: Callable[[Call], Response]) -> Callable[[Request], Awaitable[Response]]:
        """Token from the `token` header or query parameter, then `fn` in a worker thread."""

        async def endpoint(request: Request) -> Response:
            token = request.headers.get("token") or request.query_params.get("token") or ""
            if self.rate_limited(token):
                return self.throttle_response()
            state, owner = self.store.token_state(PLATFORM, token)
            if state != TokenState.OK or owner is None:
                # Never echo the token: it is a credential.
                return auth_failure("被迫下线" if not token else "Invalid token")
            raw = await request.body()
            body: Any = None
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError:
                    return Refused(BAD_PARAM, "the body is not JSON").response()
            call = Call(
                token=token,
                member_id=int(owner) if owner.lstrip("-").isdigit() else None,
                params=dict(request.query_params),
                path_params={k: str(v) for k, v in request.path_params.items()},
                body=body,
                path=request.url.path,
                method=request.method,
            )
            try:
                return await run_in_threadpool(fn, call)
            except Refused as refused:
                return refused.response()

        return endpoint
