"""What every DingTalk API family shares: ids, both families' errors, the token, QPS and
quota checks around each call, and the emulator's state.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import uuid
from abc import abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
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
from sync_pipeline.devtools.sandbox.world import Person, World
from sync_pipeline.devtools.sandbox.wxcrypto import new_aes_key, random_text

PLATFORM = "dingtalk"
QPS_PER_APP_API = 20  # internal apps: 20 calls a second per app per API
CHINA = timezone(timedelta(hours=8))  # DingTalk dates without a zone are China time
CST_MS = 8 * 3_600_000
TEMPLATE_NAMES = {"leave": "请假", "expense": "报销", "general": "通用审批"}

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class ApiError(Exception):
    """A new-API (/v1.0) refusal: HTTP status plus {code, requestid, message}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message = status, code, message


class OapiError(Exception):
    """An old-API refusal: HTTP 200 with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(errcode, errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def request_id() -> str:
    return str(uuid.uuid4()).upper()


def api_error(status: int, code: str, message: str) -> JSONResponse:
    body = {"code": code, "requestid": request_id(), "message": message}
    return JSONResponse(body, status_code=status)


def oapi_error(errcode: int, errmsg: str) -> JSONResponse:
    return JSONResponse({"errcode": errcode, "errmsg": errmsg, "request_id": random_text(12)})


def invalid(message: str) -> ApiError:
    # DingTalk's exact codes for bad parameters are unconfirmed; HTTP 400 is what it answers.
    return ApiError(400, "InvalidParameter", message)


def missing(name: str) -> ApiError:
    return ApiError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def userid_for(person: Person) -> str:
    """DingTalk userIds are long digit strings; derived from the employee number, so stable."""
    digest = int(hashlib.sha256(f"dingtalk-user/{person.employee_no}".encode()).hexdigest(), 16)
    return f"01{digest % 10**16:016d}"


def dept_id_for(world_department: str) -> int:
    return 1 if world_department == "d1" else 900_000_000 + int(world_department[1:])


PROCESS_CODES = {
    t: "PROC-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"dingtalk-process/{t}")).upper()
    for t in TEMPLATE_NAMES
}


def conversation_id_for(group_id: str) -> str:
    digest = hashlib.sha256(f"dingtalk-chat/{group_id}".encode()).hexdigest()
    return "cid" + digest[:22] + "=="


def as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be a number") from None


class DingTalkBase(Emulator):
    """The DingTalk emulator's state and the plumbing its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = SlidingWindow()
        self._write_lock = threading.Lock()
        self._quota: dict[tuple[str, str], int] = {}
        self._creds: dict[str, str] | None = None
        self._cache_lock = threading.Lock()  # credentials and the world, built once
        self._world_cache: tuple[str, World, dict[str, str]] | None = None
        # What receivers answered, held-back deliveries included: {event, status, acknowledged}
        self.callback_answers: deque[dict[str, Any]] = deque(maxlen=1000)

    # -- the seam ----------------------------------------------------------------------------
    def credentials(self) -> dict[str, str]:
        with self._cache_lock:
            if self._creds is None:
                saved = self.store.setting(PLATFORM, "credentials")
                if saved is None:
                    app_key = "ding" + random_text(16).lower()
                    creds = {
                        "appKey": app_key,
                        "appSecret": random_text(64),
                        "agentId": str(3_000_000_000 + secrets.randbelow(10**9)),
                        "corpId": "ding" + secrets.token_hex(16),
                        "robotCode": app_key,  # an internal app's robot code is its app key
                        "token": random_text(16),
                        "aes_key": new_aes_key(),
                    }
                    creds.update({f"processCode.{t}": c for t, c in PROCESS_CODES.items()})
                    saved = json.dumps(creds)
                    self.store.set_setting(PLATFORM, "credentials", saved)
                self._creds = dict(json.loads(saved))
            return dict(self._creds)

    def throttle_response(self) -> Response:
        # The seam gives no request, so this is the new API's answer; old-API callers get
        # errcode 90018 from the emulator's own limiter. HTTP 403 is observed, not documented.
        return api_error(
            403,
            "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
            "应用调用该接口的QPS超过限制",
        )

    # -- plumbing ----------------------------------------------------------------------------
    @staticmethod
    async def _args(request: Request) -> dict[str, Any] | None:
        """Query plus JSON body; None when the body is not a JSON object."""
        args: dict[str, Any] = dict(request.query_params)
        if request.method in ("POST", "PUT"):
            raw = await request.body()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return None
            if not isinstance(body, dict):
                return None
            args.update(body)
        return args

    def _new_api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            args = await self._args(request)
            if args is None:
                return api_error(400, "InvalidParameter", "request body is not a JSON object")
            token = request.headers.get("x-acs-dingtalk-access-token")
            return await run_in_threadpool(self._call_new, handler, request.url.path, token, args)

        return endpoint

    def _call_new(
        self, handler: Handler, api: str, token: str | None, args: dict[str, Any]
    ) -> Response:
        state, app = self.store.token_state(PLATFORM, token)
        if state != TokenState.OK or app is None:
            # Observed: an unknown or expired token is HTTP 400 InvalidAuthentication.
            return api_error(400, "InvalidAuthentication", "不合法的access_token")
        if not self._within_qps(app, api):
            return self.throttle_response()
        if not self._within_quota(app):
            return api_error(403, "Forbidden.AccessDenied.ApiCountLimitForOrg", "超出月度调用量")
        try:
            return JSONResponse(handler(app, args))
        except ApiError as exc:
            return api_error(exc.status, exc.code, exc.message)

    def _old_api(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            args = await self._args(request)
            if args is None:
                return oapi_error(40035, "不合法的参数: body is not a JSON object")
            return await run_in_threadpool(self._call_old, handler, request.url.path, args)

        return endpoint

    def _call_old(self, handler: Handler, api: str, args: dict[str, Any]) -> Response:
        state, app = self.store.token_state(PLATFORM, args.get("access_token"))
        if state == TokenState.EXPIRED:
            return oapi_error(42001, "access_token超时")
        if state != TokenState.OK or app is None:
            return oapi_error(40014, "不合法的access_token")
        if not self._within_qps(app, api):
            # 90018 for the per-app limit is the platform notes' reading; unconfirmed.
            return oapi_error(90018, "当前应用调用该接口的并发量超过限制")
        if not self._within_quota(app):
            return oapi_error(90020, "超出月度调用量")
        args.pop("access_token", None)
        try:
            result = handler(app, args)
        except OapiError as exc:
            return oapi_error(exc.errcode, exc.errmsg)
        return JSONResponse({"errcode": 0, "errmsg": "ok", **result, "request_id": random_text(12)})

    def _within_qps(self, app: str, api: str) -> bool:
        limit = scaled_limit(self.store, PLATFORM, QPS_PER_APP_API)
        return limit is None or self._windows.allow((app, api), limit, 1.0)

    def _within_quota(self, app: str) -> bool:
        quota = int(self.store.setting(PLATFORM, "monthly_quota", "0") or 0)
        if quota <= 0:
            return True
        month = datetime.now(UTC).strftime("%Y-%m")
        with self._write_lock:
            used = self._quota.get((app, month), 0)
            if used >= quota:
                return False
            self._quota[(app, month)] = used + 1
            return True

    # -- what one family asks of another -----------------------------------------------------
    @abstractmethod
    def _load_instance(self, instance_id: str) -> dict[str, Any] | None:
        """An approval instance by id, with its `result` (workflow.py)."""

    @abstractmethod
    def _save_instance(self, row: Mapping[str, Any]) -> None:
        """Store an approval instance (workflow.py)."""
