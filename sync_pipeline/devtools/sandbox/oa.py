"""Weaver e-cology 9 (泛微 E9) emulator: the OA side of every flow (platform-apis.md §7.1).

Written from E9's documented and observed contract, never from our connector:

* Auth is all headers. `regist` (appid, cpk) hands out `secret` and the server RSA key `spk`;
  `applytoken` (appid, secret = b64(RSA_PKCS1v1_5(spk, secret)), time) hands out a token;
  business calls carry appid, token and userid = b64(RSA_PKCS1v1_5(spk, OA user id)). The acting
  user is the decrypted `userid` header; body `userId` fields are ignored. A missing or expired
  token answers HTTP 200 `{"msg": "token不存在或者超时：<token>", "code": -1, "status": false}`.
* Workflow calls (`/api/workflow/paService/...`) take form-urlencoded bodies with JSON-valued
  fields as strings. Lists answer a bare array, their `...Count` twins a bare integer, actions
  `{code: SUCCESS | PARAM_ERROR | NO_PERMISSION | USER_EXCEPTION, errMsg}`.
* HRM lists (`/api/hrm/resful/...`, E9's own spelling) answer `{code: "1", data: {dataList,
  totalSize}}`; unified todo (`/rest/ofs/...`, 异构系统统一待办) answers `{operResult, message}`.

Sandbox-documented extensions (E9 has no public contract for them; a deployment would expose
them through custom actions or cube pages):

* `conditions.lastOperateTimeFrom` / `lastOperateTimeTo` ("yyyy-MM-dd HH:mm:ss", server time
  UTC+8; From inclusive, To exclusive) select requests by last operate time. Every list is
  ordered by (lastOperateTime, requestId) ascending, which is what makes modified-since paging
  stable (E9's own default order is newest first (unconfirmed)).
* `/api/proj/...` project progress records and `/api/kq/monthReport/...` monthly attendance.
* An outbound change webhook: on every approval change, POST JSON to setting `webhook_url`
  with `X-OA-Timestamp` and `X-OA-Signature = hex(HMAC-SHA256(webhook_secret, ts + "." +
  body))`.
* A rate limit of 100 calls/s per appid (E9 itself documents none; a gateway in front of it
  usually has one), answered with HTTP 429, `Retry-After: 1` and code REQUEST_FREQUENCY_LIMIT.
  Setting `rate_limit_scale` scales it; 0 disables it.

Only API calls are written to the ledger: the simulated users of `press` and the admin
transitions act inside the OA, not through its API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import math
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette import responses
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.core import SandboxStore, TokenState, deliver_callback, now_ms
from sync_pipeline.devtools.sandbox.emulator import Emulator, PressError
from sync_pipeline.devtools.sandbox.world import Approval, World

log = logging.getLogger(__name__)

PLATFORM = "oa"
ADMIN_USER_ID = "1"  # E9's built-in 系统管理员; sees every request, is not an HRM resource
HEAD_USER_ID = "101"  # E00001, the company head; second approver of requests created via API
OA_TZ = timezone(timedelta(hours=8))  # E9 answers in server local time; ours is China time
TIME_FMT = "%Y-%m-%d %H:%M:%S"
DEFAULT_TOKEN_TTL_S = 1800  # applytoken `time` default (unconfirmed)
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000  # larger pageSize is capped, as gateways do (unconfirmed for E9)
RATE_LIMIT_PER_S = 100  # sandbox-chosen, see module docstring
SEED_BATCH = 5000
PA = "/api/workflow/paService"

LOGTYPE_APPROVE, LOGTYPE_SAVE, LOGTYPE_SUBMIT, LOGTYPE_REJECT = "0", "1", "2", "3"
LOGTYPE_COMMENT = "9"  # 批注
LOGTYPE_WITHDRAW = "r"  # 撤回; E9's letter for it is unconfirmed
OFS_ISREMARK = {"0": "todo", "2": "handled", "4": "done", "8": "cc", "9": "cc read"}
OFS_REQUIRED = (
    "syscode",
    "flowid",
    "requestname",
    "workflowname",
    "nodename",
    "pcurl",
    "isremark",
    "viewtype",
    "creator",
    "createdatetime",
    "receiver",
    "receivedatetime",
    "receivets",
)


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    type_id: str
    type_name: str
    form_id: str
    fields: tuple[tuple[str, str], ...]  # (fieldName, fieldShowName) of the main table

    @property
    def table(self) -> str:
        return f"formtable_main_{self.form_id.lstrip('-')}"

    def node_id(self, level: int) -> str:
        """Node ids: creation node wf*100, approval level k wf*100+k, archive wf*100+99."""
        return str(int(self.id) * 100 + level)

    def base_info(self) -> dict[str, str]:
        return {
            "workflowId": self.id,
            "workflowName": self.name,
            "workflowTypeId": self.type_id,
            "workflowTypeName": self.type_name,
            "formId": self.form_id,
        }


WORKFLOWS = {
    "leave": Workflow(
        "1001",
        "请假流程 Leave request",
        "10",
        "人事流程",
        "-101",
        (
            ("leave_type", "假期类型"),
            ("start_time", "开始时间"),
            ("end_time", "结束时间"),
            ("days", "天数"),
            ("reason", "事由"),
        ),
    ),
    "expense": Workflow(
        "1002",
        "费用报销 Expense claim",
        "20",
        "财务流程",
        "-102",
        (("amount", "金额"), ("currency", "币种"), ("category", "类别"), ("reason", "事由")),
    ),
    "general": Workflow(
        "1003",
        "通用审批 General request",
        "30",
        "综合流程",
        "-103",
        (("subject", "主题"), ("detail", "说明")),
    ),
}
WORKFLOW_BY_ID = {wf.id: (template, wf) for template, wf in WORKFLOWS.items()}
ARCHIVE_LEVEL = 99


def oa_user_id(employee_no: str) -> str:
    """OA user ids are E9-style integers: E00001 -> "101", E00002 -> "102"..."""
    return str(100 + int(employee_no[1:]))


def rsa_encrypt(spk: str, text: str) -> str:
    """b64(RSA_PKCS1v1_5(spk, text)): how E9 clients encrypt `secret` and `userid`."""
    public = serialization.load_der_public_key(base64.b64decode(spk))
    if not isinstance(public, rsa.RSAPublicKey):
        raise TypeError("spk is not an RSA public key")
    return base64.b64encode(public.encrypt(text.encode(), padding.PKCS1v15())).decode()


def fmt_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, OA_TZ).strftime(TIME_FMT)


def parse_time(text: str) -> int:
    """E9 time text (server time) -> epoch ms; a bare date means its midnight."""
    text = text.strip()
    pattern = TIME_FMT if " " in text else "%Y-%m-%d"
    return int(datetime.strptime(text, pattern).replace(tzinfo=OA_TZ).timestamp() * 1000)


def _floor_s(ms: int) -> int:
    return ms - ms % 1000  # E9 keeps times to the second


class JSONResponse(responses.JSONResponse):
    """E9's JSON answers. A lone surrogate (a Java string cut between the halves of a pair)
    travels in JSON as a \\ud800 escape, which UTF-8 cannot carry raw: such an answer is sent
    with every non-ASCII character escaped, as a Java JSON writer may."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


