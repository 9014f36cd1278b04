"""DingTalk (钉钉) emulator: both API families of platform-apis.md §2, served locally.

Written from DingTalk's documented contract, never from our connector. DingTalk has two API
families on two hosts; here both share one port, told apart by path as on the real hosts:
    new  /v1.0/...  header x-acs-dingtalk-access-token; errors are HTTP 4xx/5xx with
                    {code, requestid, message}
    old  /gettoken, /topapi/..., /attendance/...  query ?access_token=; errors are HTTP 200
                    with {errcode, errmsg}
One access token serves both, as for a real internal app. Callbacks use the HTTP event
subscription: POST ?msg_signature&timestamp&nonce with {"encrypt": ...} (wxcrypto.py, receiver
id = appKey), sent through `core.deliver_callback`; the receiver must answer the encrypted
"success", and the emulator checks that it did.

Settings (store.set_setting("dingtalk", key, value)):
    callback_url      the event subscription URL
    token_ttl_s       access token lifetime (default 7200)
    rate_limit_scale  multiplies the 20 QPS per app per API; 0 turns it off
    monthly_quota     calls per app per calendar month before 90020 (absent or 0: no quota)
    clock_ms          the emulator's "now" for the 365-day look-back of instanceIds/query;
                      seed() sets it to the end of the world's data (2026), so the data stays
                      queryable whatever the machine's clock says

Unconfirmed details (each marked where it is used): the HTTP status of throttle answers (403,
observed in client logs), the codes of parameter errors, the answer to a repeated outTrackId,
and the card callback over HTTP (DingTalk recommends Stream mode, a websocket; the sandbox sends
the Stream payload through the HTTP event subscription instead).

The third-party process centre ("三方流程" / integrated todos: an OA keeps its own flow and
DingTalk's approval center shows it), from alibabacloud-dingtalk workflow_1_0 (client paths and
request / response models) and the older topapi process/workrecord pages it replaces:
    POST /v1.0/workflow/processCentres/schemas       SaveProcess {name*, description,
         formComponents*[{componentType, props{componentId, label}}], processCode (given:
         update that schema), templateConfig, processFeatureConfig} -> result.processCode
    GET  /v1.0/workflow/processCentres/schemaNames/processCodes?name= -> result{processCode,
         gmtModified}
    POST /v1.0/workflow/processCentres/instances     SaveIntegratedInstance {processCode*,
         originatorUserId*, url*, title, formComponentValueList[{name, value}], notifiers,
         bizData, featureConfig} -> result.processInstanceId
    PUT  /v1.0/workflow/processCentres/instances     UpdateProcessInstance {processInstanceId*,
         status* COMPLETED | TERMINATED, result agree | refuse, notifiers} -> success
    POST /v1.0/workflow/processCentres/tasks         CreateIntegratedTask {processInstanceId*,
         activityId, tasks*[{userId, url, customData, dueTimestamp}]} -> result[{taskId, userId}]
    PUT  /v1.0/workflow/processCentres/tasks         UpdateIntegratedTask {processInstanceId,
         tasks*[{taskId*, status*, result}]} -> success
    POST /v1.0/workflow/processCentres/tasks/cancel  CancelIntegratedTask {processInstanceId*,
         activityId*, activityIds} -> success
    GET  /v1.0/workflow/processCentres/todoTasks?userId&pageNumber&pageSize -> result{hasMore,
         list[{processInstanceId, taskId, activityId, status, result, createTime, finishTime,
         userId}]}
There is no dedupe handle on any of these: a repeated create makes a second instance or task.
A todo links back to the OA by its `url`; DingTalk sends the integrator no signed action
callback for these todos (featureConfig.features[].callback {apiKey, appUuid, version} points
at a DingTalk connector app, not at an HTTP URL of ours), so nothing is pressed here.
Unconfirmed, and chosen here: a new instance is RUNNING with no result; task statuses are
RUNNING (to do), COMPLETED and CANCELED, and results agree | refuse (the topapi task update's
words); a finished instance or task takes the same final state again (success) but no other;
result is required with COMPLETED; unknown ids are InvalidParameter (HTTP 400).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.core import (
    SandboxStore,
    SlidingWindow,
    TokenState,
    batched,
    deliver_callback,
    now_ms,
    scaled_limit,
)
from sync_pipeline.devtools.sandbox.emulator import Emulator, PressError
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, Approval, Checkin, Person, World
from sync_pipeline.devtools.sandbox.wxcrypto import (
    CryptoError,
    WXBizMsgCrypt,
    new_aes_key,
    random_text,
)

PLATFORM = "dingtalk"
TOKEN_TTL_S = 7200
QPS_PER_APP_API = 20  # internal apps: 20 calls a second per app per API
MAX_QUERY_WINDOW_MS = 120 * DAY_MS  # instanceIds/query: endTime - startTime <= 120 days
MAX_LOOKBACK_MS = 365 * DAY_MS  # ... and startTime no older than 365 days
MAX_ATTENDANCE_SPAN_MS = 7 * DAY_MS
CHINA = timezone(timedelta(hours=8))  # DingTalk dates without a zone are China time
CST_MS = 8 * 3_600_000
WORLD_END_MS = EPOCH_MS + 300 * DAY_MS  # the world's data ends here (world.py)
EPOCH_DAY = EPOCH_MS // DAY_MS
EPOCH_DATE = datetime.fromtimestamp(EPOCH_MS / 1000, UTC).date()
TASK_ID_BASE = 60_000_000_000

INSTANCE_STATUS = {"pending": "RUNNING", "approved": "COMPLETED", "rejected": "COMPLETED"}
INSTANCE_STATUS["revoked"] = "TERMINATED"
INSTANCE_RESULT = {"approved": "agree", "rejected": "refuse"}
STATUSES = ("NEW", "RUNNING", "TERMINATED", "COMPLETED", "CANCELED")
TEMPLATE_NAMES = {"leave": "请假", "expense": "报销", "general": "通用审批"}
SPACE_MODELS = {  # openSpaceId space type -> the deliver model it needs
    "IM_GROUP": "imGroupOpenDeliverModel",
    "IM_ROBOT": "imRobotOpenDeliverModel",
    "IM_SINGLE": "imSingleOpenDeliverModel",
}
CARD_TOPIC = "/v1.0/card/instances/callback"  # the Stream topic of card callbacks
PC_INSTANCE_STATUSES = ("COMPLETED", "TERMINATED")  # what an integrator may set
PC_TASK_STATUSES = ("COMPLETED", "CANCELED")
PC_RESULTS = ("agree", "refuse")
PC_TASK_ID_BASE = 70_000_000_000

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


def instance_kind(code: str) -> str:
    """Instances are stored per process, so listing one process walks only its own index."""
    return f"instance:{code}"


def instance_id_for(world: World, approval: Approval) -> str:
    """A uuid-shaped id, stable per (seed, number); md5 only because uuid5 slowed seeding."""
    h = hashlib.md5(f"dingtalk-instance/{world.seed}/{approval.number}".encode()).hexdigest()  # noqa: S324
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def conversation_id_for(group_id: str) -> str:
    digest = hashlib.sha256(f"dingtalk-chat/{group_id}".encode()).hexdigest()
    return "cid" + digest[:22] + "=="


def utc_minute(ms: int) -> str:
    """DingTalk's workflow times: UTC, to the minute, "yyyy-MM-ddTHH:mmZ"."""
    day, minute = divmod(ms // 60_000, 1440)
    return f"{day_text(day)}T{minute // 60:02d}:{minute % 60:02d}Z"


def china_minute(ms: int) -> str:
    """A form's date and time as DingTalk shows it: China time, "yyyy-MM-dd HH:mm"."""
    day, minute = divmod((ms + CST_MS) // 60_000, 1440)
    return f"{day_text(day)} {minute // 60:02d}:{minute % 60:02d}"


@functools.lru_cache(maxsize=4096)
def day_text(day: int) -> str:
    """yyyy-MM-dd of a day number since 1970; cached, as strftime dominated seeding time."""
    return (EPOCH_DATE + timedelta(days=day - EPOCH_DAY)).isoformat()


DIGITS_ONLY = str.maketrans("", "", "-: ")


def china_datetime(text: Any, name: str) -> int:
    try:
        parsed = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        raise OapiError(40035, f"{name} must be yyyy-MM-dd HH:mm:ss") from None
    return int(parsed.timestamp() * 1000)


def as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise invalid(f"{name} must be a number") from None


class DingTalkEmulator(Emulator):
    """One DingTalk org with one internal app: workflow, attendance, notifications, cards."""

    platform = PLATFORM
    title = "DingTalk (钉钉)"
    port_offset = 3

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

    def routes(self) -> list[BaseRoute]:
        new, old = self._new_api, self._old_api
        return [
            Route("/v1.0/oauth2/accessToken", self._access_token, methods=["POST"]),
            Route("/gettoken", self._gettoken, methods=["GET"]),
            Route(
                "/v1.0/workflow/processes/instanceIds/query",
                new(self.list_instance_ids),
                methods=["POST"],
            ),
            Route("/v1.0/workflow/processInstances", new(self.get_instance), methods=["GET"]),
            Route(
                "/v1.0/workflow/processInstances/execute",
                new(self.execute_task),
                methods=["POST"],
            ),
            Route(
                "/v1.0/card/instances/createAndDeliver",
                new(self.create_and_deliver),
                methods=["POST"],
            ),
            Route("/v1.0/card/instances", new(self.update_card), methods=["PUT"]),
            Route("/v1.0/robot/groupMessages/send", new(self.group_send), methods=["POST"]),
            Route(
                "/v1.0/robot/oToMessages/batchSend", new(self.robot_batch_send), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/schemas", new(self.pc_save_schema), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/schemaNames/processCodes",
                new(self.pc_code_by_name),
                methods=["GET"],
            ),
            Route(
                "/v1.0/workflow/processCentres/instances",
                new(self.pc_save_instance),
                methods=["POST"],
            ),
            Route(
                "/v1.0/workflow/processCentres/instances",
                new(self.pc_update_instance),
                methods=["PUT"],
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks", new(self.pc_create_tasks), methods=["POST"]
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks", new(self.pc_update_tasks), methods=["PUT"]
            ),
            Route(
                "/v1.0/workflow/processCentres/tasks/cancel",
                new(self.pc_cancel_tasks),
                methods=["POST"],
            ),
            Route(
                "/v1.0/workflow/processCentres/todoTasks", new(self.pc_todo_tasks), methods=["GET"]
            ),
            Route("/attendance/list", old(self.attendance_list), methods=["POST"]),
            Route("/topapi/v2/department/listsub", old(self.department_listsub), methods=["POST"]),
            Route("/topapi/v2/user/list", old(self.user_list), methods=["POST"]),
            Route("/topapi/v2/user/get", old(self.user_get), methods=["POST"]),
            Route(
                "/topapi/message/corpconversation/asyncsend_v2",
                old(self.asyncsend),
                methods=["POST"],
            ),
            Route(
                "/topapi/message/corpconversation/getsendresult",
                old(self.getsendresult),
                methods=["POST"],
            ),
        ]

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

    def _token_ttl_s(self) -> int:
        return int(self.store.setting(PLATFORM, "token_ttl_s", str(TOKEN_TTL_S)) or TOKEN_TTL_S)

    def _token_for(self, app: str) -> str:
        """Within its lifetime the same token comes back, extended, as DingTalk documents."""
        token = self.store.valid_token_for(PLATFORM, app) or random_text(32).lower()
        return self.store.issue_token(PLATFORM, app, self._token_ttl_s(), token=token)

    def _load_instance(self, instance_id: str) -> dict[str, Any] | None:
        """An instance by id, with its `result`: stored once written, else built from the world.

        Seeded instances are stored as their filter fields and world number only, so that
        100,000 of them seed in seconds; the world is deterministic, so the same number always
        gives the same instance. One indexed lookup per process, as instances live per process.
        """
        for code in PROCESS_CODES.values():
            row = self.store.get(PLATFORM, instance_kind(code), instance_id)
            if row is not None:
                if "result" not in row:
                    world, userids = self._world()
                    approval = world.approval(int(row["number"]))
                    row["result"] = instance_result(approval, world, userids, row)
                return row
        return None

    def _world(self) -> tuple[World, dict[str, str]]:
        saved = self.store.setting(PLATFORM, "world") or "[]"
        with self._cache_lock:
            if self._world_cache is None or self._world_cache[0] != saved:
                seed, people = json.loads(saved)
                world = World(seed, people_count=people)
                userids = {p.employee_no: userid_for(p) for p in world.people}
                self._world_cache = (saved, world, userids)
            return self._world_cache[1], self._world_cache[2]

    def _save_instance(self, row: Mapping[str, Any]) -> None:
        kind = instance_kind(row["processCode"])
        self.store.put(PLATFORM, kind, row["processInstanceId"], row, updated_ms=now_ms())

    def _clock_ms(self) -> int:
        clock = self.store.setting(PLATFORM, "clock_ms")
        return now_ms() if clock is None else min(now_ms(), int(clock))

    # -- auth --------------------------------------------------------------------------------
    async def _access_token(self, request: Request) -> Response:
        args = await self._args(request)
        if args is None:
            return api_error(400, "InvalidParameter", "request body is not a JSON object")
        return await run_in_threadpool(self._new_token, args)

    def _new_token(self, args: Mapping[str, Any]) -> Response:
        creds = self.credentials()
        if not args.get("appKey"):
            return api_error(400, "MissingappKey", "appKey is mandatory for this action.")
        if not args.get("appSecret"):
            return api_error(400, "MissingappSecret", "appSecret is mandatory for this action.")
        if args["appKey"] != creds["appKey"] or args["appSecret"] != creds["appSecret"]:
            # The code DingTalk uses for a wrong key or secret is unconfirmed.
            return api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = self._token_for(creds["appKey"])
        return JSONResponse({"accessToken": token, "expireIn": self._token_ttl_s()})

    async def _gettoken(self, request: Request) -> Response:
        return await run_in_threadpool(self._old_token, dict(request.query_params))

    def _old_token(self, query: Mapping[str, str]) -> Response:
        creds = self.credentials()
        if query.get("appkey") != creds["appKey"]:
            return oapi_error(40089, "不合法的appkey")  # the code for an unknown key: unconfirmed
        if query.get("appsecret") != creds["appSecret"]:
            return oapi_error(40001, "不合法的appsecret")
        token = self._token_for(creds["appKey"])
        body = {"errcode": 0, "errmsg": "ok", "access_token": token}
        return JSONResponse({**body, "expires_in": self._token_ttl_s()})

    # -- workflow ----------------------------------------------------------------------------
    def list_instance_ids(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Instance ids of one process created in [startTime, endTime], in creation order."""
        code = args.get("processCode")
        if not code:
            raise missing("processCode")
        if args.get("startTime") in (None, ""):
            raise missing("startTime")
        start = as_int(args["startTime"], "startTime")
        clock = self._clock_ms()
        end = as_int(args["endTime"], "endTime") if args.get("endTime") not in (None, "") else clock
        if end < start:
            raise invalid("endTime must not be before startTime")
        if end - start > MAX_QUERY_WINDOW_MS:
            raise invalid("the time window must not exceed 120 days")
        if start < clock - MAX_LOOKBACK_MS:
            raise invalid("startTime must be within the last 365 days")
        size = as_int(args.get("maxResults", 20), "maxResults")
        if not 0 < size <= 20:
            raise invalid("maxResults must be between 1 and 20")
        offset = as_int(args.get("nextToken", 0) or 0, "nextToken")
        if offset < 0:
            raise invalid("nextToken must not be negative")
        one_of: dict[str, list[Any]] = {}
        user_ids = args.get("userIds") or []
        if not isinstance(user_ids, list) or len(user_ids) > 10:
            raise invalid("userIds must be a list of at most 10 userIds")
        if user_ids:
            one_of["originatorUserId"] = [str(u) for u in user_ids]
        statuses = args.get("statuses") or []
        if not isinstance(statuses, list) or set(statuses) - set(STATUSES):
            raise invalid(f"statuses must be a list of {', '.join(STATUSES)}")
        if statuses:
            one_of["status"] = statuses
        rows = self.store.list(
            PLATFORM,
            instance_kind(str(code)),
            time_field="created_ms",
            from_ms=start,
            to_ms=end + 1,
            one_of=one_of,
            offset=offset,
            limit=size + 1,
        )
        result: dict[str, Any] = {"list": [row["processInstanceId"] for row in rows[:size]]}
        if len(rows) > size:
            result["nextToken"] = str(offset + size)
        return {"result": result, "success": True}

    def get_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        instance_id = args.get("processInstanceId")
        if not instance_id:
            raise missing("processInstanceId")
        row = self._load_instance(str(instance_id))
        if row is None:
            raise invalid("processInstanceId不存在")  # the not-found code is unconfirmed
        return {"result": row["result"], "success": True}

    def execute_task(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Agree or refuse one task; only its current assignee may, and only once."""
        for name in ("processInstanceId", "taskId", "actionerUserId", "result"):
            if args.get(name) in (None, ""):
                raise missing(name)
        decision = str(args["result"])
        if decision not in ("agree", "refuse"):
            raise invalid("result must be agree or refuse")
        with self._write_lock:
            row = self._load_instance(str(args["processInstanceId"]))
            if row is None:
                raise invalid("processInstanceId不存在")
            decide(
                row,
                as_int(args["taskId"], "taskId"),
                str(args["actionerUserId"]),
                decision,
                str(args.get("remark", "")),
            )
            self._save_instance(row)
            self.store.record(PLATFORM, "workflow/processInstances/execute", app, args)
        return {"result": True, "success": True}

    # -- the third-party process centre (module docstring) ------------------------------------
    def pc_save_schema(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("name"):
            raise missing("name")
        components = args.get("formComponents")
        if not isinstance(components, list) or not components:
            raise missing("formComponents")
        for component in components:
            props = component.get("props") if isinstance(component, dict) else None
            if not component.get("componentType") or not isinstance(props, dict):
                raise invalid("formComponents[] need componentType and props")
        with self._write_lock:
            code = str(args.get("processCode") or "")
            if code and self.store.get(PLATFORM, "pc_schema", code) is None:
                raise invalid("processCode不存在")
            code = code or "PROC-" + str(uuid.uuid4()).upper()
            saved = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
            row = {**args, "processCode": code, "_saved": saved}
            self.store.put(PLATFORM, "pc_schema", code, row)
            self.store.record(PLATFORM, "workflow/processCentres/schemas", app, args)
        return {"result": {"processCode": code}}

    def pc_code_by_name(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("name"):
            raise missing("name")
        found = self.store.list(PLATFORM, "pc_schema", equals={"name": str(args["name"])})
        if not found:
            raise invalid("name不存在")  # the not-found code is unconfirmed
        newest = found[-1]
        return {"result": {"processCode": newest["processCode"], "gmtModified": newest["_saved"]}}

    def pc_save_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        for name in ("processCode", "originatorUserId", "url"):
            if not args.get(name):
                raise missing(name)
        if self.store.get(PLATFORM, "pc_schema", str(args["processCode"])) is None:
            raise invalid("processCode不存在")
        if self.store.get(PLATFORM, "user", str(args["originatorUserId"])) is None:
            raise invalid("originatorUserId不存在")
        values = args.get("formComponentValueList") or []
        if not isinstance(values, list) or not all(
            isinstance(v, dict) and v.get("name") for v in values
        ):
            raise invalid("formComponentValueList[] need a name")
        instance_id = str(uuid.uuid4())
        row = {
            **args,
            "processInstanceId": instance_id,
            "status": "RUNNING",
            "result": "",
            "createTime": now_ms(),
            "tasks": [],
        }
        with self._write_lock:
            self.store.put(PLATFORM, "pc_instance", instance_id, row)
            body = {**args, "processInstanceId": instance_id}
            self.store.record(PLATFORM, "workflow/processCentres/instances", app, body)
        return {"result": {"processInstanceId": instance_id}}

    def _pc_instance(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if not args.get("processInstanceId"):
            raise missing("processInstanceId")
        row = self.store.get(PLATFORM, "pc_instance", str(args["processInstanceId"]))
        if row is None:
            raise invalid("processInstanceId不存在")
        return row

    def pc_update_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        status, result = args.get("status"), args.get("result") or ""
        if not status:
            raise missing("status")
        if status not in PC_INSTANCE_STATUSES:
            raise invalid(f"status must be one of {', '.join(PC_INSTANCE_STATUSES)}")
        if status == "COMPLETED" and result not in PC_RESULTS:
            raise invalid("result must be agree or refuse when the status is COMPLETED")
        with self._write_lock:
            row = self._pc_instance(args)
            if row["status"] != "RUNNING" and (row["status"], row["result"]) != (status, result):
                raise invalid(f"the instance is {row['status']} already")
            row.update(status=status, result=result, finishTime=row.get("finishTime") or now_ms())
            self.store.put(PLATFORM, "pc_instance", row["processInstanceId"], row)
            self.store.record(PLATFORM, "workflow/processCentres/instances PUT", app, args)
        return {"success": True}

    def pc_create_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise missing("tasks")
        with self._write_lock:
            row = self._pc_instance(args)
            if row["status"] != "RUNNING":
                raise invalid(f"the instance is {row['status']}")
            made: list[dict[str, Any]] = []
            for task in tasks:
                user = str(task.get("userId", "")) if isinstance(task, dict) else ""
                if self.store.get(PLATFORM, "user", user) is None:
                    raise invalid(f"userId {user!r}不存在")
                task_id = PC_TASK_ID_BASE + self.store.count(PLATFORM, "pc_task") + len(made)
                made.append(
                    {
                        "taskId": task_id,
                        "userId": user,
                        "url": task.get("url") or row["url"],
                        "activityId": str(args.get("activityId") or ""),
                        "status": "RUNNING",
                        "result": "",
                        "createTime": now_ms(),
                        "processInstanceId": row["processInstanceId"],
                    }
                )
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in made]
            )
            row["tasks"] += [t["taskId"] for t in made]
            self.store.put(PLATFORM, "pc_instance", row["processInstanceId"], row)
            body = {**args, "taskIds": [t["taskId"] for t in made]}
            self.store.record(PLATFORM, "workflow/processCentres/tasks", app, body)
        return {
            "success": True,
            "result": [{"taskId": t["taskId"], "userId": t["userId"]} for t in made],
        }

    def pc_update_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise missing("tasks")
        with self._write_lock:
            changed = []
            for entry in tasks:
                if not isinstance(entry, dict) or not entry.get("taskId"):
                    raise missing("taskId")
                status, result = entry.get("status"), entry.get("result") or ""
                if status not in PC_TASK_STATUSES:
                    raise invalid(f"status must be one of {', '.join(PC_TASK_STATUSES)}")
                if result and result not in PC_RESULTS:
                    raise invalid("result must be agree or refuse")
                task = self.store.get(PLATFORM, "pc_task", str(entry["taskId"]))
                wanted = args.get("processInstanceId")
                if task is None or wanted not in (None, "", task["processInstanceId"]):
                    raise invalid(f"taskId {entry['taskId']}不存在")
                if task["status"] != "RUNNING" and (task["status"], task["result"]) != (
                    status,
                    result,
                ):
                    raise invalid(f"task {entry['taskId']} is {task['status']} already")
                task.update(status=status, result=result)
                task["finishTime"] = task.get("finishTime") or now_ms()
                changed.append(task)
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in changed]
            )
            self.store.record(PLATFORM, "workflow/processCentres/tasks PUT", app, args)
        return {"success": True}

    def pc_cancel_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("activityId"):
            raise missing("activityId")
        activities = {str(args["activityId"]), *(str(a) for a in args.get("activityIds") or [])}
        with self._write_lock:
            row = self._pc_instance(args)
            open_tasks = [
                task
                for task in self.store.list(
                    PLATFORM, "pc_task", one_of={"taskId": list(row["tasks"])}
                )
                if task["status"] == "RUNNING" and task["activityId"] in activities
            ]
            for task in open_tasks:
                task.update(status="CANCELED", finishTime=now_ms())
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in open_tasks]
            )
            self.store.record(PLATFORM, "workflow/processCentres/tasks/cancel", app, args)
        return {"success": True}

    def pc_todo_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("userId"):
            raise missing("userId")
        number = as_int(args.get("pageNumber", 1), "pageNumber")
        size = as_int(args.get("pageSize", 20), "pageSize")
        if number < 1 or not 1 <= size <= 100:
            raise invalid("pageNumber starts at 1 and pageSize is 1 to 100")
        todo = self.store.list(
            PLATFORM,
            "pc_task",
            time_field="created_ms",
            equals={"userId": str(args["userId"]), "status": "RUNNING"},
        )
        page = todo[(number - 1) * size : number * size]
        keys = ("processInstanceId", "taskId", "activityId", "status", "result", "createTime")
        listed = [{k: t.get(k) for k in (*keys, "userId")} for t in page]
        return {"result": {"hasMore": number * size < len(todo), "list": listed}}

    # -- attendance --------------------------------------------------------------------------
    def attendance_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Punches of up to 50 users whose work date is in [workDateFrom, workDateTo] (≤ 7 days).

        DingTalk's errcode for a span or list over its limit is unconfirmed; 40035 here.
        """
        start = china_datetime(args.get("workDateFrom"), "workDateFrom")
        end = china_datetime(args.get("workDateTo"), "workDateTo")
        if end < start or end - start > MAX_ATTENDANCE_SPAN_MS:
            raise OapiError(40035, "workDateFrom and workDateTo must be at most 7 days apart")
        users = args.get("userIdList")
        if not isinstance(users, list) or not 0 < len(users) <= 50:
            raise OapiError(40035, "userIdList must hold 1 to 50 userIds")
        offset = int(args.get("offset", 0) or 0)
        limit = int(args.get("limit", 50) or 50)
        if offset < 0 or not 0 < limit <= 50:
            raise OapiError(40035, "offset must be >= 0 and limit between 1 and 50")
        rows = self.store.list(
            PLATFORM,
            "attendance",
            time_field="created_ms",
            from_ms=start,
            to_ms=end + 1,
            one_of={"userId": [str(u) for u in users]},
            offset=offset,
            limit=limit + 1,
        )
        return {"recordresult": rows[:limit], "hasMore": len(rows) > limit}

    # -- directory ---------------------------------------------------------------------------
    def _department(self, args: Mapping[str, Any]) -> int:
        dept = int(args.get("dept_id", 1) or 1)
        if self.store.get(PLATFORM, "department", str(dept)) is None:
            raise OapiError(60003, "部门不存在")
        return dept

    def department_listsub(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        dept = self._department(args)
        children = self.store.list(PLATFORM, "department", equals={"parent_id": dept})
        return {"result": children}

    def user_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        dept = self._department(args)
        cursor = int(args.get("cursor", 0) or 0)
        size = int(args.get("size", 0) or 0)
        if not 0 < size <= 100:
            raise OapiError(40035, "size must be between 1 and 100")
        members = [u for u in self.store.list(PLATFORM, "user") if dept in u["dept_id_list"]]
        page = members[cursor : cursor + size]
        result: dict[str, Any] = {"has_more": cursor + size < len(members), "list": page}
        if result["has_more"]:
            result["next_cursor"] = cursor + size
        return {"result": result}

    def user_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", str(args.get("userid", "")))
        if user is None:
            raise OapiError(60121, "找不到该用户")
        return {"result": user}

    # -- work notifications ------------------------------------------------------------------
    def asyncsend(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """A work notification: accepted at once, delivered later, the excess dropped silently.

        The same content reaches a user at most once a day per app; a repeat still "succeeds"
        and the user shows up in getsendresult's forbidden list (platform-apis.md §2.1).
        """
        creds = self.credentials()
        if str(args.get("agent_id", "")) != creds["agentId"]:
            raise OapiError(40056, "不合法的agent_id")  # the errcode is unconfirmed
        msg = args.get("msg")
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                msg = None
        if not isinstance(msg, dict) or not msg.get("msgtype"):
            raise OapiError(40035, "msg must hold a msgtype")
        if len(json.dumps(msg, ensure_ascii=False).encode()) > 2048:
            raise OapiError(40035, "msg must be at most 2048 bytes")
        users = {u["userid"] for u in self.store.list(PLATFORM, "user")}
        wanted = [u for u in str(args.get("userid_list", "") or "").split(",") if u]
        if len(wanted) > 100:
            raise OapiError(40035, "userid_list must hold at most 100 userids")
        if str(args.get("to_all_user", "false")).lower() == "true":
            wanted = sorted(users)
        invalid_users = [u for u in wanted if u not in users]
        targets = list(dict.fromkeys(u for u in wanted if u in users))
        digest = hashlib.sha256(json.dumps(msg, sort_keys=True).encode()).hexdigest()[:24]
        day = datetime.now(CHINA).strftime("%Y%m%d")
        task_id = secrets.randbelow(9 * 10**11) + 10**11
        with self._write_lock:
            seen = {
                row["userid"]
                for row in self.store.list(
                    PLATFORM,
                    "notified",
                    one_of={"key": [f"{day}:{u}:{digest}" for u in targets]},
                )
            }
            delivered = [u for u in targets if u not in seen]
            forbidden = [u for u in targets if u in seen]
            self.store.put_many(
                PLATFORM,
                "notified",
                [
                    (f"{day}:{u}:{digest}", {"key": f"{day}:{u}:{digest}", "userid": u}, None, None)
                    for u in delivered
                ],
            )
            task = {
                "task_id": task_id,
                "invalid_user_id_list": invalid_users,
                "forbidden_user_id_list": forbidden,
                "unread_user_id_list": delivered,
            }
            self.store.put(PLATFORM, "send_task", str(task_id), task)
            body = {**args, "task_id": task_id, "delivered_to": delivered}
            self.store.record(PLATFORM, "message/corpconversation/asyncsend_v2", app, body)
        return {"task_id": task_id}

    def getsendresult(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        task = self.store.get(PLATFORM, "send_task", str(args.get("task_id", "")))
        if task is None:
            raise OapiError(40035, "task_id不存在")
        return {
            "send_result": {
                "invalid_user_id_list": task["invalid_user_id_list"],
                "forbidden_user_id_list": task["forbidden_user_id_list"],
                "failed_user_id_list": [],
                "read_user_id_list": [],
                "unread_user_id_list": task["unread_user_id_list"],
                "invalid_dept_id_list": [],
                "forbidden_list": [],
            }
        }

    # -- interactive cards -------------------------------------------------------------------
    def _spaces(self, args: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(spaceType, spaceId) pairs of "dtv1.card//IM_GROUP.cid...;IM_ROBOT.userId"."""
        open_space = str(args.get("openSpaceId", ""))
        prefix = "dtv1.card//"
        if not open_space.startswith(prefix):
            raise invalid("openSpaceId must start with dtv1.card//")
        spaces = []
        for part in filter(None, open_space[len(prefix) :].split(";")):
            space_type, _, space_id = part.partition(".")
            if space_type not in SPACE_MODELS or not space_id:
                raise invalid(f"unsupported open space {part!r}")
            if not isinstance(args.get(SPACE_MODELS[space_type]), dict):
                raise invalid(f"{SPACE_MODELS[space_type]} is required for {space_type}")
            spaces.append((space_type, space_id))
        if not spaces:
            raise invalid("openSpaceId names no space")
        return spaces

    def _recipients(self, space_type: str, space_id: str) -> list[str] | None:
        if space_type == "IM_GROUP":
            chat = self.store.get(PLATFORM, "chat", space_id)
            return None if chat is None else list(chat["useridlist"])
        return [space_id] if self.store.get(PLATFORM, "user", space_id) is not None else None

    def create_and_deliver(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Create a card once per outTrackId and deliver it once per space.

        outTrackId is the caller's idempotency key. DingTalk does not document the answer to a
        repeat; the sandbox delivers nothing twice and answers with the first delivery's
        result, so a retry after a lost answer is harmless (DESIGN.md §3).
        """
        for name in ("cardTemplateId", "outTrackId", "cardData", "openSpaceId"):
            if args.get(name) in (None, ""):
                raise missing(name)
        spaces = self._spaces(args)
        track = str(args["outTrackId"])
        with self._write_lock:
            card = self.store.get(PLATFORM, "card", track) or {
                "outTrackId": track,
                "cardTemplateId": args["cardTemplateId"],
                "cardData": args["cardData"],
                "privateData": args.get("privateData") or {},
                "callbackType": args.get("callbackType", "STREAM"),
                "callbackRouteKey": args.get("callbackRouteKey", ""),
                "deliveries": {},
                "recipients": [],
            }
            results = []
            for space_type, space_id in spaces:
                key = f"{space_type}.{space_id}"
                if key not in card["deliveries"]:
                    recipients = self._recipients(space_type, space_id)
                    delivery: dict[str, Any] = {"spaceType": space_type, "spaceId": space_id}
                    if recipients is None:
                        delivery.update(success=False, errorMsg="space not found")
                    else:
                        delivery.update(success=True, carrierId=secrets.token_hex(16))
                        card["recipients"] = sorted({*card["recipients"], *recipients})
                        body = {**args, "spaceType": space_type, "spaceId": space_id}
                        self.store.record(
                            PLATFORM, "card/instances/createAndDeliver", app, body, idem_key=track
                        )
                    card["deliveries"][key] = delivery
                results.append(card["deliveries"][key])
            self.store.put(PLATFORM, "card", track, card)
        return {"success": True, "result": {"outTrackId": track, "deliverResults": results}}

    def update_card(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Update a card in place by outTrackId: public data, private data, or both."""
        if not args.get("outTrackId"):
            raise missing("outTrackId")
        options = args.get("cardUpdateOptions") or {}
        with self._write_lock:
            card = self.store.get(PLATFORM, "card", str(args["outTrackId"]))
            if card is None:
                raise invalid("outTrackId不存在")  # the not-found code is unconfirmed
            if isinstance(args.get("cardData"), dict):
                new = args["cardData"].get("cardParamMap") or {}
                if options.get("updateCardDataByKey"):
                    card["cardData"]["cardParamMap"] = {
                        **card["cardData"].get("cardParamMap", {}),
                        **new,
                    }
                else:
                    card["cardData"] = args["cardData"]
            for user, data in (args.get("privateData") or {}).items():
                old = card["privateData"].get(user, {}).get("cardParamMap", {})
                new = data.get("cardParamMap") or {}
                merged = {**old, **new} if options.get("updatePrivateDataByKey") else new
                card["privateData"][user] = {"cardParamMap": merged}
            self.store.put(PLATFORM, "card", card["outTrackId"], card)
            self.store.record(PLATFORM, "card/instances", app, args)
        return {"success": True, "result": True}

    # -- robot messages ----------------------------------------------------------------------
    def _robot_message(self, args: Mapping[str, Any]) -> None:
        for name in ("robotCode", "msgKey", "msgParam"):
            if not args.get(name):
                raise missing(name)
        if args["robotCode"] != self.credentials()["robotCode"]:
            raise invalid("robotCode不存在")
        try:
            json.loads(str(args["msgParam"]))
        except ValueError:
            raise invalid("msgParam must be a JSON string") from None

    def group_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        self._robot_message(args)
        if not args.get("openConversationId"):
            raise missing("openConversationId")
        chat = self.store.get(PLATFORM, "chat", str(args["openConversationId"]))
        if chat is None:
            raise invalid("openConversationId不存在")
        key = secrets.token_urlsafe(24)
        body = {**args, "processQueryKey": key, "delivered_to": chat["useridlist"]}
        self.store.record(PLATFORM, "robot/groupMessages/send", app, body)
        return {"processQueryKey": key}

    def robot_batch_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        self._robot_message(args)
        user_ids = args.get("userIds")
        if not isinstance(user_ids, list) or not 0 < len(user_ids) <= 20:
            raise invalid("userIds must hold 1 to 20 userIds")
        known = {
            u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": user_ids})
        }
        delivered = [u for u in user_ids if u in known]
        key = secrets.token_urlsafe(24)
        body = {**args, "processQueryKey": key, "delivered_to": delivered}
        self.store.record(PLATFORM, "robot/oToMessages/batchSend", app, body)
        return {
            "processQueryKey": key,
            "invalidStaffIdList": [u for u in user_ids if u not in known],
            "flowControlledStaffIdList": [],
        }

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        creds = self.credentials()
        self.store.set_setting(PLATFORM, "clock_ms", str(WORLD_END_MS))
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        userids = {p.employee_no: userid_for(p) for p in world.people}
        heads: dict[str, str] = {}
        for person in world.people:
            heads.setdefault(person.department_id, userids[person.employee_no])
        departments = [
            (
                str(dept_id_for(d.id)),
                {
                    "dept_id": dept_id_for(d.id),
                    "name": d.name,
                    "parent_id": dept_id_for(d.parent_id) if d.parent_id else 0,
                    "create_dept_group": True,
                    "auto_add_user": True,
                },
                None,
                None,
            )
            for d in world.departments
        ]
        self.store.put_many(PLATFORM, "department", departments)
        users = [
            (userids[p.employee_no], user_row(p, userids, heads), None, None) for p in world.people
        ]
        self.store.put_many(PLATFORM, "user", users)
        chats = [
            (
                conversation_id_for(g.id),
                {
                    "openConversationId": conversation_id_for(g.id),
                    "chatid": "chat" + hashlib.sha256(g.id.encode()).hexdigest()[:28],
                    "name": g.name,
                    "owner": userids[g.owner_no],
                    "useridlist": [userids[n] for n in g.member_nos],
                },
                None,
                None,
            )
            for g in world.groups
        ]
        self.store.put_many(PLATFORM, "chat", chats)
        instance_count = 0
        for chunk in batched(world.approvals(approvals)):
            rows = [instance_stub(a, world, userids) for a in chunk]
            for code in PROCESS_CODES.values():
                mine = [r for r in rows if r[1]["processCode"] == code]
                instance_count += self.store.put_many(PLATFORM, instance_kind(code), mine)
        record_count = 0
        for chunk in batched(enumerate(world.checkins(checkin_days), start=1)):
            rows = [attendance_row(n, c, userids, creds["corpId"]) for n, c in chunk]
            record_count += self.store.put_many(PLATFORM, "attendance", rows)
        return {
            "departments": len(departments),
            "users": len(users),
            "chats": len(chats),
            "instances": instance_count,
            "attendance_records": record_count,
        }

    # -- the simulated user ------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a DingTalk user and send the event DingTalk would send.

        kinds:
          check_url             the subscription check every receiver must answer
          bpms_task_change      {process_instance_id, [decision: agree|refuse, user_id, remark]}:
                                the assignee decides (or, without a decision, the current task
                                is announced as started)
          bpms_instance_change  {process_instance_id, type: start|finish|terminate}; terminate
                                withdraws a running instance, as its originator would
          card_action           {out_track_id, user_id, [action_id, params]}: a card button
        """
        kind = action.get("kind")
        if kind == "check_url":
            return self._send_event({"EventType": "check_url"})
        if kind == "bpms_task_change":
            return self._task_change(action)
        if kind == "bpms_instance_change":
            return self._instance_change(action)
        if kind == "card_action":
            return self._card_action(action)
        raise PressError(
            "dingtalk press kind must be check_url, bpms_task_change, bpms_instance_change"
            f" or card_action, not {kind!r}"
        )

    def _crypto(self) -> WXBizMsgCrypt:
        creds = self.credentials()
        return WXBizMsgCrypt(creds["token"], creds["aes_key"], creds["appKey"])

    def _send_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Encrypt one event, POST it, and check that each answer is the encrypted "success"."""
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("dingtalk has no callback_url setting: set it before pressing")
        crypto = self._crypto()
        sealed = crypto.seal(json.dumps(event, ensure_ascii=False), timestamp=str(now_ms()))
        answers: list[dict[str, Any]] = []

        def check(status: int, body: bytes) -> None:
            answer = {"event": event.get("EventType"), "status": status, "acknowledged": False}
            try:
                reply = json.loads(body)
                plain = crypto.verify(
                    str(reply["msg_signature"]),
                    str(reply["timeStamp"]),
                    str(reply["nonce"]),
                    str(reply["encrypt"]),
                )
                answer["acknowledged"] = status == 200 and plain == "success"
            except (ValueError, KeyError, TypeError, CryptoError) as exc:
                answer["error"] = type(exc).__name__
            answers.append(answer)
            self.callback_answers.append(answer)

        statuses = deliver_callback(
            self.store,
            PLATFORM,
            url,
            body=json.dumps({"encrypt": sealed.encrypt}).encode(),
            headers={"Content-Type": "application/json"},
            params={
                "msg_signature": sealed.msg_signature,
                "timestamp": sealed.timestamp,
                "nonce": sealed.nonce,
            },
            on_answer=check,
        )
        return {
            "delivered": statuses,
            "acknowledged": [a["acknowledged"] for a in answers],
            "event": dict(event),
        }

    def _instance(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = str(action.get("process_instance_id", ""))
        row = self._load_instance(instance_id)
        if row is None:
            raise PressError(f"no dingtalk process instance {instance_id!r}")
        return row

    def _event_base(self, row: Mapping[str, Any], event_type: str) -> dict[str, Any]:
        result = row["result"]
        return {
            "EventType": event_type,
            "processInstanceId": row["processInstanceId"],
            "corpId": self.credentials()["corpId"],
            "createTime": row["createTimeMs"],
            "title": result["title"],
            "processCode": row["processCode"],
            "bizCategoryId": "",
            "businessId": result["businessId"],
        }

    def _task_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        decision = action.get("decision")
        with self._write_lock:
            row = self._instance(action)
            running = [t for t in row["result"]["tasks"] if t["status"] == "RUNNING"]
            if not running:
                raise PressError(f"instance {row['processInstanceId']} has no running task")
            task = running[0]
            if decision is not None:
                user = str(action.get("user_id") or task["userId"])
                try:
                    decide(row, task["taskId"], user, str(decision), str(action.get("remark", "")))
                except ApiError as exc:
                    raise PressError(exc.message) from None
                self._save_instance(row)
        event = {**self._event_base(row, "bpms_task_change"), "staffId": task["userId"]}
        event["taskId"] = task["taskId"]
        if decision is None:
            event["type"] = "start"
        else:
            event.update(type="finish", result=str(decision), remark=str(action.get("remark", "")))
            event["finishTime"] = now_ms()
        sent = self._send_event(event)
        if decision is not None and row["result"]["status"] != "RUNNING":
            finished = self._instance_event(row, "finish")
            sent["instance_event"] = self._send_event(finished)
        return sent

    def _instance_event(self, row: Mapping[str, Any], event_type: str) -> dict[str, Any]:
        result = row["result"]
        event = {**self._event_base(row, "bpms_instance_change"), "type": event_type}
        event["staffId"] = result["originatorUserId"]
        event["url"] = (
            "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?corpid="
            f"{self.credentials()['corpId']}&procInstId={row['processInstanceId']}#approval"
        )
        if event_type == "finish":
            event["result"] = result["result"]
        if event_type in ("finish", "terminate"):
            event["finishTime"] = now_ms()
        return event

    def _instance_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        event_type = str(action.get("type", "start"))
        if event_type not in ("start", "finish", "terminate"):
            raise PressError(f"type must be start, finish or terminate, not {event_type!r}")
        with self._write_lock:
            row = self._instance(action)
            if event_type == "terminate":
                if row["result"]["status"] != "RUNNING":
                    raise PressError(f"instance {row['processInstanceId']} is not running")
                terminate(row)
                self._save_instance(row)
        return self._send_event(self._instance_event(row, event_type))

    def _card_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        track = str(action.get("out_track_id", ""))
        card = self.store.get(PLATFORM, "card", track)
        if card is None:
            raise PressError(f"no dingtalk card with outTrackId {track!r}")
        user = str(action.get("user_id") or (card["recipients"] or [""])[0])
        if user not in card["recipients"]:
            raise PressError(f"{user} did not receive card {track}")
        private = {
            "actionIds": [str(action.get("action_id", "action"))],
            "params": dict(action.get("params") or {}),
        }
        event = {
            # Not a DingTalk EventType: the Stream topic of card callbacks names this payload,
            # which DingTalk sends over Stream mode; the sandbox sends it over HTTP instead.
            "EventType": CARD_TOPIC,
            "outTrackId": track,
            "corpId": self.credentials()["corpId"],
            "userId": user,
            "type": "actionCallback",
            "content": json.dumps({"cardPrivateData": private}, ensure_ascii=False),
            "extension": "{}",
        }
        return self._send_event(event)


# -- the model: instances as DingTalk shows them -----------------------------------------------
def decide(row: dict[str, Any], task_id: int, user_id: str, decision: str, remark: str) -> None:
    """Apply one assignee's agree/refuse to an instance, creating the next task if any."""
    result = row["result"]
    if result["status"] != "RUNNING":
        raise invalid("process instance is not running")
    task = next((t for t in result["tasks"] if t["taskId"] == task_id), None)
    if task is None or task["status"] != "RUNNING":
        raise invalid("task is not running")
    if task["userId"] != user_id:
        raise ApiError(403, "Forbidden.NotTaskOwner", "only the task's assignee may act on it")
    if decision not in ("agree", "refuse"):
        raise invalid("result must be agree or refuse")
    at = now_ms()
    task.update(status="COMPLETED", result=decision.upper(), finishTime=utc_minute(at))
    result["operationRecords"].append(
        {
            "userId": user_id,
            "date": utc_minute(at),
            "type": "EXECUTE_TASK_NORMAL",
            "result": decision.upper(),
            "remark": remark,
            "showName": "审批人",
            "activityId": task["activityId"],
        }
    )
    chain = result["approverUserIds"]
    position = chain.index(user_id) if user_id in chain else len(chain) - 1
    if decision == "agree" and position + 1 < len(chain):
        result["tasks"].append(new_task(row, position + 1, chain[position + 1], at))
        return
    result.update(status="COMPLETED", result=decision, finishTime=utc_minute(at))
    row["status"] = "COMPLETED"


def terminate(row: dict[str, Any]) -> None:
    """The originator withdraws a running instance: its open task is canceled."""
    result = row["result"]
    at = now_ms()
    for task in result["tasks"]:
        if task["status"] == "RUNNING":
            task.update(status="CANCELED", result="NONE", finishTime=utc_minute(at))
    result["operationRecords"].append(
        {
            "userId": result["originatorUserId"],
            "date": utc_minute(at),
            "type": "TERMINATE_PROCESS_INSTANCE",
            "result": "NONE",
            "remark": "",
            "showName": "发起人",
        }
    )
    result.update(status="TERMINATED", result="", finishTime=utc_minute(at))
    row["status"] = "TERMINATED"


def new_task(row: Mapping[str, Any], position: int, user_id: str, at_ms: int) -> dict[str, Any]:
    instance_id = row["processInstanceId"]
    task_id = TASK_ID_BASE + row["number"] * 10 + position
    return {
        "taskId": task_id,
        "userId": user_id,
        "status": "RUNNING",
        "result": "NONE",
        "createTime": utc_minute(at_ms),
        "activityId": f"act_{position + 1}",
        "processInstanceId": instance_id,
        "pcUrl": f"https://aflow.dingtalk.com/dingtalk/pc/query/pchomepage.htm?procInstId={instance_id}&taskId={task_id}",
        "mobileUrl": f"https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?procInstId={instance_id}&taskId={task_id}",
    }


def instance_stub(
    approval: Approval, world: World, userids: Mapping[str, str]
) -> tuple[str, dict[str, Any], int, int]:
    """What instanceIds/query filters on, and the world number `instance_result` expands."""
    instance_id = instance_id_for(world, approval)
    row: dict[str, Any] = {
        "processInstanceId": instance_id,
        "processCode": PROCESS_CODES[approval.template],
        "number": approval.number,
        "createTimeMs": approval.created_ms,
        "originatorUserId": userids[approval.applicant_no],
        "status": INSTANCE_STATUS[approval.state],
    }
    return instance_id, row, approval.created_ms, approval.updated_ms


def instance_result(
    approval: Approval, world: World, userids: Mapping[str, str], row: Mapping[str, Any]
) -> dict[str, Any]:
    """One world approval as getProcessInstance's `result`."""
    applicant = world.person(approval.applicant_no)
    chain = [userids[n] for n in approval.approver_nos]
    records = [
        {
            "userId": userids[approval.applicant_no],
            "date": utc_minute(approval.created_ms),
            "type": "START_PROCESS_INSTANCE",
            "result": "NONE",
            "remark": "",
            "showName": "发起人",
        }
    ]
    tasks = []
    previous = approval.created_ms
    for step in approval.history[1:]:
        if step.action in ("approve", "reject"):
            position = approval.approver_nos.index(step.approver_no)
            task = new_task(row, position, userids[step.approver_no], previous)
            verdict = "AGREE" if step.action == "approve" else "REFUSE"
            task.update(status="COMPLETED", result=verdict, finishTime=utc_minute(step.at_ms))
            tasks.append(task)
            records.append(
                {
                    "userId": userids[step.approver_no],
                    "date": utc_minute(step.at_ms),
                    "type": "EXECUTE_TASK_NORMAL",
                    "result": verdict,
                    "remark": step.comment,
                    "showName": "审批人",
                    "activityId": task["activityId"],
                }
            )
        elif step.action == "revoke":
            position = len(tasks)
            task = new_task(row, position, chain[position], previous)
            task.update(status="CANCELED", result="NONE", finishTime=utc_minute(step.at_ms))
            tasks.append(task)
            records.append(
                {
                    "userId": userids[approval.applicant_no],
                    "date": utc_minute(step.at_ms),
                    "type": "TERMINATE_PROCESS_INSTANCE",
                    "result": "NONE",
                    "remark": step.comment,
                    "showName": "发起人",
                }
            )
        previous = step.at_ms
    if approval.state == "pending":
        position = len(tasks)
        tasks.append(new_task(row, position, chain[position], previous))
    finished = approval.state != "pending"
    return {
        "title": approval.title,
        "createTime": utc_minute(approval.created_ms),
        "finishTime": utc_minute(approval.updated_ms) if finished else "",
        "originatorUserId": userids[approval.applicant_no],
        "originatorDeptId": str(dept_id_for(applicant.department_id)),
        "originatorDeptName": world.departments[int(applicant.department_id[1:]) - 1].name,
        "status": INSTANCE_STATUS[approval.state],
        "result": INSTANCE_RESULT.get(approval.state, ""),
        "approverUserIds": chain,
        "ccUserIds": [],
        "businessId": china_minute(approval.created_ms).translate(DIGITS_ONLY)
        + f"{approval.number:06d}",
        "bizAction": "NONE",
        "bizData": "",
        "mainProcessInstanceId": "",
        "attachedProcessInstanceIds": [],
        "formComponentValues": form_values(approval),
        "operationRecords": records,
        "tasks": tasks,
    }


def form_values(approval: Approval) -> list[dict[str, Any]]:
    """formComponentValues with DingTalk's component types for the world's templates."""
    form = approval.form

    def field(component: str, name: str, value: str, number: int) -> dict[str, Any]:
        return {
            "componentType": component,
            "name": name,
            "id": f"{component}-J{number:09d}",
            "value": value,
            "extValue": "",
            "bizAlias": "",
        }

    if approval.template == "leave":
        span = json.dumps(
            [
                china_minute(form["start_ms"]),
                china_minute(form["end_ms"]),
            ]
        )
        return [
            field("DDSelectField", "Leave type", form["leave_type"], 1),
            field("DDDateRangeField", "Period", span, 2),
            field("NumberField", "Days", str(form["days"]), 3),
            field("TextareaField", "Reason", form["reason"], 4),
        ]
    if approval.template == "expense":
        return [
            field("MoneyField", "Amount", f"{form['amount']:.2f}", 1),
            field("DDSelectField", "Category", form["category"], 2),
            field("TextareaField", "Reason", form["reason"], 3),
        ]
    return [
        field("TextField", "Subject", form["subject"], 1),
        field("TextareaField", "Detail", form["detail"], 2),
    ]


def user_row(
    person: Person, userids: Mapping[str, str], heads: Mapping[str, str]
) -> dict[str, Any]:
    userid = userids[person.employee_no]
    return {
        "userid": userid,
        "unionid": hashlib.sha256(f"union/{userid}".encode()).hexdigest()[:27],
        "name": person.name,
        "avatar": "",
        "state_code": "86",
        "mobile": person.mobile.replace("+86-", ""),
        "job_number": person.employee_no,
        "title": "Manager" if heads.get(person.department_id) == userid else "Staff",
        "email": person.email,
        "org_email": person.email,
        "dept_id_list": [dept_id_for(person.department_id)],
        "leader": heads.get(person.department_id) == userid,
        "hired_date": EPOCH_MS - person.index * 30 * DAY_MS,
        "active": True,
        "admin": person.index == 1,
        "boss": person.index == 1,
    }


def attendance_row(
    number: int, checkin: Checkin, userids: Mapping[str, str], corp_id: str
) -> tuple[str, dict[str, Any], int, int]:
    """One punch as /attendance/list shows it; keyed and ordered by work date (China time)."""
    work_date = checkin.day_ms - CST_MS  # the world's day starts 08:00 China time
    base = checkin.day_ms + (3_600_000 if checkin.kind == "on" else 10 * 3_600_000)
    lack = checkin.result == "Lack"
    time_result = {"Normal": "Normal", "Late": "Late", "Early": "Early", "Lack": "NotSigned"}
    record: dict[str, Any] = {
        "id": number,
        "recordId": number,
        "userId": userids[checkin.employee_no],
        "corpId": corp_id,
        "workDate": work_date,
        "checkType": "OnDuty" if checkin.kind == "on" else "OffDuty",
        "timeResult": time_result[checkin.result],
        "locationResult": "NotSigned" if lack else "Normal",
        "sourceType": "SYSTEM" if lack else "ATM",
        "userCheckTime": base if lack else checkin.at_ms,
        "baseCheckTime": base,
        "groupId": 1,
        "planId": number * 3,
    }
    return f"{number:012d}", record, work_date, record["userCheckTime"]
