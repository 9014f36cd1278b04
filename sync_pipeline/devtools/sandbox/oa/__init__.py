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

One module per API family, each a mixin of `OABase` (base.py); `OAEmulator` below combines them
and holds the one route table: auth.py, workflow.py, webhook.py, hrm.py, todo.py (unified
todo), projects.py, attendance.py, seeding.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.oa.attendance import MonthlyAttendance
from sync_pipeline.devtools.sandbox.oa.auth import Auth, rsa_encrypt
from sync_pipeline.devtools.sandbox.oa.base import (
    ADMIN_USER_ID,
    PA,
    PLATFORM,
    Call,
    fmt_time,
    oa_user_id,
)
from sync_pipeline.devtools.sandbox.oa.hrm import Hrm
from sync_pipeline.devtools.sandbox.oa.projects import Projects
from sync_pipeline.devtools.sandbox.oa.seeding import Seeding
from sync_pipeline.devtools.sandbox.oa.todo import UnifiedTodo
from sync_pipeline.devtools.sandbox.oa.webhook import ChangeWebhook
from sync_pipeline.devtools.sandbox.oa.workflow import LISTS, WorkflowRequests

__all__ = ["ADMIN_USER_ID", "OAEmulator", "fmt_time", "oa_user_id", "rsa_encrypt"]


class OAEmulator(
    Auth, WorkflowRequests, ChangeWebhook, Hrm, UnifiedTodo, Projects, MonthlyAttendance, Seeding
):
    """E9 as one emulator: its API families' mixins and the one route table."""

    platform = PLATFORM
    title = "Weaver e-cology 9 (OA)"
    port_offset = 1

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
