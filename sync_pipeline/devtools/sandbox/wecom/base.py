"""What every WeCom API family shares: ids, errors, the token and rate-limit check around
each call, opaque cursors, and the emulator's state.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import threading
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.core import (
    SandboxStore,
    SlidingWindow,
    TokenState,
    scaled_limit,
)
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.world import DAY_MS, Approval, Person, World
from sync_pipeline.devtools.sandbox.wxcrypto import new_aes_key, random_text

PLATFORM = "wecom"
TOKEN_TTL_S = 7200
CST_MS = 8 * 3_600_000  # WeCom days start at midnight China time (UTC+8)

# Documented limits: (calls, window seconds) per (corp, API). platform-apis.md §1.3.
LIMITS: dict[str, tuple[int, float]] = {
    "oa/getapprovalinfo": (600, 60.0),
    "oa/getapprovaldetail": (600, 60.0),
    "checkin/getcheckindata": (600, 60.0),
    "checkin/getcheckin_daydata": (100, 60.0),
}
TEMPLATE_NAMES = {"leave": "请假", "expense": "报销", "general": "通用审批"}

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class WeComError(Exception):
    """An answer with a non-zero errcode; WeCom still says HTTP 200."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def answer_error(errcode: int, errmsg: str) -> JSONResponse:
    # WeCom appends a hint and a link to its error-code lookup to every errmsg.
    hint = f"{int(time.time())}-{secrets.token_hex(4)}"
    more = f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    return JSONResponse({"errcode": errcode, "errmsg": f"{errmsg}, hint: [{hint}], {more}"})


def userid_for(person: Person) -> str:
    """WeCom userids are chosen by the admin; the sandbox uses "wang.wei7"-style ones."""
    return f"{person.name.lower().replace(' ', '.')}{person.index}"


def department_id(world_department: str) -> int:
    return int(world_department[1:])  # "d1" is WeCom's root department 1


TEMPLATE_IDS = {  # WeCom template ids are 40-odd opaque characters; these are fixed per template
    t: "C4" + hashlib.sha256(f"wecom-template/{t}".encode()).hexdigest()[:38].upper()
    for t in TEMPLATE_NAMES
}


def sp_no_for(approval: Approval) -> str:
    """sp_no is the apply date (China time) plus a sequence: "20260115" + "000123"."""
    return f"{apply_date((approval.created_ms + CST_MS) // DAY_MS)}{approval.number:06d}"


@functools.lru_cache(maxsize=4096)
def apply_date(day: int) -> str:
    """yyyyMMdd of a day number since 1970; cached, as strftime dominated seeding time."""
    return datetime.fromtimestamp(day * 86400, UTC).strftime("%Y%m%d")


def as_int(value: Any, name: str, errcode: int) -> int:
    """WeCom takes some integers as JSON strings (starttime in the doc's own example)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise WeComError(errcode, f"invalid {name}") from None


class WeComBase(Emulator):
    """The WeCom emulator's state and the plumbing its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = SlidingWindow()
        self._write_lock = threading.Lock()  # check-then-write: dedupe keys, codes, decisions
        self._creds: dict[str, str] | None = None
        self._cache_lock = threading.Lock()  # credentials and the world, built once
        self._world_cache: tuple[str, World, dict[str, str]] | None = None

    # -- the seam ----------------------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        with self._cache_lock:
            if self._creds is None:
                saved = self.store.setting(PLATFORM, "credentials")
                if saved is None:
                    creds = {
                        "corpid": "ww" + secrets.token_hex(8),
                        "corpsecret": random_text(43),
                        "agentid": "1000002",
                        "token": random_text(16),
                        "encoding_aes_key": new_aes_key(),
                    }
                    creds.update({f"template_id.{t}": TEMPLATE_IDS[t] for t in TEMPLATE_NAMES})
                    self.store.set_setting(PLATFORM, "credentials", json.dumps(creds))
                    saved = json.dumps(creds)
                self._creds = dict(json.loads(saved))
            return dict(self._creds)

    def throttle_response(self) -> Response:
        return answer_error(45009, "api freq out of limit")

    # -- plumbing ----------------------------------------------------------------------------
    def _api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Token check, rate limit and body parsing around one handler, in WeCom's words."""
        name = handler.__name__
        api = next((key for key in LIMITS if key.endswith("/" + name)), name)

        async def endpoint(request: Request) -> Response:
            args: dict[str, Any] = dict(request.query_params)
            if request.method == "POST":
                raw = await request.body()
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    return answer_error(47001, "data format error")
                if not isinstance(body, dict):
                    return answer_error(47001, "data format error")
                args = {**args, **body}
            return await run_in_threadpool(self._call, handler, api, request, args)

        return endpoint

    def _call(self, handler: Handler, api: str, request: Request, args: dict[str, Any]) -> Response:
        token = request.query_params.get("access_token")
        if not token:
            return answer_error(41001, "access_token missing")
        state, app = self.store.token_state(PLATFORM, token)
        if state == TokenState.EXPIRED:
            return answer_error(42001, "access_token expired")
        if state != TokenState.OK or app is None:
            return answer_error(40014, "invalid access_token")
        if api in LIMITS:
            calls, window_s = LIMITS[api]
            limit = scaled_limit(self.store, PLATFORM, calls)
            corpid = self.credentials()["corpid"]
            if limit is not None and not self._windows.allow((corpid, api), limit, window_s):
                return self.throttle_response()
        try:
            result = handler(app, args)
        except WeComError as exc:
            return answer_error(exc.errcode, exc.errmsg)
        return JSONResponse({"errcode": 0, "errmsg": "ok", **result})

    @staticmethod
    def _cursor(offset: int) -> str:
        return hashlib.sha1(str(offset).encode()).hexdigest()[:8] + format(offset, "x")  # noqa: S324

    def _offset(self, cursor: Any, errcode: int) -> int:
        """The position an opaque cursor stands for; a forged one is refused."""
        if cursor in ("", None):
            return 0
        text = str(cursor)
        try:
            offset = int(text[8:], 16)
        except ValueError:
            raise WeComError(errcode, "invalid cursor") from None
        if self._cursor(offset) != text:
            raise WeComError(errcode, "invalid cursor")
        return offset

    @staticmethod
    def _public(row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row without the sandbox's own bookkeeping fields (leading underscore)."""
        return {k: v for k, v in row.items() if not k.startswith("_")}

    # -- what one family asks of another -----------------------------------------------------
    @abstractmethod
    def _info(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An approval's `info` (approvals.py)."""

    @abstractmethod
    def _new_response_code(self, task_id: str) -> str:
        """A fresh response_code for a template card (messages.py)."""