class Refused(Exception):
    """An E9 business refusal: `code` with its errMsg, answered with HTTP 200."""

    def __init__(
        self, code: str, message: str, err: Mapping[str, Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(code, message)
        self.code, self.message, self.err, self.extra = code, message, dict(err or {}), extra

    def response(self) -> JSONResponse:
        err_msg = {"msg": self.message, **self.err}
        return JSONResponse({"code": self.code, "errMsg": err_msg, **self.extra})


def _no_permission(isremark: int) -> Refused:
    # Shape observed from E9 when the user may not act on the request.
    return Refused(
        "NO_PERMISSION",
        "no permission to act on this request",
        reqFailMsg={
            "keyParameters": {},
            "msgInfo": {},
            "msgType": "NO_REQUEST_SUBMIT_PERMISSION",
            "otherParams": {},
        },
        err={"isremark": isremark},
    )


def _auth_failure(msg: str) -> JSONResponse:
    """E9's auth filter answer: HTTP 200, `status: false` (R-token when the token is stale)."""
    return JSONResponse({"msg": msg, "code": -1, "msgShowType": "none", "status": False})


def _success(data: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": "SUCCESS", "errMsg": {}}
    if data is not None:
        body["data"] = data
    return JSONResponse(body)


class SlidingWindow:
    """Per-key call timestamps over the last second; thread-safe."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int, window_s: float = 1.0) -> bool:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window_s:
                calls.popleft()
            if len(calls) >= limit:
                return False
            calls.append(now)
            return True


@dataclass(frozen=True)
class Call:
    """One authenticated business call."""

    appid: str
    user: str  # the decrypted `userid` header
    params: dict[str, str]
    path: str

    def int_param(self, name: str, default: int) -> int:
        raw = self.params.get(name, "")
        if raw.strip() == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise Refused("PARAM_ERROR", f"{name} must be an integer, not {raw!r}") from None

    def json_param(self, name: str) -> Any:
        raw = self.params.get(name, "")
        if raw.strip() == "":
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise Refused("PARAM_ERROR", f"{name} is not valid JSON") from None

    def required(self, name: str) -> str:
        value = self.params.get(name, "").strip()
        if not value:
            raise Refused("PARAM_ERROR", f"{name} is required")
        return value


async def _params(request: Request) -> dict[str, str]:
    """Query string plus body, form-urlencoded or JSON; JSON values that are not strings are
    kept as JSON text, the way E9 clients send JSON-valued fields."""
    params = dict(request.query_params)
    if request.method != "POST":
        return params
    raw = await request.body()
    if "json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                params[str(key)] = value if isinstance(value, str) else json.dumps(value)
        return params
    params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


class OAEmulator(Emulator):
    platform = PLATFORM
    title = "Weaver e-cology 9 (OA)"
    port_offset = 1

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._creds = self._credentials_once()
        self._private_key = serialization.load_pem_private_key(
            self._creds.pop("_private_pem").encode(), password=None
        )
        self._userids: dict[str, str | None] = {}  # encrypted userid header -> user id
        self._limiter = SlidingWindow()
        self._lock = threading.Lock()  # read-modify-write of one object at a time
        self._outbox: queue.Queue[tuple[str, bytes, dict[str, str]]] = queue.Queue()
        self._courier: threading.Thread | None = None

    # -- credentials -------------------------------------------------------------------------
    def _credentials_once(self) -> dict[str, str]:
        """Generated on first use and kept in the store; the first writer wins across processes."""
        kept = self.store.setting(PLATFORM, "credentials")
        if kept is not None:
            return dict(json.loads(kept))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fresh = {
            "appid": str(uuid.uuid4()).upper(),
            "secret": str(uuid.uuid4()),
            "_private_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "spk": base64.b64encode(
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).decode(),
            "webhook_secret": secrets.token_hex(16),
            "ofs_syscode": "SYNC",
        }
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
        """appid, secret and spk (what regist would hand out), the user the sync acts as, the
        webhook signing secret and the unified-todo system code."""
        return {**self._creds, "userid": ADMIN_USER_ID}

    def encrypt(self, text: str) -> str:
        """What an E9 client sends in the `secret` and `userid` headers."""
        return rsa_encrypt(self._creds["spk"], text)

    def _decrypt(self, text: str) -> str | None:
        key = self._private_key
        assert isinstance(key, rsa.RSAPrivateKey)  # noqa: S101 - our own key
        try:
            return key.decrypt(base64.b64decode(text), padding.PKCS1v15()).decode()
        except ValueError:  # not base64, wrong key, bad padding, not UTF-8
            return None

    # -- routes ------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        business: list[tuple[str, Callable[[Call], Response], list[str]]] = [
            *(
                (f"{PA}/get{name}WorkflowRequestList", self._lister(name), ["POST"])
                for name in LISTS
            ),
            *(
                (f"{PA}/get{name}WorkflowRequestCount", self._counter(name), ["POST"])
                for name in LISTS
            ),
            (f"{PA}/getWorkflowRequest", self._detail, ["GET", "POST"]),
            (f"{PA}/getRequestStatus", self._status, ["GET", "POST"]),
            (f"{PA}/getRequestOperatorInfo", self._operators, ["GET", "POST"]),
            (f"{PA}/getRequestLog", self._request_log, ["GET", "POST"]),
            (f"{PA}/doCreateRequest", self._create, ["POST"]),
            (f"{PA}/submitRequest", self._action("approve"), ["POST"]),
            (f"{PA}/rejectRequest", self._action("reject"), ["POST"]),
            (f"{PA}/withdrawRequest", self._action("revoke"), ["POST"]),
            (f"{PA}/saveRequestLog", self._action("comment"), ["POST"]),
            ("/api/hrm/resful/getHrmUserInfoWithPage", self._hrm_users, ["POST"]),
            ("/api/hrm/resful/getHrmdepartmentWithPage", self._hrm_departments, ["POST"]),
            ("/api/proj/project/list", self._projects, ["POST"]),
            ("/api/proj/progress/list", self._progress_list, ["POST"]),
            ("/api/proj/progress/save", self._progress_save, ["POST"]),
            ("/api/proj/progress/comment", self._progress_comment, ["POST"]),
            ("/api/kq/monthReport/save", self._month_report_save, ["POST"]),
            ("/api/kq/monthReport/list", self._month_report_list, ["POST"]),
        ]
        ofs: list[tuple[str, Callable[[dict[str, Any]], tuple[bool, str]]]] = [
            ("/rest/ofs/ReceiveRequestInfoByJson", self._ofs_receive),
            ("/rest/ofs/deleteUserRequestInfoByJson", self._ofs_delete_user),
            ("/rest/ofs/deleteRequestInfoByJson", self._ofs_delete),
        ]
        return [
            Route("/api/ec/dev/auth/regist", self._regist, methods=["POST"]),
            Route("/api/ec/dev/auth/applytoken", self._applytoken, methods=["POST"]),
            *(Route(path, self._business(fn), methods=m) for path, fn, m in business),
            *(Route(path, self._ofs(path, fn), methods=["POST"]) for path, fn in ofs),
        ]

    def throttle_response(self) -> Response:
        return JSONResponse(
            {
                "code": "REQUEST_FREQUENCY_LIMIT",
                "errMsg": {"msg": "request frequency limit exceeded, retry after 1 s"},
            },
            status_code=429,
            headers={"Retry-After": "1"},
        )

    def _number_setting(self, key: str, default: float) -> float:
        """A numeric setting; an unusable value falls back to the default and is logged."""
        raw = self.store.setting(PLATFORM, key)
        try:
            return default if raw is None else float(raw)
        except ValueError:
            log.warning("oa setting %s=%r is not a number; using %s", key, raw, default)
            return default

    def _rate_limited(self, key: str) -> bool:
        scale = self._number_setting("rate_limit_scale", 1.0)
        if scale <= 0:
            return False
        return not self._limiter.allow(key, max(1, round(RATE_LIMIT_PER_S * scale)))

    # -- auth --------------------------------------------------------------------------------
    async def _regist(self, request: Request) -> Response:
        appid = request.headers.get("appid", "")
        if self._rate_limited(appid):
            return self.throttle_response()
        if appid != self._creds["appid"]:
            return _auth_failure(f"appid {appid or '(none)'} is not registered in ECOLOGY_BIZ_EC")
        if not request.headers.get("cpk"):
            return _auth_failure("cpk (client public key) is required")
        # Builds differ in spelling the secret's key ("secret" / "secrit"); clients must accept
        # both, so the sandbox lets a test pick with setting `regist_secret_key`.
        secret_key = self.store.setting(PLATFORM, "regist_secret_key", "secret") or "secret"
        return JSONResponse(
            {
                "msg": "ok",
                "code": 0,
                "msgShowType": "none",
                "status": True,
                secret_key: self._creds["secret"],
                "spk": self._creds["spk"],
            }
        )

    async def _applytoken(self, request: Request) -> Response:
        appid = request.headers.get("appid", "")
        if self._rate_limited(appid):
            return self.throttle_response()
        if appid != self._creds["appid"]:
            return _auth_failure(f"appid {appid or '(none)'} is not registered in ECOLOGY_BIZ_EC")
        secret = self._decrypt(request.headers.get("secret", ""))
        if secret is None:
            return _auth_failure("secret解密失败,请检查加密内容.")
        if not hmac.compare_digest(secret, self._creds["secret"]):
            return _auth_failure("认证信息错误！")
        try:
            asked = int(request.headers.get("time") or DEFAULT_TOKEN_TTL_S)
        except ValueError:
            asked = DEFAULT_TOKEN_TTL_S
        ttl = int(self._number_setting("token_ttl_s", asked))
        token = self.store.issue_token(PLATFORM, appid, ttl, token=str(uuid.uuid4()))
        return JSONResponse(
            {"msg": "获取成功!", "code": 0, "msgShowType": "none", "status": True, "token": token}
        )

    def _authenticate(self, request: Request) -> str | Response:
        """The acting OA user id, or E9's auth-filter answer."""
        appid = request.headers.get("appid", "")
        token = request.headers.get("token", "")
        state, owner = self.store.token_state(PLATFORM, token)
        if state != TokenState.OK or owner != appid:
            return _auth_failure(f"token不存在或者超时：{token}")
        encrypted = request.headers.get("userid", "")
        if encrypted not in self._userids:
            if len(self._userids) > 4096:
                self._userids.clear()
            self._userids[encrypted] = self._decrypt(encrypted) if encrypted else None
        user = self._userids[encrypted]
        if user is None:
            return _auth_failure("userid解密失败,请检查加密内容.")  # wording unconfirmed
        return user

    def _business(self, fn: Callable[[Call], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            params = await _params(request)
            appid = request.headers.get("appid", "")
            if self._rate_limited(appid):
                return self.throttle_response()
            user = self._authenticate(request)
            if isinstance(user, Response):
                return user
            if user != ADMIN_USER_ID and self.store.get(PLATFORM, "user", user) is None:
                return JSONResponse(
                    {"code": "USER_EXCEPTION", "errMsg": {"msg": f"user {user} does not exist"}}
                )
            call = Call(appid, user, params, request.url.path)
            try:
                return await run_in_threadpool(fn, call)
            except Refused as refused:
                return refused.response()

        return endpoint

    # -- workflow lists ----------------------------------------------------------------------
    def _lister(self, name: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            where, args = self._list_filter(name, call)
            page_no = max(1, call.int_param("pageNo", 1))
            page_size = call.int_param("pageSize", DEFAULT_PAGE_SIZE)
            page_size = DEFAULT_PAGE_SIZE if page_size < 1 else min(page_size, MAX_PAGE_SIZE)
            rows = self.store.conn().execute(
                f"SELECT body FROM objects WHERE {where} ORDER BY updated_ms, id"  # noqa: S608
                " LIMIT ? OFFSET ?",
                [*args, page_size, (page_no - 1) * page_size],
            )
            names = self._user_names()
            return JSONResponse([self._list_item(json.loads(r[0]), call.user, names) for r in rows])

        return handler

    def _counter(self, name: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            where, args = self._list_filter(name, call)
            sql = f"SELECT count(*) FROM objects WHERE {where}"  # noqa: S608
            return JSONResponse(int(self.store.conn().execute(sql, args).fetchone()[0]))

        return handler

    def _list_filter(self, name: str, call: Call) -> tuple[str, list[Any]]:
        """SQL over `objects` for one list and the caller's `conditions`.

        Literal platform/kind keep SQLite on the (platform, kind, updated_ms, id) index.
        """
        clauses = ["platform = 'oa'", "kind = 'approval'"]
        args: list[Any] = []
        user = call.user
        acted = "EXISTS (SELECT 1 FROM json_each(body, '$.actors') WHERE value = ?)"
        if name == "ToDo":
            clauses.append("json_extract(body, '$.currentOperatorId') = ?")
            args.append(user)
        elif name == "Handled":
            clauses.append(acted)
            clauses.append("coalesce(json_extract(body, '$.currentOperatorId'), '') != ?")
            args += [user, user]
        elif name == "My":
            clauses.append("json_extract(body, '$.creatorId') = ?")
            args.append(user)
        elif user != ADMIN_USER_ID:  # All: what the user may see; the admin sees everything
            clauses.append(f"({acted} OR json_extract(body, '$.currentOperatorId') = ?)")
            args += [user, user]
        conditions = call.json_param("conditions")
        if not isinstance(conditions, dict):
            raise Refused("PARAM_ERROR", "conditions must be a JSON object")
        more, more_args = _conditions(conditions)
        return " AND ".join(clauses + more), args + more_args

    def _list_item(self, body: Mapping[str, Any], user: str, names: Mapping[str, str]) -> Any:
        node = _node(body)
        return {
            "requestId": body["requestId"],
            "requestName": body["requestName"],
            "requestLevel": body["requestLevel"],
            "createTime": fmt_time(body["createTime"]),
            "creatorId": body["creatorId"],
            "creatorName": names.get(body["creatorId"], ""),
            "currentNodeId": node.node_id,
            "currentNodeName": node.name,
            "currentnodetype": node.node_type,
            "isbereject": "1" if body["state"] == "rejected" else "",
            "isremark": _isremark(body, user),
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
            "lastOperatorId": body["lastOperatorId"],
            "lastOperatorName": names.get(body["lastOperatorId"], ""),
            "receiveTime": fmt_time(body["lastOperateTime"]),
            "status": node.status,
            "userid": user,
            "workflowBaseInfo": WORKFLOW_BY_ID[body["workflowId"]][1].base_info(),
        }

    def _user_names(self) -> dict[str, str]:
        """Every user's name by id. Read from the JSON here: SQLite's json_extract turns a
        lone surrogate kept escaped (core.stored_json) into bytes that are not UTF-8."""
        rows = self.store.conn().execute(
            "SELECT id, body FROM objects WHERE platform = 'oa' AND kind = 'user'"
        )
        names = {str(i): str(json.loads(body).get("lastname")) for i, body in rows}
        return {ADMIN_USER_ID: "系统管理员", **names}

    # -- one request -------------------------------------------------------------------------
    def _visible(self, call: Call) -> dict[str, Any]:
        request_id = call.params.get("requestId") or call.params.get("requestid") or ""
        if not request_id.strip():
            raise Refused("PARAM_ERROR", "requestId is required")
        body = self.store.get(PLATFORM, "approval", request_id.strip())
        # E9 checks rights before it loads, so a request that does not exist is a permission
        # failure too (unconfirmed).
        if body is None or not _may_view(body, call.user):
            raise _no_permission(-1)
        return body

    def _detail(self, call: Call) -> Response:
        body = self._visible(call)
        names = self._user_names()
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        node = _node(body)
        can_edit = body.get("currentOperatorId") == call.user
        fields = [
            {
                "fieldId": f"{wf.id}{i:02d}",
                "fieldName": name,
                "fieldShowName": label,
                "fieldValue": body["form"].get(name, ""),
                "fieldShowValue": body["form"].get(name, ""),
                "fieldHtmlType": "1",
                "fieldType": "1",
                "fieldOrder": i,
                "view": True,
                "edit": can_edit,
                "mand": False,
            }
            for i, (name, label) in enumerate(wf.fields)
        ]
        data = {
            **{k: v for k, v in self._list_item(body, call.user, names).items() if k != "userid"},
            "canView": True,
            "canEdit": can_edit,
            "workflowMainTableInfo": {
                "tableDBName": wf.table,
                "requestRecords": [{"recordOrder": 0, "workflowRequestTableFields": fields}],
            },
            "workflowDetailTableInfos": [],
            "workflowRequestLogs": _logs_out(body, names),
        }
        data["currentNodeId"], data["currentNodeName"] = node.node_id, node.name
        return _success(data)

    def _status(self, call: Call) -> Response:
        body = self._visible(call)
        node = _node(body)
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        return _success(
            {
                "requestId": body["requestId"],
                "requestName": body["requestName"],
                "requestLevel": body["requestLevel"],
                "status": node.status,
                "currentNodeId": node.node_id,
                "currentNodeType": node.node_type,
                "creatorId": body["creatorId"],
                "isremark": int(_isremark(body, call.user) or -1),
                "workflowId": int(wf.id),
                "workflowBaseInfo": wf.base_info(),
            }
        )

    def _operators(self, call: Call) -> Response:
        """Who holds or held the request at each node (response shape unconfirmed)."""
        body = self._visible(call)
        names = self._user_names()
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        rows = []
        for level, operator in enumerate(body["chain"], start=1):
            done = [x for x in body["logs"] if x["operator"] == operator and x["level"] == level]
            if body.get("currentOperatorId") == operator and body["level"] == level:
                isremark = "0"
            elif done:
                isremark = "2"
            else:
                continue  # not reached yet
            received = _received_ms(body, level)
            rows.append(
                {
                    "userid": operator,
                    "username": names.get(operator, ""),
                    "nodeid": wf.node_id(level),
                    "nodename": f"审批{level}",
                    "isremark": isremark,
                    "receivedate": fmt_time(received)[:10],
                    "receivetime": fmt_time(received)[11:],
                    "operatedate": fmt_time(done[-1]["ms"])[:10] if done else "",
                    "operatetime": fmt_time(done[-1]["ms"])[11:] if done else "",
                }
            )
        return _success(rows)

    def _request_log(self, call: Call) -> Response:
        body = self._visible(call)
        paging = call.json_param("otherParams")
        logs = _logs_out(body, self._user_names())
        if isinstance(paging, dict) and paging.get("pageSize"):
            try:
                size = max(1, int(paging["pageSize"]))
                number = max(1, int(paging.get("pageNumber", 1)))
            except (TypeError, ValueError):
                raise Refused(
                    "PARAM_ERROR", "otherParams.pageSize/pageNumber must be integers"
                ) from None
            logs = logs[(number - 1) * size : number * size]
        return _success(logs)

    # -- workflow writes ---------------------------------------------------------------------
    def _create(self, call: Call) -> Response:
        workflow_id = call.params.get("workflowId", "").strip()
        if workflow_id not in WORKFLOW_BY_ID:
            # E9 reports a mapping error as workflowId 0 (platform-apis.md §7.1).
            raise Refused("PARAM_ERROR", f"workflowId {workflow_id or 0} does not exist")
        main_data = call.json_param("mainData") or []
        if not isinstance(main_data, list) or not all(
            isinstance(x, dict) and "fieldName" in x for x in main_data
        ):
            raise Refused("PARAM_ERROR", "mainData must be a JSON array of {fieldName, fieldValue}")
        form = {str(x["fieldName"]): str(x.get("fieldValue", "")) for x in main_data}
        template = WORKFLOW_BY_ID[workflow_id][0]
        name = call.params.get("requestName") or f"{WORKFLOWS[template].name} ({call.user})"
        body = self.create_approval(
            call.user,
            self._default_chain(call.user),
            template=template,
            title=name,
            form=form,
            remark=call.params.get("remark", ""),
            level=call.params.get("requestLevel", "0") or "0",
        )
        self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)
        return _success({"requestid": body["requestId"]})

    def _action(self, action: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            request_id = call.required("requestId")
            other = call.json_param("otherParams")
            if action == "approve" and isinstance(other, dict) and other.get("src") == "save":
                action_now = "save"
            else:
                action_now = action
            main_data = call.json_param("mainData") or []
            form = {}
            if isinstance(main_data, list):
                form = {
                    str(x["fieldName"]): str(x.get("fieldValue", ""))
                    for x in main_data
                    if isinstance(x, dict) and "fieldName" in x
                }
            self.transition(
                request_id, action_now, call.user, call.params.get("remark", ""), form=form
            )
            self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)
            return JSONResponse(
                {
                    "code": "SUCCESS",
                    "errMsg": {},
                    "reqFailMsg": {
                        "keyParameters": {},
                        "msgInfo": {},
                        "otherParams": {"doAutoApprove": "0"},
                    },
                }
            )

        return handler

    def _default_chain(self, creator: str) -> list[str]:
        """The department's first member, then the head: E9 would take it from the workflow."""
        user = self.store.get(PLATFORM, "user", creator)
        chain: list[str] = []
        if user is not None:
            members = self.store.list(
                PLATFORM, "user", equals={"departmentid": user["departmentid"]}
            )
            manager = min((m["id"] for m in members), key=int, default=None)
            chain = [x for x in (manager, HEAD_USER_ID) if x and x != creator]
        return list(dict.fromkeys(chain)) or [ADMIN_USER_ID]

    def create_approval(
        self,
        creator: str,
        approvers: Iterable[str],
        *,
        template: str = "general",
        title: str = "",
        form: Mapping[str, str] | None = None,
        remark: str = "",
        level: str = "0",
    ) -> dict[str, Any]:
        """A new pending request at its first approver; fires the webhook."""
        wf = WORKFLOWS[template]
        chain = [str(x) for x in approvers]
        if not chain:
            raise Refused("PARAM_ERROR", "a request needs at least one approver")
        at = _floor_s(now_ms())
        with self._lock:
            number = int(self.store.setting(PLATFORM, "next_request_no", "1") or "1")
            self.store.set_setting(PLATFORM, "next_request_no", str(number + 1))
        request_id = f"R{number:06d}"
        body: dict[str, Any] = {
            "requestId": request_id,
            "workflowId": wf.id,
            "requestName": title or f"{wf.name} #{number}",
            "requestLevel": level,
            "creatorId": creator,
            "createTime": at,
            "chain": chain,
            "state": "pending",
            "level": 1,
            "currentOperatorId": chain[0],
            "lastOperatorId": creator,
            "lastOperateTime": at,
            "form": {name: str((form or {}).get(name, "")) for name, _ in wf.fields},
            "logs": [_log(request_id, 0, creator, LOGTYPE_SUBMIT, 0, at, remark, [chain[0]])],
            "actors": [creator],
        }
        body["form"].update({k: str(v) for k, v in (form or {}).items()})
        self.store.put(PLATFORM, "approval", request_id, body, created_ms=at, updated_ms=at)
        self._notify("created", body)
        return body

    def transition(
        self,
        request_id: str,
        action: str,
        by: str,
        remark: str = "",
        *,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """approve | reject | revoke | comment | save as user `by`; bumps lastOperateTime.

        A decided request (approved, rejected, revoked) refuses approve, reject, save and
        revoke with NO_PERMISSION, as E9 does once nobody holds it; comments stay possible.
        Resubmitting a returned request is not modelled.
        """
        with self._lock:
            body = self.store.get(PLATFORM, "approval", request_id)
            if body is None or not _may_view(body, by):
                raise _no_permission(-1)
            at = max(_floor_s(now_ms()), body["lastOperateTime"])
            level = body["level"]
            current = body.get("currentOperatorId")
            pending = body["state"] == "pending"
            if action in ("approve", "reject", "save") and (not pending or current != by):
                raise _no_permission(2 if by in body["actors"] else -1)
            if action == "revoke" and (not pending or by != body["creatorId"]):
                raise _no_permission(2 if by in body["actors"] else -1)
            if action == "comment" and by not in (*body["actors"], current, ADMIN_USER_ID):
                raise _no_permission(-1)
            if action not in ("approve", "reject", "save", "revoke", "comment"):
                raise Refused("PARAM_ERROR", f"unknown action {action}")
            body["form"].update({k: str(v) for k, v in (form or {}).items()})
            logtype, log_level, received = {
                "approve": (LOGTYPE_APPROVE, level, []),
                "reject": (LOGTYPE_REJECT, level, [body["creatorId"]]),
                "save": (LOGTYPE_SAVE, level, []),
                "revoke": (LOGTYPE_WITHDRAW, 0, []),
                "comment": (LOGTYPE_COMMENT, level if pending else 0, []),
            }[action]
            if action == "approve":
                if level < len(body["chain"]):
                    body["level"], body["currentOperatorId"] = level + 1, body["chain"][level]
                    received = [body["chain"][level]]
                else:
                    body["state"], body["level"], body["currentOperatorId"] = (
                        "approved",
                        ARCHIVE_LEVEL,
                        None,
                    )
            elif action in ("reject", "revoke"):
                body["state"] = "rejected" if action == "reject" else "revoked"
                body["level"], body["currentOperatorId"] = 0, None
            index = len(body["logs"])
            body["logs"].append(
                _log(request_id, index, by, logtype, log_level, at, remark, received)
            )
            if by not in body["actors"]:
                body["actors"].append(by)
            if action != "save":
                body["lastOperatorId"], body["lastOperateTime"] = by, at
            self.store.put(
                PLATFORM,
                "approval",
                request_id,
                body,
                created_ms=body["createTime"],
                updated_ms=body["lastOperateTime"],
            )
        if action != "save":
            self._notify(EVENTS[action], body)
        return body

    # -- outbound webhook --------------------------------------------------------------------
    def _notify(self, event: str, body: Mapping[str, Any]) -> None:
        url = self.store.setting(PLATFORM, "webhook_url")
        if not url:
            return
        payload = {
            "event": f"request.{event}",
            "eventId": str(uuid.uuid4()),
            "requestId": body["requestId"],
            "workflowId": body["workflowId"],
            "status": body["state"],
            "nodeName": _node(body).name,
            "operatorId": body["lastOperatorId"],
            "currentOperatorIds": [body["currentOperatorId"]] if body["currentOperatorId"] else [],
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
        }
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **self.sign_webhook(raw)}
        self._outbox.put((url, raw, headers))
        with self._lock:  # exactly one courier, or two would reorder the queue
            if self._courier is None or not self._courier.is_alive():
                self._courier = threading.Thread(
                    target=self._deliver, name="oa-webhook", daemon=True
                )
                self._courier.start()

    def sign_webhook(self, raw: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        key = self._creds["webhook_secret"].encode()
        digest = hmac.new(key, ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        return {"X-OA-Timestamp": ts, "X-OA-Signature": digest}

    def _deliver(self) -> None:
        """One courier thread keeps webhooks in the order the changes happened."""
        while True:
            url, raw, headers = self._outbox.get()
            statuses = deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
            if any(s == 0 or s >= 400 for s in statuses):
                log.warning("OA webhook to %s answered %s", url, statuses)

    # -- simulated users ---------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """{"action": "create", "applicant", "approvers": [...], "template", "title", "form"}
        or {"action": "approve|reject|revoke|comment", "requestId", "by", "remark"}.

        People are named by employee number ("E00003") or OA user id ("103").
        """
        kind = str(action.get("action", ""))
        try:
            if kind == "create":
                approvers = action.get("approvers") or []
                if not isinstance(approvers, list):
                    raise PressError("approvers must be a list of people")
                template = str(action.get("template", "general"))
                if template not in WORKFLOWS:
                    raise PressError(f"template must be one of {', '.join(WORKFLOWS)}")
                body = self.create_approval(
                    self._person(action.get("applicant")),
                    [self._person(x) for x in approvers],
                    template=template,
                    title=str(action.get("title", "")),
                    form={str(k): str(v) for k, v in dict(action.get("form") or {}).items()},
                    remark=str(action.get("remark", "")),
                )
            elif kind in ("approve", "reject", "revoke", "comment"):
                body = self.transition(
                    str(action.get("requestId", "")),
                    kind,
                    self._person(action.get("by")),
                    str(action.get("remark", "")),
                )
            else:
                raise PressError("action must be create, approve, reject, revoke or comment")
        except Refused as refused:
            raise PressError(f"{refused.code}: {refused.message}") from None
        return {
            "requestId": body["requestId"],
            "status": body["state"],
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
            "currentOperatorId": body["currentOperatorId"],
        }

    def _person(self, who: Any) -> str:
        text = str(who or "")
        if text.startswith("E") and text[1:].isdigit():
            text = oa_user_id(text)
        if text != ADMIN_USER_ID and self.store.get(PLATFORM, "user", text) is None:
            raise PressError(f"no OA user {who!r}")
        return text

    # -- HRM ---------------------------------------------------------------------------------
    def _hrm_page(self, call: Call, kind: str, filters: Mapping[str, str]) -> Response:
        """HRM answers code "1" with data, or code "0" with errMsg (unconfirmed)."""
        raw = call.params.get("params", "")
        try:
            params = json.loads(raw) if raw.strip() else {}
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return JSONResponse({"code": "0", "errMsg": {"msg": "params must be a JSON object"}})
        try:
            page = max(1, int(params.get("curpage") or 1))
            size = int(params.get("pagesize") or DEFAULT_PAGE_SIZE)
        except (TypeError, ValueError):
            return JSONResponse({"code": "0", "errMsg": {"msg": "curpage/pagesize: integers"}})
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        equals = {field: str(params[key]) for key, field in filters.items() if params.get(key)}
        total = self.store.count(PLATFORM, kind, equals=equals)
        rows = self.store.list(PLATFORM, kind, equals=equals, offset=(page - 1) * size, limit=size)
        data = {"dataList": rows, "totalSize": total, "page": page, "pagesize": size}
        return JSONResponse({"code": "1", "data": data})

    def _hrm_users(self, call: Call) -> Response:
        filters = {
            "workcode": "workcode",
            "loginid": "loginid",
            "departmentid": "departmentid",
            "id": "id",
        }
        return self._hrm_page(call, "user", filters)

    def _hrm_departments(self, call: Call) -> Response:
        filters = {"departmentcode": "departmentcode", "id": "id"}
        return self._hrm_page(call, "department", filters)

    # -- unified todo (统一待办) ---------------------------------------------------------------
    def _ofs(
        self, path: str, fn: Callable[[dict[str, Any]], tuple[bool, str]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """E9 whitelists /rest/ofs and trusts the registered system code (syscode) instead of a
        token; bodies are JSON."""

        async def endpoint(request: Request) -> Response:
            try:
                data = json.loads(await request.body() or b"{}")
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return _ofs_answer(False, "the body must be a JSON object")
            syscode = str(data.get("syscode", ""))
            if self._rate_limited(f"ofs:{syscode}"):
                return self.throttle_response()
            if syscode != self._creds["ofs_syscode"]:
                return _ofs_answer(False, f"异构系统标识 {syscode or '(none)'} 未注册")
            ok, message = await run_in_threadpool(fn, data)
            if ok:
                self.store.record(PLATFORM, path, syscode, data, None)
            return _ofs_answer(ok, message)

        return endpoint

    def _ofs_receive(self, data: dict[str, Any]) -> tuple[bool, str]:
        """Create or update one receiver's todo; `receivets` orders concurrent updates."""
        missing = [k for k in OFS_REQUIRED if str(data.get(k, "")).strip() == ""]
        if missing:
            return (False, f"missing {', '.join(missing)}")
        isremark = str(data["isremark"])
        if isremark not in OFS_ISREMARK:
            return (False, f"isremark must be one of {', '.join(OFS_ISREMARK)}")
        receiver = self._receiver(str(data["receiver"]))
        if receiver is None:
            return (False, f"接收人 {data['receiver']} 不存在")
        try:
            receivets = int(data["receivets"])
        except (TypeError, ValueError):
            return (False, "receivets must be a millisecond timestamp")
        todo_id = f"{data['syscode']}|{data['flowid']}|{receiver}"
        with self._lock:
            old = self.store.get(PLATFORM, "todo", todo_id)
            if old is not None and int(old["receivets"]) > receivets:
                # E9 keeps the newer state when an older update arrives late.
                return (True, "ignored: a newer receivets is already stored")
            body = {**data, "receivets": receivets, "userid": receiver, "deleted": False}
            body["state"] = OFS_ISREMARK[isremark]
            self.store.put(PLATFORM, "todo", todo_id, body)
        return (True, "成功" if old is None else "更新成功")

    def _receiver(self, text: str) -> str | None:
        """Receivers are matched by workcode, then loginid, then OA user id."""
        for field in ("workcode", "loginid", "id"):
            found = self.store.list(PLATFORM, "user", equals={field: text}, limit=1)
            if found:
                return str(found[0]["id"])
        return None

    def _ofs_delete_user(self, data: dict[str, Any]) -> tuple[bool, str]:
        receiver = self._receiver(str(data.get("userid", "")))
        if receiver is None:
            return (False, f"userid {data.get('userid')} 不存在")
        return self._ofs_mark_deleted(str(data.get("flowid", "")), receiver)

    def _ofs_delete(self, data: dict[str, Any]) -> tuple[bool, str]:
        return self._ofs_mark_deleted(str(data.get("flowid", "")), None)

    def _ofs_mark_deleted(self, flowid: str, receiver: str | None) -> tuple[bool, str]:
        """Deleted todos stay in the store, marked, so tests can see what was removed."""
        syscode = self._creds["ofs_syscode"]
        with self._lock:
            todos = self.store.list(PLATFORM, "todo", equals={"syscode": syscode, "flowid": flowid})
            hit = [
                t
                for t in todos
                if not t["deleted"] and (receiver is None or t["userid"] == receiver)
            ]
            if not hit:
                return (False, f"flowid {flowid} 不存在")
            self.store.put_many(
                PLATFORM,
                "todo",
                (
                    (f"{syscode}|{flowid}|{t['userid']}", {**t, "deleted": True}, None, None)
                    for t in hit
                ),
            )
        return (True, "删除成功")

    # -- project progress (sandbox-documented) -----------------------------------------------
    def _projects(self, call: Call) -> Response:
        return _success(self.store.list(PLATFORM, "project"))

    def _progress_list(self, call: Call) -> Response:
        equals = {"projectId": call.params["projectId"]} if call.params.get("projectId") else {}
        window = _window(call.params.get("modifiedFrom", ""), call.params.get("modifiedTo", ""))
        page_no = max(1, call.int_param("pageNo", 1))
        size = call.int_param("pageSize", DEFAULT_PAGE_SIZE)
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        from_ms, to_ms = window
        total = self.store.count(PLATFORM, "progress", equals=equals, from_ms=from_ms, to_ms=to_ms)
        rows = self.store.list(
            PLATFORM,
            "progress",
            equals=equals,
            from_ms=from_ms,
            to_ms=to_ms,
            offset=(page_no - 1) * size,
            limit=size,
        )
        return _success({"total": total, "list": [_progress_out(r) for r in rows]})

    def _progress_save(self, call: Call) -> Response:
        """Create (no recordId) or update a record; the acting user is its author."""
        at = _floor_s(now_ms())
        record_id = call.params.get("recordId", "").strip()
        try:
            percent = int(call.params.get("percent", "0") or "0")
        except ValueError:
            raise Refused("PARAM_ERROR", "percent must be an integer 0..100") from None
        if not 0 <= percent <= 100:
            raise Refused("PARAM_ERROR", "percent must be an integer 0..100")
        with self._lock:
            if record_id:
                body = self.store.get(PLATFORM, "progress", record_id)
                if body is None:
                    raise Refused("PARAM_ERROR", f"recordId {record_id} does not exist")
            else:
                project_id = call.required("projectId")
                if self.store.get(PLATFORM, "project", project_id) is None:
                    raise Refused("PARAM_ERROR", f"projectId {project_id} does not exist")
                number = int(self.store.setting(PLATFORM, "next_progress_no", "1") or "1")
                self.store.set_setting(PLATFORM, "next_progress_no", str(number + 1))
                record_id = f"{project_id}-N{number:05d}"
                body = {
                    "recordId": record_id,
                    "projectId": project_id,
                    "authorId": call.user,
                    "createTime": at,
                    "comments": [],
                }
            body.update(percent=percent, content=call.params.get("content", ""), lastModifyTime=at)
            self._put_progress(call, body)
        return _success({"recordId": record_id})

    def _progress_comment(self, call: Call) -> Response:
        record_id = call.required("recordId")
        content = call.required("content")
        at = _floor_s(now_ms())
        with self._lock:
            body = self.store.get(PLATFORM, "progress", record_id)
            if body is None:
                raise Refused("PARAM_ERROR", f"recordId {record_id} does not exist")
            comment_id = f"{record_id}-C{len(body['comments']) + 1:03d}"
            body["comments"].append(
                {
                    "commentId": comment_id,
                    "authorId": call.user,
                    "content": content,
                    "createTime": at,
                }
            )
            body["lastModifyTime"] = at
            self._put_progress(call, body)
        return _success({"commentId": comment_id})

    def _put_progress(self, call: Call, body: dict[str, Any]) -> None:
        self.store.put(
            PLATFORM,
            "progress",
            body["recordId"],
            body,
            created_ms=body["createTime"],
            updated_ms=body["lastModifyTime"],
        )
        self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)

    # -- monthly attendance (sandbox-documented) ---------------------------------------------
    def _month_report_save(self, call: Call) -> Response:
        """Upsert reports, one per (person, month); a bad report rejects the whole batch."""
        reports = call.json_param("reports")
        if not isinstance(reports, list) or not reports:
            raise Refused("PARAM_ERROR", "reports must be a non-empty JSON array")
        rows: list[tuple[str, dict[str, Any], int | None, int | None]] = []
        for index, report in enumerate(reports):
            rows.append(self._month_report_row(index, report))
        self.store.put_many(PLATFORM, "kq_month", rows)
        for _, body, _, _ in rows:
            self.store.record(PLATFORM, call.path, call.user, body, None)
        return _success({"saved": len(rows)})

    def _month_report_row(
        self, index: int, report: Any
    ) -> tuple[str, dict[str, Any], int | None, int | None]:
        if not isinstance(report, dict):
            raise Refused("PARAM_ERROR", f"reports[{index}] must be an object")
        who = str(report.get("resourceId") or report.get("workcode") or "")
        resource = self._receiver(who) if who else None
        if resource is None:
            raise Refused("PARAM_ERROR", f"reports[{index}]: no OA user {who!r}")
        month = str(report.get("kqMonth", ""))
        try:
            datetime.strptime(month, "%Y-%m").replace(tzinfo=OA_TZ)
        except ValueError:
            raise Refused("PARAM_ERROR", f"reports[{index}].kqMonth must be yyyy-MM") from None
        body: dict[str, Any] = {"resourceId": resource, "kqMonth": month}
        for key in MONTH_FIELDS:
            value = report.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise Refused("PARAM_ERROR", f"reports[{index}].{key} must be a number >= 0")
            body[key] = value
        body["remark"] = str(report.get("remark", ""))
        return f"{resource}:{month}", body, None, None

    def _month_report_list(self, call: Call) -> Response:
        equals: dict[str, str] = {}
        if call.params.get("kqMonth"):
            equals["kqMonth"] = call.params["kqMonth"]
        who = call.params.get("resourceId") or call.params.get("workcode")
        if who:
            resource = self._receiver(who)
            if resource is None:
                raise Refused("PARAM_ERROR", f"no OA user {who!r}")
            equals["resourceId"] = resource
        return _success(self.store.list(PLATFORM, "kq_month", equals=equals))

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """HRM, projects, progress records and `approvals` requests; attendance reports are
        written later by the sync. Progress records per project come from setting
        `progress_per_project` (default 10)."""
        users = self.store.put_many(PLATFORM, "user", _hrm_users(world))
        departments = self.store.put_many(PLATFORM, "department", _hrm_departments(world))
        projects = self.store.put_many(
            PLATFORM,
            "project",
            (
                (
                    p.id,
                    {
                        "projectId": p.id,
                        "projectName": p.name,
                        "managerId": oa_user_id(p.owner_no),
                        "memberIds": [oa_user_id(m) for m in p.member_nos],
                    },
                    None,
                    None,
                )
                for p in world.projects
            ),
        )
        per_project = int(self.store.setting(PLATFORM, "progress_per_project", "10") or "10")
        progress = self.store.put_many(PLATFORM, "progress", _progress_rows(world, per_project))
        seeded = 0
        for batch in _batches(world.approvals(approvals), SEED_BATCH):
            seeded += self.store.put_many(PLATFORM, "approval", (_approval_row(a) for a in batch))
        self.store.set_setting(PLATFORM, "next_request_no", str(approvals + 1))
        return {
            "users": users,
            "departments": departments,
            "approvals": seeded,
            "projects": projects,
            "progress": progress,
        }


LISTS = ("ToDo", "Handled", "My", "All")
EVENTS = {"approve": "approved", "reject": "rejected", "revoke": "revoked", "comment": "commented"}
MONTH_FIELDS = (
    "workDays",
    "attendDays",
    "lateTimes",
    "earlyTimes",
    "absentTimes",
    "leaveDays",
    "overtimeHours",
)


@dataclass(frozen=True)
class _Node:
    node_id: str
    name: str
    node_type: str  # 0 create, 1 approve, 2 submit, 3 archive
    status: str


def _node(body: Mapping[str, Any]) -> _Node:
    wf = WORKFLOW_BY_ID[body["workflowId"]][1]
    state = body["state"]
    if state == "pending":
        level = body["level"]
        return _Node(wf.node_id(level), f"审批{level}", "1", f"审批{level}")
    if state == "approved":
        return _Node(wf.node_id(ARCHIVE_LEVEL), "归档", "3", "归档")
    # Returned (退回) and withdrawn (撤回) requests sit at the creation node.
    return _Node(wf.node_id(0), "创建", "0", "退回" if state == "rejected" else "撤回")


def _isremark(body: Mapping[str, Any], user: str) -> str:
    if body.get("currentOperatorId") == user:
        return "0"
    return "2" if user in body["actors"] else ""


def _may_view(body: Mapping[str, Any], user: str) -> bool:
    return user in (ADMIN_USER_ID, body.get("currentOperatorId"), *body["actors"], *body["chain"])


def _received_ms(body: Mapping[str, Any], level: int) -> int:
    """When the request reached approval `level`: the log that sent it there."""
    for entry in body["logs"]:
        if body["chain"][level - 1] in entry["received"] and entry["level"] == level - 1:
            return int(entry["ms"])
    return int(body["createTime"])


def _log(
    request_id: str,
    index: int,
    operator: str,
    logtype: str,
    level: int,
    at_ms: int,
    remark: str,
    received: list[str],
) -> dict[str, Any]:
    return {
        "id": str(int(request_id[1:]) * 1000 + index),
        "operator": operator,
        "logtype": logtype,
        "level": level,
        "ms": at_ms,
        "remark": remark,
        "received": received,
    }


def _logs_out(body: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """workflowRequestLogs / getRequestLog entries, newest first, with E9's field names."""
    wf = WORKFLOW_BY_ID[body["workflowId"]][1]
    out = []
    for entry in reversed(body["logs"]):
        level = entry["level"]
        at = fmt_time(entry["ms"])
        out.append(
            {
                "id": entry["id"],
                "logid": entry["id"],
                "nodeid": wf.node_id(level),
                "nodename": "创建" if level == 0 else f"审批{level}",
                "operator": entry["operator"],
                "operatorName": names.get(entry["operator"], ""),
                "operatortype": "0",
                "operatedate": at[:10],
                "operatetime": at[11:],
                "logtype": entry["logtype"],
                "remark": entry["remark"],
                "remarkHtml": f"<p>{html.escape(entry['remark'])}</p>" if entry["remark"] else "",
                "receivedPersonids": ",".join(entry["received"]),
                "receivedPersons": ",".join(names.get(x, "") for x in entry["received"]),
                "agenttype": "0",
                "isbranche": "0",
            }
        )
    return out


def _conditions(conditions: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """E9 `conditions` keys we honour; the rest of E9's many keys are ignored."""
    clauses: list[str] = []
    args: list[Any] = []
    try:
        if conditions.get("requestname"):
            clauses.append("json_extract(body, '$.requestName') LIKE ?")
            args.append(f"%{conditions['requestname']}%")
        if conditions.get("workflowIds"):
            ids = [x.strip() for x in str(conditions["workflowIds"]).split(",") if x.strip()]
            clauses.append(f"json_extract(body, '$.workflowId') IN ({','.join('?' * len(ids))})")
            args += ids
        node_type = str(conditions.get("nodetype", "")).strip()
        if node_type:
            states = {"0": ["rejected", "revoked"], "1": ["pending"], "3": ["approved"]}
            wanted = states.get(node_type, [])
            marks = ",".join("?" * len(wanted)) or "NULL"
            clauses.append(f"json_extract(body, '$.state') IN ({marks})")
            args += wanted
        created = _created_window(conditions)
        if created is not None:
            clauses.append("created_ms >= ? AND created_ms < ?")
            args += list(created)
        if conditions.get("lastOperateTimeFrom"):
            clauses.append("updated_ms >= ?")
            args.append(parse_time(str(conditions["lastOperateTimeFrom"])))
        if conditions.get("lastOperateTimeTo"):
            clauses.append("updated_ms < ?")
            args.append(parse_time(str(conditions["lastOperateTimeTo"])))
    except ValueError as exc:
        raise Refused("PARAM_ERROR", f"conditions: {exc}") from None
    return clauses, args


def _created_window(conditions: Mapping[str, Any]) -> tuple[int, int] | None:
    """E9's createdateselect: 0 all, 1 today, 2 this week, 3 this month, 4 this season,
    5 this year, 6 createdatefrom..createdateto (dates, both inclusive), 7 last month,
    8 last year."""
    select = str(conditions.get("createdateselect", "0") or "0")
    today = datetime.now(OA_TZ).date()
    if select == "0":
        return None
    if select == "6":
        start = date.fromisoformat(str(conditions.get("createdatefrom") or "1970-01-01"))
        end = date.fromisoformat(str(conditions.get("createdateto") or "9999-12-30"))
        return _day_ms(start), _day_ms(end + timedelta(days=1))
    month_start = today.replace(day=1)
    season_start = month_start.replace(month=(today.month - 1) // 3 * 3 + 1)
    last_month_start = (month_start - timedelta(days=1)).replace(day=1)
    windows = {
        "1": (today, today + timedelta(days=1)),
        "2": (today - timedelta(days=today.weekday()), today + timedelta(days=1)),
        "3": (month_start, today + timedelta(days=1)),
        "4": (season_start, today + timedelta(days=1)),
        "5": (today.replace(month=1, day=1), today + timedelta(days=1)),
        "7": (last_month_start, month_start),
        "8": (date(today.year - 1, 1, 1), date(today.year, 1, 1)),
    }
    if select not in windows:
        raise ValueError(f"createdateselect must be 0..8, not {select}")
    start, end = windows[select]
    return _day_ms(start), _day_ms(end)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=OA_TZ).timestamp() * 1000)


def _window(from_text: str, to_text: str) -> tuple[int | None, int | None]:
    try:
        from_ms = parse_time(from_text) if from_text.strip() else None
        to_ms = parse_time(to_text) if to_text.strip() else None
    except ValueError as exc:
        raise Refused("PARAM_ERROR", f"time must be yyyy-MM-dd HH:mm:ss: {exc}") from None
    return from_ms, to_ms


def _progress_out(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "createTime": fmt_time(body["createTime"]),
        "lastModifyTime": fmt_time(body["lastModifyTime"]),
        "comments": [{**c, "createTime": fmt_time(c["createTime"])} for c in body["comments"]],
    }


def _ledger_params(call: Call) -> dict[str, Any]:
    return {"appid": call.appid, **call.params}


def _ofs_answer(ok: bool, message: str) -> JSONResponse:
    # E9's unified-todo answer; the exact key set is unconfirmed.
    return JSONResponse({"operResult": "1" if ok else "0", "message": message})


def _batches(items: Iterable[Approval], size: int) -> Iterator[list[Approval]]:
    batch: list[Approval] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _hrm_users(world: World) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    departments = {d.id: d for d in world.departments}
    for person in world.people:
        dept = departments[person.department_id]
        uid = oa_user_id(person.employee_no)
        yield (
            uid,
            {
                "id": uid,
                "workcode": person.employee_no,
                "loginid": person.email.split("@")[0],
                "lastname": person.name,
                "email": person.email,
                "mobile": person.mobile,
                "departmentid": _dept_id(dept.id),
                "departmentname": dept.name,
                "departmentcode": dept.id.upper(),
                "subcompanyid1": "1",
                "managerid": oa_user_id(person.manager_no) if person.manager_no else "",
                "status": "1",  # 正式
            },
            None,
            None,
        )


def _dept_id(world_id: str) -> str:
    return str(10 + int(world_id[1:]))  # d1 -> "11": E9 department ids are integers


def _hrm_departments(world: World) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    for dept in world.departments:
        yield (
            _dept_id(dept.id),
            {
                "id": _dept_id(dept.id),
                "departmentname": dept.name,
                "departmentmark": dept.name,
                "departmentcode": dept.id.upper(),
                "supdepid": _dept_id(dept.parent_id) if dept.parent_id else "0",
                "subcompanyid1": "1",
                "canceled": "0",
            },
            None,
            None,
        )


def _progress_rows(
    world: World, per_project: int
) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    for record in world.progress(per_project):
        at = _floor_s(record.at_ms)
        yield (
            record.record_id,
            {
                "recordId": record.record_id,
                "projectId": record.project_id,
                "authorId": oa_user_id(record.author_no),
                "percent": record.percent,
                "content": record.text,
                "createTime": at,
                "lastModifyTime": at,
                "comments": [],
            },
            at,
            at,
        )


def _approval_row(a: Approval) -> tuple[str, dict[str, Any], int, int]:
    """A world approval as the OA keeps it; times to the second, as E9 stores them."""
    wf = WORKFLOWS[a.template]
    creator = oa_user_id(a.applicant_no)
    chain = [oa_user_id(n) for n in a.approver_nos]
    logs: list[dict[str, Any]] = []
    level = 0
    for step in a.history:
        at = _floor_s(step.at_ms)
        who = oa_user_id(step.approver_no)
        if step.action == "submit":
            logs.append(_log(a.request_id, len(logs), who, LOGTYPE_SUBMIT, 0, at, "", chain[:1]))
            level = 1
        elif step.action == "approve":
            nxt = chain[level : level + 1]
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_APPROVE, level, at, step.comment, nxt)
            )
            level += 1
        elif step.action == "reject":
            entry = _log(
                a.request_id, len(logs), who, LOGTYPE_REJECT, level, at, step.comment, [creator]
            )
            logs.append(entry)
        elif step.action == "revoke":
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_WITHDRAW, 0, at, step.comment, [])
            )
        else:
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_COMMENT, level, at, step.comment, [])
            )
    state = a.state
    current = oa_user_id(a.current_approver_nos[0]) if a.current_approver_nos else None
    node_level = {"pending": level, "approved": ARCHIVE_LEVEL}.get(state, 0)
    form = {}
    for key, value in a.form.items():
        name = key[:-3] + "_time" if key.endswith("_ms") else key
        form[name] = fmt_time(int(value)) if key.endswith("_ms") else _text(value)
    created = _floor_s(a.created_ms)
    updated = _floor_s(a.updated_ms)
    body = {
        "requestId": a.request_id,
        "workflowId": wf.id,
        "requestName": a.title,
        "requestLevel": "0",
        "creatorId": creator,
        "createTime": created,
        "chain": chain,
        "state": state,
        "level": node_level,
        "currentOperatorId": current,
        "lastOperatorId": logs[-1]["operator"],
        "lastOperateTime": updated,
        "form": form,
        "logs": logs,
        "actors": list(dict.fromkeys(entry["operator"] for entry in logs)),
    }
    return a.request_id, body, created, updated


def _text(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)
