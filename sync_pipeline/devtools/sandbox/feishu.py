"""Feishu / Lark open platform emulator: tokens, approval v4, attendance, contact, IM and cards.

Written from the vendor's contract (shared/platform-apis.md §3) and cross-checked against the
official `lark-oapi` SDK, which must work pointed at it (`domain` = this emulator's base URL).
It must not share code with our Feishu connector: an emulator built from our code would agree
with our bugs.

Conventions kept from the vendor: every path lives under `/open-apis`; bodies are
`{code, msg, data}` with `code` 0 meaning success; business errors come with HTTP 400 and an
`error{log_id, troubleshooter}` object; int64 values (times in ms) are JSON strings; an
unknown path or method is the gateway's plain-text `404 page not found`; page tokens are opaque
and a page token is only returned while `has_more` is true.

Settings (platform "feishu"): `callback_url` (where events go), `encrypt_key` (set it to "" for
plaintext, unsigned events), `token_ttl_s` (default 7200), `rate_limit_scale` (1 = the vendor's
limits, 0 = off), `external_sync_min_interval_ms` (default 0: off; see below). Simulated users:
`press({"kind": ...})` with card_action, message, approve, reject, approval_instance,
approval_task, url_verification or quick_approval.

Third-party ("external") approvals, the approval center of an OA that keeps its own flow
(lark-oapi `api/approval/v4/model/external_*`, open.feishu.cn "三方审批定义 / 实例 / 任务",
"三方快捷审批回调"). Confirmed from the SDK models and the docs:
- `POST /approval/v4/external_approvals` creates, or with a known `approval_code` replaces, a
  definition {approval_name, approval_code, group_code, group_name, description, external{
  biz_name, support_pc, support_mobile, enable_quick_operate, action_callback_url,
  action_callback_token, action_callback_key, ...}, viewers, i18n_resources, managers};
  answers data.approval_code. `GET /approval/v4/external_approvals/:approval_code` reads it.
- `POST /approval/v4/external_instances` syncs one instance by the caller's own `instance_id`
  (an upsert): status PENDING | APPROVED | REJECTED | CANCELED | DELETED | HIDDEN | TERMINATED,
  links{pc_link, mobile_link} (one at least), user_id or open_id, times in ms, and
  task_list[]{task_id, user_id | open_id, links, status PENDING | APPROVED | REJECTED |
  TRANSFERRED | DONE, create_time, end_time, update_time, action_context, action_configs[]{
  action_type APPROVE | REJECT | a key, action_name, is_need_reason, is_reason_required}}.
  update_mode REPLACE (the default: the push is the whole truth, tasks and CCs not in it are
  removed) or UPDATE (tasks and CCs are added or updated by id, none removed). Answers
  data.data = the instance as stored. Ids of instance, tasks and CCs must differ from each
  other. 1390014 "Do not synchronize the same approval instance for a short period of time!"
  exists; how short is (unconfirmed), so it only fires with `external_sync_min_interval_ms`.
- `POST /approval/v4/external_instances/check` {instances[]{instance_id, update_time, tasks[]{
  task_id, update_time}}} answers diff_instances: those unknown here or whose times differ.
- `GET /approval/v4/external_tasks` (a GET with a JSON body {approval_codes, instance_ids,
  user_ids, status}, each list at most 20; page_size default 50, at most 500) answers data[]{
  instance_id, approval_id, approval_code, status, update_time, tasks[]{id, status,
  update_time}}, page_token, has_more.
- The quick-approval callback: when an approver presses Approve / Reject on a task with
  action_configs, Feishu POSTs {action_type, action_context, user_id (the presser's user_id),
  approval_code, instance_id, task_id, reason, token = action_callback_token} to the
  definition's action_callback_url; with an action_callback_key the body is {"encrypt": ...},
  the same AES-256-CBC scheme as events (key sha256(action_callback_key), b64(iv || ct)). No
  signature header and no timestamp. Timeout 10 s (5 s in the English page). Feishu does not
  change the task itself: the third party syncs the instance back.
Unconfirmed, and chosen here: the exact codes for an unknown definition (1390002) or a bad
field (1390001); a task or CC user the tenant does not know is refused (1390001); the answer
the callback wants is HTTP 200 `{"code": 0}` (any other code counts as not accepted); an
instance push older than the one held is still applied, as given.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import inspect
import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.core import (
    SandboxStore,
    TokenState,
    deliver_callback,
    now_ms,
    scaled_limit,
)
from sync_pipeline.devtools.sandbox.emulator import Emulator, PressError
from sync_pipeline.devtools.sandbox.world import DAY_MS, Approval, Checkin, World

PLATFORM = "feishu"
API = "/open-apis"
TOKEN_TTL_S = 7200  # tenant_access_token lifetime
SAME_TOKEN_MIN_LEFT_S = 1800  # >=30 min left: the same token is handed back
UUID_WINDOW_S = 3600  # one message per `uuid` per hour
CARD_TOKEN_TTL_MS = 30 * 60 * 1000  # delayed card update token: 30 minutes ...
CARD_TOKEN_USES = 2  # ... and 2 uses (an older doc says 3)
PATCH_MAX_AGE_MS = 14 * DAY_MS  # cards can be updated for 14 days after sending
TEXT_MAX_BYTES = 150 * 1024
CARD_MAX_BYTES = 30 * 1024

# Per (app, API) limits the contract states: (calls, window seconds), each enforced.
LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "im.message.create": ((50, 1.0), (1000, 60.0)),
    "im.message.patch": ((50, 1.0), (1000, 60.0)),
    "approval.instance.get": ((50, 1.0), (1000, 60.0)),
    "attendance.user_task.query": ((50, 1.0),),
}
PER_MESSAGE_PATCH_QPS = 5  # answered with 230020 in the body, not by the gateway

RECEIVE_ID_TYPES = ("open_id", "user_id", "union_id", "email", "chat_id")
MSG_TYPES = (
    "text",
    "post",
    "image",
    "file",
    "audio",
    "media",
    "sticker",
    "interactive",
    "share_chat",
    "share_user",
)
APPROVAL_NAMES = {"leave": "Leave", "expense": "Expense claim", "general": "General request"}
INSTANCE_STATUS = {
    "pending": "PENDING",
    "approved": "APPROVED",
    "rejected": "REJECTED",
    "revoked": "CANCELED",
}
EXTERNAL_INSTANCE_STATUSES = (
    "PENDING",
    "APPROVED",
    "REJECTED",
    "CANCELED",
    "DELETED",
    "HIDDEN",
    "TERMINATED",
)
EXTERNAL_TASK_STATUSES = ("PENDING", "APPROVED", "REJECTED", "TRANSFERRED", "DONE")
EXTERNAL_TASKS_MAX_IDS = 20  # approval_codes / instance_ids / user_ids per query
ATTENDANCE_GROUP_ID = "6737202939523236110"
ATTENDANCE_SHIFT_ID = "6753520403404030215"
MISSING_AUTH_MSG = (
    "Missing access token for authorization. Please make a request with token attached."
)
INVALID_AUTH_MSG = (
    "Invalid access token for authorization. Please make a request with token attached."
)


class FeishuError(Exception):
    """A vendor error answer, raised inside a handler and rendered by `_endpoint`."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(code, msg, status)
        self.code, self.msg, self.status = code, msg, status


def _param_error(detail: str) -> FeishuError:
    # Generic gateway field validation error; the exact code per API is (unconfirmed).
    return FeishuError(99992402, f"field validation failed: {detail}")


def _approval_param_error(detail: str) -> FeishuError:
    return FeishuError(1390001, f"param is invalid: {detail}")


def _hex(*parts: object, n: int = 32) -> str:
    """A deterministic hex id, so the same world gives the same ids in every sandbox."""
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:n]


def _digits(*parts: object, n: int = 19) -> str:
    value = int(_hex(*parts, n=24), 16)
    return str(10 ** (n - 1) + value % (9 * 10 ** (n - 1)))


def _uuid_like(*parts: object) -> str:
    h = _hex(*parts).upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _ymd(ms: int) -> int:
    return int(datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d"))


def _day_ms(ymd: int) -> int:
    try:
        day = datetime.strptime(str(ymd), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise FeishuError(1220001, f"param error: invalid date {ymd}") from None
    return int(day.timestamp() * 1000)


def _public(body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the emulator's own bookkeeping fields (leading underscore) from an answer."""
    return {k: v for k, v in body.items() if not k.startswith("_")}


def _encode_token(value: Sequence[Any]) -> str:
    raw = json.dumps(list(value), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, shape: tuple[type, ...]) -> list[Any]:
    """Decode an opaque page token of the given element types, or raise ValueError."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError(token) from None
    if not isinstance(value, list) or len(value) != len(shape):
        raise ValueError(token)
    if not all(isinstance(v, t) for v, t in zip(value, shape, strict=True)):
        raise ValueError(token)
    return value


def encrypt_event(encrypt_key: str, plaintext: bytes, iv: bytes | None = None) -> str:
    """Feishu event encryption: AES-256-CBC, key sha256(encrypt_key), random IV, PKCS#7/16.

    `iv` is for tests only: with the IV of Feishu's published sample the output must be that
    sample byte for byte.
    """
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = secrets.token_bytes(16) if iv is None else iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def sign_event(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: sha256_hex(timestamp + nonce + encrypt_key + raw body)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


class _Windows:
    """Sliding windows of recent calls per key, counted the way the Feishu gateway limits."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def hit(
        self, key: tuple[str, str], limits: Iterable[tuple[int, float]]
    ) -> tuple[int, int] | None:
        """Count one call; None if allowed, else (limit, seconds until reset) of a full window."""
        limits = list(limits)
        at = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, [])
            longest = max(window for _, window in limits)
            drop = 0
            while drop < len(calls) and calls[drop] <= at - longest:
                drop += 1
            del calls[:drop]
            for limit, window in limits:
                inside = [c for c in calls if c > at - window]
                if len(inside) >= limit:
                    return limit, max(1, math.ceil(inside[0] + window - at))
            calls.append(at)
            return None


@dataclass(frozen=True)
class _Caller:
    app_id: str
    token: str


Handler = Callable[[Request, _Caller], Any]


class FeishuEmulator(Emulator):
    """Feishu open platform at its own paths, with its tokens, limits, errors and callbacks."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Feishu / Lark open platform"
    port_offset: ClassVar[int] = 4

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = _Windows()
        self._dedupe_lock = threading.Lock()

    # -- seam ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        authed: list[tuple[str, str, Handler]] = [
            ("GET", "/approval/v4/instances", self._list_instances),
            ("GET", "/approval/v4/instances/{instance_id}", self._get_instance),
            ("POST", "/approval/v4/tasks/approve", self._approve_task),
            ("POST", "/approval/v4/tasks/reject", self._reject_task),
            ("POST", "/approval/v4/approvals/{approval_code}/subscribe", self._subscribe),
            ("POST", "/approval/v4/external_approvals", self._create_external_approval),
            ("GET", "/approval/v4/external_approvals/{approval_code}", self._get_external_approval),
            ("POST", "/approval/v4/external_instances", self._sync_external_instance),
            ("POST", "/approval/v4/external_instances/check", self._check_external_instances),
            ("GET", "/approval/v4/external_tasks", self._list_external_tasks),
            ("POST", "/attendance/v1/user_tasks/query", self._query_user_tasks),
            ("GET", "/contact/v3/users/find_by_department", self._find_users_by_department),
            ("GET", "/contact/v3/users", self._find_users_by_department),
            ("GET", "/contact/v3/departments/{department_id}/children", self._department_children),
            ("POST", "/im/v1/messages", self._create_message),
            ("GET", "/im/v1/messages", self._list_messages),
            ("PATCH", "/im/v1/messages/{message_id}", self._patch_message),
            ("POST", "/interactive/v1/card/update", self._delayed_card_update),
            ("GET", "/im/v1/chats", self._list_chats),
        ]
        routes: list[BaseRoute] = [
            Route(
                f"{API}/auth/v3/tenant_access_token/internal",
                self._tenant_access_token,
                methods=["POST"],
            )
        ]
        routes += [Route(API + path, self._endpoint(fn), methods=[m]) for m, path, fn in authed]
        # The gateway answers any other path or method in plain text (observed).
        everything = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        routes.append(Route("/{path:path}", self._not_found, methods=everything))
        return routes

    def credentials(self) -> dict[str, str]:
        return {
            "app_id": self._secret("app_id", lambda: "cli_" + secrets.token_hex(8)),
            "app_secret": self._secret("app_secret", lambda: secrets.token_urlsafe(24)),
            "verification_token": self._secret("verification_token", lambda: secrets.token_hex(16)),
            "encrypt_key": self._secret("encrypt_key", lambda: secrets.token_urlsafe(24)),
            "tenant_key": self._secret("tenant_key", lambda: secrets.token_hex(8)),
            "domain": self.base_url,
        }

    def throttle_response(self) -> Response:
        return self._throttled(50, 1)

    # -- seed ---------------------------------------------------------------------------------
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        tenant = self.credentials()["tenant_key"]
        ids = {p.employee_no: _user_ids(world.seed, p.employee_no) for p in world.people}
        root = {d.id for d in world.departments if d.parent_id is None}
        dept_open = {
            d.id: "0" if d.id in root else f"od-{_hex(world.seed, d.id)}" for d in world.departments
        }
        dept_custom = {d.id: "0" if d.id in root else d.id for d in world.departments}
        parent = {d.id: d.parent_id or d.id for d in world.departments}
        counts: dict[str, int] = {}
        counts["departments"] = self.store.put_many(
            PLATFORM,
            "department",
            (
                (
                    dept_custom[d.id],
                    {
                        "name": d.name,
                        "department_id": dept_custom[d.id],
                        "open_department_id": dept_open[d.id],
                        "parent_department_id": dept_custom[parent[d.id]],
                        "_parent_open": dept_open[parent[d.id]],
                        "leader_user_id": next(
                            (
                                ids[p.employee_no]["user_id"]
                                for p in world.people
                                if p.department_id == d.id
                            ),
                            "",
                        ),
                        "member_count": sum(1 for p in world.people if p.department_id == d.id),
                        "status": {"is_deleted": False},
                        "order": i,
                    },
                    i,
                    None,
                )
                for i, d in enumerate(world.departments)
                if d.parent_id is not None  # the root "0" is the tenant itself
            ),
        )
        counts["users"] = self.store.put_many(
            PLATFORM,
            "user",
            (
                (
                    ids[p.employee_no]["open_id"],
                    {
                        **ids[p.employee_no],
                        "name": p.name,
                        "en_name": p.name,
                        "email": p.email,
                        "enterprise_email": p.email,
                        "mobile": p.mobile,
                        "mobile_visible": True,
                        "employee_no": p.employee_no,
                        "employee_type": 1,
                        "department_ids": [dept_open[p.department_id]],
                        "leader_user_id": ids[p.manager_no]["user_id"] if p.manager_no else "",
                        "status": {
                            "is_frozen": False,
                            "is_resigned": False,
                            "is_activated": True,
                            "is_exited": False,
                            "is_unjoin": False,
                        },
                        "job_title": "",
                        "_dept": dept_custom[p.department_id],
                        "_tenant_key": tenant,
                    },
                    p.index,
                    None,
                )
                for p in world.people
            ),
        )
        counts["chats"] = self.store.put_many(
            PLATFORM,
            "chat",
            (
                (
                    f"oc_{_hex(world.seed, 'chat', g.id)}",
                    {
                        "chat_id": f"oc_{_hex(world.seed, 'chat', g.id)}",
                        "avatar": "",
                        "name": g.name,
                        "description": f"Project {g.project_id}" if g.project_id else g.name,
                        "owner_id": ids[g.owner_no]["open_id"],
                        "owner_id_type": "open_id",
                        "external": False,
                        "tenant_key": tenant,
                        "chat_status": "normal",
                        "chat_mode": "group",
                        "_members": [ids[no]["open_id"] for no in g.member_nos],
                    },
                    i,
                    None,
                )
                for i, g in enumerate(world.groups, start=1)
            ),
        )
        self.store.put_many(
            PLATFORM,
            "approval",
            (
                (
                    code,
                    {"approval_code": code, "approval_name": APPROVAL_NAMES[t], "_template": t},
                    None,
                    None,
                )
                for t, code in ((t, _approval_code(world.seed, t)) for t in APPROVAL_NAMES)
            ),
        )
        # Instances are stored as (approval_code, world number) and built on read from the
        # deterministic world, so 100k of them seed in seconds; a write stores the full body.
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        counts["approval_instances"] = 0
        batch = 5000
        for start in range(1, approvals + 1, batch):
            rows = (
                (
                    _uuid_like(world.seed, "instance", a.number),
                    {"approval_code": _approval_code(world.seed, a.template), "_n": a.number},
                    a.created_ms,
                    a.updated_ms,
                )
                for a in world.approvals(min(batch, approvals + 1 - start), start)
            )
            counts["approval_instances"] += self.store.put_many(PLATFORM, "instance", rows)
        counts["attendance_results"] = self.store.put_many(
            PLATFORM, "user_task", _user_tasks(world, world.checkins(checkin_days), ids)
        )
        return counts

    # -- simulated users ----------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a Feishu user. `kind`: card_action, message, approve, reject,
        approval_instance, approval_task, url_verification or quick_approval."""
        kind = str(action.get("kind", ""))
        presses: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "card_action": self._press_card_action,
            "message": self._press_message,
            "approve": self._press_decision,
            "reject": self._press_decision,
            "approval_instance": self._press_approval_event,
            "approval_task": self._press_approval_event,
            "url_verification": self._press_url_verification,
            "quick_approval": self._press_quick_approval,
        }
        if kind not in presses:
            raise PressError(f"feishu press kind must be one of {', '.join(presses)}, not {kind!r}")
        return presses[kind](action)

    # -- plumbing -----------------------------------------------------------------------------
    def _secret(self, key: str, make: Callable[[], str]) -> str:
        value = self.store.setting(PLATFORM, key)
        if value is None:
            value = make()
            self.store.set_setting(PLATFORM, key, value)
        return value

    def _int_setting(self, key: str, default: int) -> int:
        return int(self.store.setting(PLATFORM, key) or default)

    def _limits(self, api: str) -> list[tuple[int, float]] | None:
        """The API's limits scaled by the `rate_limit_scale` setting; None when switched off."""
        scaled = [(scaled_limit(self.store, PLATFORM, n), window) for n, window in LIMITS[api]]
        return [(n, window) for n, window in scaled if n is not None] or None

    def _check_rate(self, app_id: str, api: str) -> None:
        limits = self._limits(api)
        full = None if limits is None else self._windows.hit((app_id, api), limits)
        if full is not None:
            raise _Throttled(*full)

    @staticmethod
    def _log_id() -> str:
        return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()

    def _error(self, code: int, msg: str, status: int = 400) -> JSONResponse:
        log_id = self._log_id()
        body = {
            "code": code,
            "msg": msg,
            "error": {
                "log_id": log_id,
                "troubleshooter": "排查建议查看(Troubleshooting suggestions): "
                f"https://open.feishu.cn/search?code={code}&log_id={log_id}",
            },
        }
        return JSONResponse(body, status_code=status, headers={"X-Tt-Logid": log_id})

    def _throttled(self, limit: int, reset_s: int) -> Response:
        return JSONResponse(
            {"code": 99991400, "msg": "request trigger frequency limit"},
            status_code=429,
            headers={"x-ogw-ratelimit-limit": str(limit), "x-ogw-ratelimit-reset": str(reset_s)},
        )

    @staticmethod
    def _ok(data: Any = None, msg: str = "success") -> JSONResponse:
        body: dict[str, Any] = {"code": 0, "msg": msg}
        if data is not None:
            body["data"] = data
        return JSONResponse(body)

    def _endpoint(self, handler: Handler) -> Callable[[Request], Any]:
        """Check the bearer token, then run `handler`, turning FeishuError into the answer."""

        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not header.startswith("Bearer ") or not header[7:].strip():
                return self._error(99991661, MISSING_AUTH_MSG)
            token = header[7:].strip()
            state, app = self.store.token_state(PLATFORM, token)
            if state != TokenState.OK or app is None:
                return self._error(99991663, INVALID_AUTH_MSG)
            try:
                result = handler(request, _Caller(app, token))
                if inspect.isawaitable(result):
                    result = await result
            except FeishuError as exc:
                return self._error(exc.code, exc.msg, exc.status)
            except _Throttled as exc:
                return self._throttled(exc.limit, exc.reset_s)
            return result if isinstance(result, Response) else self._ok(result)

        return endpoint

    async def _not_found(self, request: Request) -> Response:
        return PlainTextResponse("404 page not found", status_code=404)

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise FeishuError(99992402, "field validation failed: body is not JSON") from None
        if not isinstance(body, dict):
            raise FeishuError(99992402, "field validation failed: body must be a JSON object")
        return body

    @staticmethod
    def _page_size(
        request: Request, default: int, maximum: int, error: Callable[[str], FeishuError]
    ) -> int:
        raw = request.query_params.get("page_size")
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise error(f"page_size must be 1..{maximum}")
        return int(raw)

    def _keyset(
        self,
        kind: str,
        field: str,
        value: str,
        *,
        from_ms: int,
        to_ms: int,
        after: tuple[int, str] | None,
        limit: int,
        desc: bool = False,
        with_body: bool = True,
    ) -> list[tuple[int, str, str]]:
        """One page of (created_ms, id, body) after a (created_ms, id) cursor, in one query.

        Keyset paging keeps deep pages as cheap as the first, and a repeated cursor gives the
        same page, as the vendor promises.
        """
        order = "DESC" if desc else "ASC"
        cmp = "<" if desc else ">"
        column = "body" if with_body else "''"
        sql = (
            f"SELECT created_ms, id, {column} FROM objects"  # noqa: S608
            " WHERE platform = ? AND kind = ? AND json_extract(body, ?) = ?"
            " AND created_ms >= ? AND created_ms < ?"
        )
        args: list[Any] = [PLATFORM, kind, f"$.{field}", value, from_ms, to_ms]
        if after is not None:
            sql += f" AND (created_ms, id) {cmp} (?, ?)"
            args += list(after)
        sql += f" ORDER BY created_ms {order}, id {order} LIMIT ?"
        args.append(limit)
        return [(int(c), str(i), str(b)) for c, i, b in self.store.conn().execute(sql, args)]

    def _user_by(self, id_type: str, value: str) -> dict[str, Any] | None:
        if id_type == "open_id":
            return self.store.get(PLATFORM, "user", value)
        found = self.store.list(PLATFORM, "user", equals={id_type: value}, limit=1)
        return found[0] if found else None

    def _user_ids_of(self, user: Mapping[str, Any]) -> dict[str, str]:
        return {
            "union_id": user["union_id"],
            "user_id": user["user_id"],
            "open_id": user["open_id"],
        }

    def _callback_url(self) -> str:
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("set the feishu callback_url setting before pressing")
        return url

    def _deliver(self, envelope: Mapping[str, Any]) -> tuple[list[int], list[tuple[int, bytes]]]:
        """POST one event the way Feishu does: encrypted and signed when an encrypt key is set."""
        plain = json.dumps(envelope, ensure_ascii=False).encode()
        encrypt_key = self.credentials()["encrypt_key"]
        headers = {"Content-Type": "application/json; charset=utf-8"}
        body = plain
        if encrypt_key:
            body = json.dumps({"encrypt": encrypt_event(encrypt_key, plain)}).encode()
            timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
            headers["X-Lark-Request-Timestamp"] = timestamp
            headers["X-Lark-Request-Nonce"] = nonce
            headers["X-Lark-Signature"] = sign_event(timestamp, nonce, encrypt_key, body)
        answers: list[tuple[int, bytes]] = []
        statuses = deliver_callback(
            self.store,
            PLATFORM,
            self._callback_url(),
            body=body,
            headers=headers,
            on_answer=lambda status, content: answers.append((status, content)),
        )
        return statuses, answers

    def _v2(self, event_type: str, event: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        header = {
            "event_id": uuid.uuid4().hex,
            "event_type": event_type,
            "create_time": str(now_ms()),
            "token": creds["verification_token"],
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
        }
        return {"schema": "2.0", "header": header, "event": dict(event)}

    def _v1(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "uuid": uuid.uuid4().hex,
            "token": self.credentials()["verification_token"],
            "ts": f"{time.time():.3f}",
            "type": "event_callback",
            "event": dict(event),
        }

    # -- auth ---------------------------------------------------------------------------------
    async def _tenant_access_token(self, request: Request) -> Response:
        try:
            body = await self._json(request)
        except FeishuError as exc:
            return self._error(exc.code, exc.msg)
        creds = self.credentials()
        if body.get("app_id") != creds["app_id"] or body.get("app_secret") != creds["app_secret"]:
            # Observed: bad credentials are HTTP 200 with code 10003 (a wrong secret may also
            # come back as 10014 "app secret invalid" (unconfirmed)).
            return JSONResponse({"code": 10003, "msg": "invalid param"})
        token = self.store.valid_token_for(PLATFORM, creds["app_id"], SAME_TOKEN_MIN_LEFT_S)
        if token is None:
            ttl = self._int_setting("token_ttl_s", TOKEN_TTL_S)
            token = self.store.issue_token(
                PLATFORM, creds["app_id"], ttl, token="t-" + secrets.token_hex(20)
            )
            expire = ttl
        else:
            expire = self._seconds_left(token)
        return JSONResponse(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire}
        )

    def _seconds_left(self, token: str) -> int:
        row = (
            self.store.conn()
            .execute(
                "SELECT expires_ms FROM tokens WHERE platform = ? AND token = ?", (PLATFORM, token)
            )
            .fetchone()
        )
        return max(0, (int(row[0]) - now_ms()) // 1000) if row else 0

    # -- approval v4 --------------------------------------------------------------------------
    def _list_instances(self, request: Request, caller: _Caller) -> dict[str, Any]:
        q = request.query_params
        code = q.get("approval_code", "")
        if not code:
            raise _approval_param_error("approval_code is required")
        if self.store.get(PLATFORM, "approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        try:
            start, end = int(q.get("start_time", "")), int(q.get("end_time", ""))
        except ValueError:
            raise _approval_param_error("start_time and end_time are required (ms)") from None
        size = self._page_size(request, 100, 100, _approval_param_error)  # max 100 (unconfirmed)
        after = self._cursor(q.get("page_token"), _approval_param_error)
        rows = self._keyset(
            "instance",
            "approval_code",
            code,
            from_ms=start,
            to_ms=end,
            after=after,
            limit=size + 1,
            with_body=False,
        )
        data: dict[str, Any] = {"instance_code_list": [i for _, i, _ in rows[:size]]}
        data["has_more"] = len(rows) > size
        if data["has_more"]:
            data["page_token"] = _encode_token(rows[size - 1][:2])
        return data

    @staticmethod
    def _cursor(token: str | None, error: Callable[[str], FeishuError]) -> tuple[int, str] | None:
        if not token:
            return None
        try:
            created, obj_id = _decode_token(token, (int, str))
        except ValueError:
            raise error("page_token is invalid") from None
        return int(created), str(obj_id)

    def _get_instance(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "approval.instance.get")
        instance = self._instance(request.path_params["instance_id"])
        if instance is None:
            raise FeishuError(1390003, "instance code not found")
        return _public(instance)

    async def _approve_task(self, request: Request, caller: _Caller) -> dict[str, Any]:
        return self._decide(await self._json(request), request, caller, approve=True)

    async def _reject_task(self, request: Request, caller: _Caller) -> dict[str, Any]:
        return self._decide(await self._json(request), request, caller, approve=False)

    def _decide(
        self, body: Mapping[str, Any], request: Request, caller: _Caller, *, approve: bool
    ) -> dict[str, Any]:
        for field in ("approval_code", "instance_code", "user_id", "task_id"):
            if not body.get(field):
                raise _approval_param_error(f"{field} is required")
        id_type = request.query_params.get("user_id_type", "open_id")
        if id_type not in ("open_id", "user_id", "union_id"):
            raise _approval_param_error("user_id_type must be open_id, user_id or union_id")
        instance = self._instance(str(body["instance_code"]))
        if instance is None:
            raise FeishuError(1390003, "instance code not found")
        if instance["approval_code"] != body["approval_code"]:
            raise FeishuError(1390002, "approval code not found")
        user = self._user_by(id_type, str(body["user_id"]))
        task = next((t for t in instance["task_list"] if t["id"] == body["task_id"]), None)
        if task is None or user is None or task["open_id"] != user["open_id"]:
            raise _approval_param_error("task_id does not belong to user_id")
        if task["status"] != "PENDING" or instance["status"] != "PENDING":
            raise _approval_param_error("task is not pending")
        endpoint = f"POST {API}/approval/v4/tasks/{'approve' if approve else 'reject'}"
        self.store.record(PLATFORM, endpoint, caller.app_id, dict(body))
        updated = self._apply_decision(instance, task, user, approve, str(body.get("comment", "")))
        if self._subscribed(updated["approval_code"]):
            threading.Thread(
                target=self._send_approval_events, args=(updated, task["id"]), daemon=True
            ).start()
        return {}

    def _apply_decision(
        self,
        instance: dict[str, Any],
        task: dict[str, Any],
        user: Mapping[str, Any],
        approve: bool,
        comment: str,
    ) -> dict[str, Any]:
        """Close `task`, open the next approver's task or finish the instance; store it."""
        at = str(now_ms())
        task.update(status="APPROVED" if approve else "REJECTED", end_time=at)
        instance["timeline"].append(
            {
                "type": "PASS" if approve else "REJECT",
                "create_time": at,
                "user_id": user["user_id"],
                "open_id": user["open_id"],
                "task_id": task["id"],
                "comment": comment,
                "node_key": task["node_id"],
                "ext": "{}",
            }
        )
        if comment:
            instance["comment_list"].append(
                {
                    "id": _digits(instance["instance_code"], "comment", at),
                    "user_id": user["user_id"],
                    "open_id": user["open_id"],
                    "comment": comment,
                    "create_time": at,
                }
            )
        chain: list[dict[str, str]] = instance["_chain"]
        step = len([t for t in instance["task_list"] if t["status"] == "APPROVED"])
        if approve and step < len(chain):
            nxt = chain[step]
            instance["task_list"].append(
                _task(instance["instance_code"], step, nxt, "PENDING", int(at), None)
            )
        else:
            instance["status"] = "APPROVED" if approve else "REJECTED"
            instance["end_time"] = at
        self.store.put(
            PLATFORM, "instance", instance["instance_code"], instance, updated_ms=int(at)
        )
        return instance

    def _instance(self, instance_code: str) -> dict[str, Any] | None:
        """An instance as the API shows it: stored whole once written, else built from the world."""
        row = self.store.get(PLATFORM, "instance", instance_code)
        if row is None or "_n" not in row:
            return row
        raw = self.store.setting(PLATFORM, "world")
        if raw is None:
            return None
        seed, people = json.loads(raw)
        view = _world_view(int(seed), int(people))
        return _instance_body(seed, view.world.approval(int(row["_n"])), view.ids, view.dept_of)

    def _subscribed(self, approval_code: str) -> bool:
        return self.store.get(PLATFORM, "subscription", approval_code) is not None

    def _subscribe(self, request: Request, caller: _Caller) -> dict[str, Any]:
        code = request.path_params["approval_code"]
        if self.store.get(PLATFORM, "approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        if self._subscribed(code):
            raise FeishuError(1390007, "subscription existed")  # code (unconfirmed)
        self.store.put(
            PLATFORM, "subscription", code, {"approval_code": code, "app_id": caller.app_id}
        )
        self.store.record(
            PLATFORM,
            f"POST {API}/approval/v4/approvals/:approval_code/subscribe",
            caller.app_id,
            {"approval_code": code},
        )
        return {}

    # -- third-party (external) approvals -----------------------------------------------------
    async def _create_external_approval(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        for field in ("approval_name", "approval_code", "group_code"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise _approval_param_error(f"{field} is required")
        external = body.get("external")
        if not isinstance(external, dict):
            raise _approval_param_error("external is required")
        if external.get("support_pc") is False and external.get("support_mobile") is False:
            raise _approval_param_error("support_pc and support_mobile cannot both be false")
        url = external.get("action_callback_url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise _approval_param_error("action_callback_url must be an http(s) URL")
        texts = _i18n_texts(body.get("i18n_resources"))
        for field in ("approval_name", "group_name"):
            value = body.get(field)
            if isinstance(value, str) and value.startswith("@i18n@") and value not in texts:
                raise _approval_param_error(f"{field} {value} has no i18n_resources text")
        code = str(body["approval_code"])
        self.store.put(PLATFORM, "external_approval", code, {**body, "_app_id": caller.app_id})
        self.store.record(
            PLATFORM,
            f"POST {API}/approval/v4/external_approvals",
            caller.app_id,
            {**body, "external": _without_secrets(external)},
        )
        return {"approval_code": code}

    def _get_external_approval(self, request: Request, caller: _Caller) -> dict[str, Any]:
        found = self.store.get(PLATFORM, "external_approval", request.path_params["approval_code"])
        if found is None:
            raise FeishuError(1390002, "approval code not found")
        return _public(found)

    async def _sync_external_instance(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        code, instance_id = body.get("approval_code"), body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id:
            raise _approval_param_error("instance_id is required")
        if not isinstance(code, str) or self.store.get(PLATFORM, "external_approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        mode = body.get("update_mode") or "REPLACE"
        if mode not in ("REPLACE", "UPDATE"):
            raise _approval_param_error("update_mode must be REPLACE or UPDATE")
        held = self.store.get(PLATFORM, "external_instance", instance_id)
        incoming = self._external_instance(body, partial=mode == "UPDATE" and held is not None)
        with self._dedupe_lock:
            held = self.store.get(PLATFORM, "external_instance", instance_id)
            self._check_sync_interval(held)
            if mode == "UPDATE" and held is not None:
                incoming = _merge_external(held, incoming)
            _check_unique_ids(incoming)
            incoming["_synced_ms"] = now_ms()
            self.store.put(PLATFORM, "external_instance", instance_id, incoming)
            self.store.record(
                PLATFORM,
                f"POST {API}/approval/v4/external_instances",
                caller.app_id,
                dict(body),
            )
        return {"data": _public(incoming)}

    def _check_sync_interval(self, held: Mapping[str, Any] | None) -> None:
        interval = self._int_setting("external_sync_min_interval_ms", 0)
        if held is not None and interval and now_ms() - int(held["_synced_ms"]) < interval:
            raise FeishuError(
                1390014,
                "Do not synchronize the same approval instance for a short period of time!",
            )

    def _external_instance(self, body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
        """The pushed instance, checked; an UPDATE of a known instance may leave fields out."""
        status = body.get("status")
        if (status is not None or not partial) and status not in EXTERNAL_INSTANCE_STATUSES:
            raise _approval_param_error(f"status must be one of {EXTERNAL_INSTANCE_STATUSES}")
        if not partial:
            _check_links(body.get("links"), "links")
            self._external_user(body, "instance")
        instance = {k: v for k, v in body.items() if k not in ("task_list", "cc_list")}
        if body.get("user_id") or body.get("open_id"):
            instance.update(self._external_user(body, "instance"))
        for field in ("start_time", "end_time", "update_time"):
            if field in body:
                instance[field] = _int64(body[field], field)
        tasks = body.get("task_list") or []
        if not isinstance(tasks, list):
            raise _approval_param_error("task_list must be a list")
        instance["task_list"] = [self._external_task(t) for t in tasks]
        ccs = body.get("cc_list") or []
        if not isinstance(ccs, list):
            raise _approval_param_error("cc_list must be a list")
        instance["cc_list"] = [
            {**cc, **self._external_user(cc, "cc")} for cc in ccs if isinstance(cc, dict)
        ]
        return instance

    def _external_task(self, task: Any) -> dict[str, Any]:
        if not isinstance(task, dict) or not task.get("task_id"):
            raise _approval_param_error("task_list[].task_id is required")
        if task.get("status") not in EXTERNAL_TASK_STATUSES:
            raise _approval_param_error(f"task status must be one of {EXTERNAL_TASK_STATUSES}")
        _check_links(task.get("links"), "task_list[].links")
        configs = task.get("action_configs") or []
        if not isinstance(configs, list) or not all(
            isinstance(c, dict) and c.get("action_type") for c in configs
        ):
            raise _approval_param_error("action_configs[].action_type is required")
        shown = {**task, **self._external_user(task, "task")}
        for field in ("create_time", "end_time", "update_time"):
            if field in task:
                shown[field] = _int64(task[field], f"task_list[].{field}")
        return shown

    def _external_user(self, entity: Mapping[str, Any], what: str) -> dict[str, str]:
        """The user an instance, task or CC names (open_id or user_id), as both ids."""
        user = None
        if entity.get("open_id"):
            user = self._user_by("open_id", str(entity["open_id"]))
        elif entity.get("user_id"):
            user = self._user_by("user_id", str(entity["user_id"]))
        else:
            raise _approval_param_error(f"the {what} needs a user_id or an open_id")
        if user is None:
            raise _approval_param_error(f"the {what}'s user is not in this tenant")
        return {"user_id": user["user_id"], "open_id": user["open_id"]}

    async def _check_external_instances(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        wanted = body.get("instances")
        if not isinstance(wanted, list) or not wanted:
            raise _approval_param_error("instances is required")
        differ = []
        for entry in wanted:
            if not isinstance(entry, dict) or not entry.get("instance_id"):
                raise _approval_param_error("instances[].instance_id is required")
            held = self.store.get(PLATFORM, "external_instance", str(entry["instance_id"]))
            if held is None or not _same_times(held, entry):
                differ.append(entry)
        return {"diff_instances": differ}

    async def _list_external_tasks(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        filters: dict[str, set[str]] = {}
        for field in ("approval_codes", "instance_ids", "user_ids"):
            values = body.get(field)
            if values is None:
                continue
            if not isinstance(values, list) or len(values) > EXTERNAL_TASKS_MAX_IDS:
                raise _approval_param_error(f"{field} must hold at most 20 ids")
            filters[field] = {str(v) for v in values}
        status = body.get("status")
        if status is not None and status not in EXTERNAL_TASK_STATUSES:
            raise _approval_param_error(f"status must be one of {EXTERNAL_TASK_STATUSES}")
        rows = (
            [
                found
                for i in sorted(filters["instance_ids"])
                if (found := self.store.get(PLATFORM, "external_instance", i)) is not None
            ]
            if "instance_ids" in filters
            else self.store.list(PLATFORM, "external_instance", time_field="created_ms")
        )
        items = []
        for instance in rows:
            if (
                "approval_codes" in filters
                and instance["approval_code"] not in filters["approval_codes"]
            ):
                continue
            tasks = [
                {
                    "id": t["task_id"],
                    "status": t["status"],
                    "update_time": str(t.get("update_time", 0)),
                }
                for t in instance["task_list"]
                if ("user_ids" not in filters or t["user_id"] in filters["user_ids"])
                and (status is None or t["status"] == status)
            ]
            if tasks or not ({"user_ids"} & set(filters) or status):
                items.append(
                    {
                        "instance_id": instance["instance_id"],
                        "approval_id": _digits(instance["approval_code"]),
                        "approval_code": instance["approval_code"],
                        "status": instance["status"],
                        "update_time": str(instance.get("update_time", 0)),
                        "tasks": tasks,
                    }
                )
        page, meta = self._slice(request, items, 50, 500)
        return {"data": page, **meta}

    # -- attendance ---------------------------------------------------------------------------
    async def _query_user_tasks(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "attendance.user_task.query")
        employee_type = request.query_params.get("employee_type", "")
        if employee_type not in ("employee_id", "employee_no"):
            raise FeishuError(
                1220001, "param error: employee_type must be employee_id or employee_no"
            )
        body = await self._json(request)
        user_ids = body.get("user_ids")
        if not isinstance(user_ids, list) or not 1 <= len(user_ids) <= 50:
            raise FeishuError(1220001, "param error: user_ids must hold 1..50 ids")
        try:
            day_from, day_to = int(body["check_date_from"]), int(body["check_date_to"])
        except (KeyError, TypeError, ValueError):
            raise FeishuError(
                1220001, "param error: check_date_from/to are yyyyMMdd ints"
            ) from None
        # The maximum span of one query is (unconfirmed); the sandbox does not limit it.
        from_ms, to_ms = _day_ms(day_from), _day_ms(day_to) + DAY_MS
        field = "user_id" if employee_type == "employee_id" else "employee_no"
        users = self.store.list(PLATFORM, "user", one_of={field: [str(u) for u in user_ids]})
        by_feishu_id = {u["user_id"]: u for u in users}
        known = {str(u[field]) for u in users}
        tasks = self.store.list(
            PLATFORM,
            "user_task",
            time_field="created_ms",
            from_ms=from_ms,
            to_ms=to_ms,
            one_of={"user_id": list(by_feishu_id)},
        )
        results = []
        for t in tasks:
            shown = str(by_feishu_id[t["user_id"]][field])
            result = _public(t) | {"user_id": shown}
            result["records"] = [
                {
                    **r,
                    **{
                        k: {**r[k], "user_id": shown, "creator_id": shown}
                        for k in ("check_in_record", "check_out_record")
                        if k in r
                    },
                }
                for r in t["records"]
            ]
            results.append(result)
        return {
            "user_task_results": results,
            "invalid_user_ids": [str(u) for u in user_ids if str(u) not in known],
            "unauthorized_user_ids": [],
        }

    # -- contact ------------------------------------------------------------------------------
    def _department(self, dept_id: str, id_type: str) -> dict[str, Any] | None:
        if id_type == "department_id":
            return self.store.get(PLATFORM, "department", dept_id)
        found = self.store.list(
            PLATFORM, "department", equals={"open_department_id": dept_id}, limit=1
        )
        return found[0] if found else None

    def _custom_dept_id(self, request: Request, dept_id: str) -> str:
        id_type = request.query_params.get("department_id_type", "open_department_id")
        if id_type not in ("open_department_id", "department_id"):
            raise _param_error("department_id_type must be open_department_id or department_id")
        if dept_id == "0":
            return "0"
        dept = self._department(dept_id, id_type)
        if dept is None:
            raise FeishuError(40003, "internal error: department not found")  # code (unconfirmed)
        return str(dept["department_id"])

    def _offset_page(
        self,
        request: Request,
        kind: str,
        equals: Mapping[str, Any] | None,
        default: int,
        maximum: int,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A page of a small collection; the page token carries the offset."""
        size = self._page_size(request, default, maximum, _param_error)
        offset = self._offset(request)
        rows = self.store.list(
            PLATFORM, kind, time_field="created_ms", equals=equals, offset=offset, limit=size + 1
        )
        meta: dict[str, Any] = {"has_more": len(rows) > size}
        if meta["has_more"]:
            meta["page_token"] = _encode_token([offset + size])
        return rows[:size], meta

    def _find_users_by_department(self, request: Request, caller: _Caller) -> dict[str, Any]:
        dept_id = request.query_params.get("department_id", "")
        if not dept_id:
            raise _param_error("department_id is required")
        custom = self._custom_dept_id(request, dept_id)
        rows, meta = self._offset_page(request, "user", {"_dept": custom}, 10, 50)
        if request.query_params.get("department_id_type") == "department_id":
            for user in rows:
                user["department_ids"] = [user["_dept"]]
        return {"items": [_public(u) for u in rows], **meta}

    def _department_children(self, request: Request, caller: _Caller) -> dict[str, Any]:
        custom = self._custom_dept_id(request, request.path_params["department_id"])
        children = self._children_of([custom])
        if request.query_params.get("fetch_child") == "true":
            frontier = children
            while frontier:
                frontier = self._children_of([d["department_id"] for d in frontier])
                children += frontier
        page, meta = self._slice(request, children, 10, 50)
        by_type = request.query_params.get("department_id_type", "open_department_id")
        items = []
        for dept in page:
            item = _public(dept)
            if by_type == "open_department_id":
                item["parent_department_id"] = dept["_parent_open"]
            items.append(item)
        return {"items": items, **meta}

    def _slice(
        self, request: Request, rows: list[dict[str, Any]], default: int, maximum: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A page of a list already in memory; the page token carries the offset."""
        size = self._page_size(request, default, maximum, _param_error)
        start = self._offset(request)
        meta: dict[str, Any] = {"has_more": start + size < len(rows)}
        if meta["has_more"]:
            meta["page_token"] = _encode_token([start + size])
        return rows[start : start + size], meta

    @staticmethod
    def _offset(request: Request) -> int:
        token = request.query_params.get("page_token")
        if not token:
            return 0
        try:
            (offset,) = _decode_token(token, (int,))
        except ValueError:
            raise _param_error("page_token is invalid") from None
        return int(offset)

    def _children_of(self, parents: Sequence[str]) -> list[dict[str, Any]]:
        return self.store.list(
            PLATFORM,
            "department",
            time_field="created_ms",
            one_of={"parent_department_id": list(parents)},
        )

    # -- IM -----------------------------------------------------------------------------------
    async def _create_message(self, request: Request, caller: _Caller) -> Response | dict[str, Any]:
        self._check_rate(caller.app_id, "im.message.create")
        id_type = request.query_params.get("receive_id_type", "")
        if id_type not in RECEIVE_ID_TYPES:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. receive_id_type"
            )
        body = await self._json(request)
        msg_type, content = body.get("msg_type"), body.get("content")
        receive_id = str(body.get("receive_id", ""))
        if msg_type not in MSG_TYPES or not isinstance(content, str) or not receive_id:
            raise FeishuError(230001, "Your request contains an invalid request parameter.")
        _check_content(msg_type, content)
        dedupe = body.get("uuid")
        if dedupe is not None and (not isinstance(dedupe, str) or len(dedupe) > 50):
            raise FeishuError(230001, "Your request contains an invalid request parameter. uuid")
        with self._dedupe_lock:
            if dedupe:
                first = self.store.find_write(PLATFORM, f"im.message.uuid:{dedupe}", UUID_WINDOW_S)
                if first is not None:
                    # The vendor answers the first message again; nothing is sent twice.
                    earlier = self.store.get(PLATFORM, "message", first.body["message_id"])
                    if earlier is not None:
                        return _public(earlier)
            chat_id = self._chat_for(id_type, receive_id)
            message = self._new_message(chat_id, msg_type, content, self._app_sender())
            self.store.put(
                PLATFORM,
                "message",
                message["message_id"],
                message,
                created_ms=int(message["create_time"]),
            )
            self.store.record(
                PLATFORM,
                f"POST {API}/im/v1/messages",
                caller.app_id,
                {**body, "receive_id_type": id_type, "message_id": message["message_id"]},
                idem_key=f"im.message.uuid:{dedupe}" if dedupe else None,
            )
        return _public(message)

    def _app_sender(self) -> dict[str, str]:
        creds = self.credentials()
        return {
            "id": creds["app_id"],
            "id_type": "app_id",
            "sender_type": "app",
            "tenant_key": creds["tenant_key"],
        }

    @staticmethod
    def _new_message(
        chat_id: str, msg_type: str, content: str, sender: Mapping[str, str], **extra: Any
    ) -> dict[str, Any]:
        at = str(now_ms())
        return {
            "message_id": "om_" + uuid.uuid4().hex,
            "root_id": "",
            "parent_id": "",
            "msg_type": msg_type,
            "create_time": at,
            "update_time": at,
            "deleted": False,
            "updated": False,
            "chat_id": chat_id,
            "sender": dict(sender),
            "body": {"content": content},
            **extra,
        }

    def _chat_for(self, id_type: str, receive_id: str) -> str:
        """The chat a message lands in: the group itself, or the bot's p2p chat with the user."""
        if id_type == "chat_id":
            chat = self.store.get(PLATFORM, "chat", receive_id)
            if chat is None:
                raise FeishuError(230002, "The bot can not be outside the group.")
            return receive_id
        user = self._user_by(id_type, receive_id)
        if user is None:
            # Unknown or out-of-scope user; code per the send doc's error table (unconfirmed).
            raise FeishuError(230013, "Bot has NO availability to this user.")
        return self._p2p_chat(user)

    def _p2p_chat(self, user: Mapping[str, Any]) -> str:
        chat_id = "oc_" + _hex("p2p", user["open_id"])
        if self.store.get(PLATFORM, "chat", chat_id) is None:
            self.store.put(
                PLATFORM,
                "chat",
                chat_id,
                {"chat_id": chat_id, "chat_mode": "p2p", "_members": [user["open_id"]]},
            )
        return chat_id

    def _list_messages(self, request: Request, caller: _Caller) -> dict[str, Any]:
        q = request.query_params
        if q.get("container_id_type") != "chat":
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. container_id_type"
            )
        chat_id = q.get("container_id", "")
        if self.store.get(PLATFORM, "chat", chat_id) is None:
            raise FeishuError(230002, "The bot can not be outside the group.")
        try:
            start = int(q.get("start_time") or 0) * 1000  # seconds on this API
            end = int(q["end_time"]) * 1000 + 1000 if q.get("end_time") else 2**62
        except ValueError:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. time"
            ) from None
        sort = q.get("sort_type", "ByCreateTimeAsc")
        if sort not in ("ByCreateTimeAsc", "ByCreateTimeDesc"):
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. sort_type"
            )
        size = self._page_size(
            request, 20, 50, lambda d: FeishuError(230001, f"invalid page_size: {d}")
        )
        after = self._cursor(
            q.get("page_token"),
            lambda d: FeishuError(
                230001, f"Your request contains an invalid request parameter. {d}"
            ),
        )
        rows = self._keyset(
            "message",
            "chat_id",
            chat_id,
            from_ms=start,
            to_ms=end,
            after=after,
            limit=size + 1,
            desc=sort == "ByCreateTimeDesc",
        )
        data: dict[str, Any] = {
            "has_more": len(rows) > size,
            "items": [_public(json.loads(b)) for _, _, b in rows[:size]],
        }
        if data["has_more"]:
            data["page_token"] = _encode_token(rows[size - 1][:2])
        return data

    async def _patch_message(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "im.message.patch")
        message_id = request.path_params["message_id"]
        limits = self._limits("im.message.patch")
        if limits is not None:
            per_message = max(
                1, round(PER_MESSAGE_PATCH_QPS * limits[0][0] / LIMITS["im.message.patch"][0][0])
            )
            if (
                self._windows.hit((message_id, "im.message.patch"), [(per_message, 1.0)])
                is not None
            ):
                raise FeishuError(230020, "This operation triggers the frequency limit.")
        body = await self._json(request)
        content = body.get("content")
        if not isinstance(content, str):
            raise FeishuError(230001, "Your request contains an invalid request parameter. content")
        message = self.store.get(PLATFORM, "message", message_id)
        if message is None:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. message_id"
            )
        if message["deleted"]:
            raise FeishuError(230011, "The message is recalled.")
        if message["msg_type"] != "interactive" or message["sender"].get("sender_type") != "app":
            # Only the app's own interactive cards can be patched; the exact code is (unconfirmed).
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. msg_type"
            )
        if now_ms() - int(message["create_time"]) > PATCH_MAX_AGE_MS:
            raise FeishuError(230031, "Message can only be modified within 14 days after sending.")
        _check_content("interactive", content)
        if not (_update_multi(message["body"]["content"]) and _update_multi(content)):
            # "update_multi": true is required before and after; the exact code is (unconfirmed).
            raise FeishuError(230099, "Failed to create card content. update_multi must be true")
        self._update_card(message, content)
        self.store.record(
            PLATFORM,
            f"PATCH {API}/im/v1/messages/:message_id",
            caller.app_id,
            {"message_id": message_id, "content": content},
        )
        return {}

    def _update_card(self, message: dict[str, Any], content: str) -> None:
        message["body"]["content"] = content
        message["update_time"] = str(now_ms())
        message["updated"] = True
        self.store.put(PLATFORM, "message", message["message_id"], message)

    async def _delayed_card_update(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        token, card = body.get("token"), body.get("card")
        if not isinstance(token, str) or not isinstance(card, dict):
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. token/card"
            )
        grant = self.store.get(PLATFORM, "card_token", token)
        # Expired, used-up and unknown tokens: the vendor's exact code is (unconfirmed).
        if grant is None or now_ms() > grant["expires_ms"]:
            raise FeishuError(
                230001,
                "Your request contains an invalid request parameter. token is invalid or expired",
            )
        if grant["uses"] >= CARD_TOKEN_USES:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. token used up"
            )
        message = self.store.get(PLATFORM, "message", grant["message_id"])
        if message is None or message["deleted"]:
            raise FeishuError(230011, "The message is recalled.")
        content = json.dumps({k: v for k, v in card.items() if k != "open_ids"}, ensure_ascii=False)
        _check_content("interactive", content)
        grant["uses"] += 1
        self.store.put(PLATFORM, "card_token", token, grant)
        self._update_card(message, content)
        self.store.record(
            PLATFORM,
            f"POST {API}/interactive/v1/card/update",
            caller.app_id,
            {"message_id": message["message_id"], "card": card},
        )
        return {}

    def _list_chats(self, request: Request, caller: _Caller) -> dict[str, Any]:
        rows, meta = self._offset_page(request, "chat", {"chat_mode": "group"}, 20, 100)
        return {"items": [_public(c) for c in rows], **meta}

    # -- presses ------------------------------------------------------------------------------
    def _operator(self, action: Mapping[str, Any], key: str = "user") -> dict[str, Any]:
        who = str(action.get(key, ""))
        user = (
            self._user_by("open_id", who)
            if who.startswith("ou_")
            else self._user_by("employee_no", who)
        )
        if user is None:
            raise PressError(f"no feishu user {who!r} (give an open_id or an employee_no)")
        return user

    def _press_card_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        message = self.store.get(PLATFORM, "message", str(action.get("message_id", "")))
        if message is None or message["msg_type"] != "interactive":
            raise PressError("card_action needs the message_id of an interactive message")
        user = self._operator(action)
        card_token = "c-" + secrets.token_hex(20)
        self.store.put(
            PLATFORM,
            "card_token",
            card_token,
            {
                "message_id": message["message_id"],
                "expires_ms": now_ms() + CARD_TOKEN_TTL_MS,
                "uses": 0,
            },
        )
        act: dict[str, Any] = {"value": action.get("value", {}), "tag": action.get("tag", "button")}
        for optional in (
            "option",
            "timezone",
            "name",
            "form_value",
            "input_value",
            "options",
            "checked",
        ):
            if optional in action:
                act[optional] = action[optional]
        event = {
            "operator": {**self._user_ids_of(user), "tenant_key": self.credentials()["tenant_key"]},
            "token": card_token,
            "action": act,
            "host": "im_message",
            "delivery_type": "url_preview" if action.get("url_preview") else "",
            "context": {
                "open_message_id": message["message_id"],
                "open_chat_id": message["chat_id"],
            },
        }
        envelope = self._v2("card.action.trigger", event)
        statuses, answers = self._deliver(envelope)
        answer = _first_json(answers)
        updated = False
        card = answer.get("card") if isinstance(answer, dict) else None
        if isinstance(card, dict) and isinstance(card.get("data"), dict):
            data = card["data"]
            content = json.dumps(
                data if card.get("type", "raw") == "raw" else card, ensure_ascii=False
            )
            self._update_card(message, content)
            self.store.record(
                PLATFORM,
                "card.action.trigger answer",
                self.credentials()["app_id"],
                {"message_id": message["message_id"], "card": card},
            )
            updated = True
        return {
            "event_id": envelope["header"]["event_id"],
            "token": card_token,
            "delivered": statuses,
            "answer": answer,
            "toast": answer.get("toast") if isinstance(answer, dict) else None,
            "card_updated": updated,
        }

    def _press_message(self, action: Mapping[str, Any]) -> dict[str, Any]:
        user = self._operator(action)
        chat_id = str(action.get("chat_id") or self._p2p_chat(user))
        chat = self.store.get(PLATFORM, "chat", chat_id)
        if chat is None:
            raise PressError(f"no feishu chat {chat_id!r}")
        tenant = self.credentials()["tenant_key"]
        mentions: list[dict[str, Any]] = []
        for i, who in enumerate(action.get("mentions", []), start=1):
            if who == "bot":
                ids = {
                    "union_id": "",
                    "user_id": "",
                    "open_id": "ou_" + _hex("bot", self.credentials()["app_id"]),
                }
                name = "Sandbox bot"
            else:
                mentioned = self._operator({"user": who})
                ids, name = self._user_ids_of(mentioned), mentioned["name"]
            mentions.append({"key": f"@_user_{i}", "id": ids, "name": name, "tenant_key": tenant})
        text = str(action.get("text", ""))
        keys = " ".join(m["key"] for m in mentions if m["key"] not in text)
        content = json.dumps({"text": f"{keys} {text}".strip()}, ensure_ascii=False)
        sender = {
            "id": user["open_id"],
            "id_type": "open_id",
            "sender_type": "user",
            "tenant_key": tenant,
        }
        stored_mentions = [
            {
                "key": m["key"],
                "id": m["id"]["open_id"],
                "id_type": "open_id",
                "name": m["name"],
                "tenant_key": tenant,
            }
            for m in mentions
        ]
        message = self._new_message(chat_id, "text", content, sender, mentions=stored_mentions)
        self.store.put(
            PLATFORM,
            "message",
            message["message_id"],
            message,
            created_ms=int(message["create_time"]),
        )
        event = {
            "sender": {
                "sender_id": self._user_ids_of(user),
                "sender_type": "user",
                "tenant_key": tenant,
            },
            "message": {
                "message_id": message["message_id"],
                "root_id": "",
                "parent_id": "",
                "create_time": message["create_time"],
                "update_time": message["update_time"],
                "chat_id": chat_id,
                "chat_type": "p2p" if chat.get("chat_mode") == "p2p" else "group",
                "message_type": "text",
                "content": content,
                "mentions": mentions,
                "user_agent": "Mozilla/5.0 (sandbox) Feishu/7.0",
            },
        }
        envelope = self._v2("im.message.receive_v1", event)
        statuses, _ = self._deliver(envelope)
        return {
            "event_id": envelope["header"]["event_id"],
            "message_id": message["message_id"],
            "delivered": statuses,
        }

    def _press_decision(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance = self._instance(str(action.get("instance_code", "")))
        if instance is None:
            raise PressError("approve/reject needs the instance_code of a feishu approval instance")
        task = next((t for t in instance["task_list"] if t["status"] == "PENDING"), None)
        if task is None or instance["status"] != "PENDING":
            raise PressError(f"instance {instance['instance_code']} has no pending task")
        user = (
            self._operator(action)
            if action.get("user")
            else self.store.get(PLATFORM, "user", task["open_id"])
        )
        if user is None or user["open_id"] != task["open_id"]:
            raise PressError("only the pending task's approver can decide")
        updated = self._apply_decision(
            instance, task, user, action.get("kind") == "approve", str(action.get("comment", ""))
        )
        result: dict[str, Any] = {
            "instance_code": updated["instance_code"],
            "status": updated["status"],
        }
        if self._subscribed(updated["approval_code"]):
            result["delivered"] = self._send_approval_events(updated, task["id"])
        else:
            result["delivered"], result["subscribed"] = [], False
        return result

    def _send_approval_events(self, instance: Mapping[str, Any], task_id: str) -> list[int]:
        """The approval_task event for the decided task, then the instance's own event."""
        if not self.store.setting(PLATFORM, "callback_url"):
            return []
        task = next(t for t in instance["task_list"] if t["id"] == task_id)
        statuses, _ = self._deliver(self._v1(self._task_event(instance, task)))
        more, _ = self._deliver(self._v1(self._instance_event(instance)))
        return statuses + more

    def _instance_event(self, instance: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        at = str(now_ms())
        return {
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
            "type": "approval_instance",
            "approval_code": instance["approval_code"],
            "instance_code": instance["instance_code"],
            "status": instance["status"],
            "operate_time": at,
            "instance_operate_time": at,
            "uuid": instance.get("uuid", ""),
        }

    def _task_event(self, instance: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        return {
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
            "type": "approval_task",
            "approval_code": instance["approval_code"],
            "instance_code": instance["instance_code"],
            "task_id": task["id"],
            "user_id": task["user_id"],
            "open_id": task["open_id"],
            "status": task["status"],
            "operate_time": task.get("end_time") or str(now_ms()),
            "custom_key": task.get("custom_node_id", ""),
            "def_key": task["node_id"],
            "extra": "",
        }

    def _press_approval_event(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance = self._instance(str(action.get("instance_code", "")))
        if instance is None:
            raise PressError("approval events need the instance_code of a feishu approval instance")
        if not self._subscribed(instance["approval_code"]):
            return {"delivered": [], "subscribed": False}
        if action.get("kind") == "approval_instance":
            envelope = self._v1(self._instance_event(instance))
        else:
            wanted = action.get("task_id")
            task = next((t for t in instance["task_list"] if wanted in (None, t["id"])), None)
            if task is None:
                raise PressError(f"instance has no task {wanted!r}")
            envelope = self._v1(self._task_event(instance, task))
        statuses, _ = self._deliver(envelope)
        return {"uuid": envelope["uuid"], "delivered": statuses}

    def _press_quick_approval(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """An approver presses Approve or Reject on a task in the approval center: Feishu POSTs
        the quick-approval callback to the definition's action_callback_url, encrypted with its
        action_callback_key when it has one. {instance_id, [task_id], [user], action:
        approve | reject (or action_type), [reason]}."""
        instance = self.store.get(PLATFORM, "external_instance", str(action.get("instance_id", "")))
        if instance is None:
            raise PressError("quick_approval needs the instance_id of a synced external instance")
        wanted = action.get("task_id")
        task = next(
            (
                t
                for t in instance["task_list"]
                if t["status"] == "PENDING" and wanted in (None, t["task_id"])
            ),
            None,
        )
        if task is None:
            raise PressError(f"instance {instance['instance_id']} has no pending task {wanted!r}")
        user = (
            self._operator(action)
            if action.get("user")
            else self._user_by("open_id", task["open_id"])
        )
        if user is None or user["open_id"] != task["open_id"]:
            raise PressError("only the task's approver can act on it")
        action_type = str(action.get("action_type") or str(action.get("action", "")).upper())
        if action_type not in {str(c["action_type"]) for c in task.get("action_configs") or []}:
            raise PressError(f"task {task['task_id']} offers no quick {action_type!r}")
        definition = self.store.get(PLATFORM, "external_approval", instance["approval_code"])
        external = (definition or {}).get("external") or {}
        url = external.get("action_callback_url")
        if not url:
            raise PressError("the definition has no action_callback_url")
        callback = {
            "action_type": action_type,
            "action_context": task.get("action_context", ""),
            "user_id": user["user_id"],
            "approval_code": instance["approval_code"],
            "instance_id": instance["instance_id"],
            "task_id": task["task_id"],
            "reason": str(action.get("reason", "")),
            "token": str(external.get("action_callback_token", "")),
        }
        plain = json.dumps(callback, ensure_ascii=False).encode()
        key = external.get("action_callback_key")
        body = json.dumps({"encrypt": encrypt_event(str(key), plain)}).encode() if key else plain
        answers: list[tuple[int, bytes]] = []
        statuses = deliver_callback(
            self.store,
            PLATFORM,
            str(url),
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout_s=10.0,
            on_answer=lambda status, content: answers.append((status, content)),
        )
        answer = _first_json(answers)
        accepted = isinstance(answer, dict) and answer.get("code") == 0
        return {"delivered": statuses, "answer": answer, "accepted": accepted}

    def _press_url_verification(self, action: Mapping[str, Any]) -> dict[str, Any]:
        challenge = secrets.token_urlsafe(16)
        envelope = {
            "challenge": challenge,
            "token": self.credentials()["verification_token"],
            "type": "url_verification",
        }
        statuses, answers = self._deliver(envelope)
        answer = _first_json(answers)
        verified = isinstance(answer, dict) and answer.get("challenge") == challenge
        return {"delivered": statuses, "answer": answer, "verified": verified}


class _Throttled(Exception):
    def __init__(self, limit: int, reset_s: int) -> None:
        super().__init__(limit, reset_s)
        self.limit, self.reset_s = limit, reset_s


def _first_json(answers: Sequence[tuple[int, bytes]]) -> Any:
    """The receiver's first HTTP 200 answer, parsed; None if there was none or not JSON."""
    for status, content in answers:
        if status == 200:
            try:
                return json.loads(content or b"{}")
            except ValueError:
                return None
    return None


def _check_content(msg_type: str, content: str) -> None:
    """`content` is a JSON string of an object, within the vendor's size limits."""
    try:
        parsed = json.loads(content)
    except ValueError:
        raise FeishuError(
            230001, "Your request contains an invalid request parameter. content is not JSON"
        ) from None
    if not isinstance(parsed, dict):
        raise FeishuError(230001, "Your request contains an invalid request parameter. content")
    limit = TEXT_MAX_BYTES if msg_type == "text" else CARD_MAX_BYTES
    if len(content.encode()) > limit:
        raise FeishuError(230025, "The length of the message content reaches its limit.")


def _update_multi(content: str) -> bool:
    """A shared card: config.update_multi, which card JSON 2.0 turns on by default."""
    try:
        card = json.loads(content)
    except ValueError:
        return False
    if not isinstance(card, dict):
        return False
    config = card.get("config")
    default = card.get("schema") == "2.0"
    return bool(config.get("update_multi", default)) if isinstance(config, dict) else default


def _i18n_texts(resources: Any) -> set[str]:
    """The i18n keys a definition's i18n_resources give texts for."""
    keys: set[str] = set()
    for resource in resources if isinstance(resources, list) else []:
        texts = resource.get("texts") if isinstance(resource, dict) else None
        for text in texts if isinstance(texts, list) else []:
            if isinstance(text, dict) and text.get("key"):
                keys.add(str(text["key"]))
    return keys


def _without_secrets(external: Mapping[str, Any]) -> dict[str, Any]:
    """A definition's `external` for the ledger: the callback token and key left out."""
    hidden = ("action_callback_token", "action_callback_key")
    return {k: ("***" if k in hidden else v) for k, v in external.items()}


def _check_links(links: Any, where: str) -> None:
    if not isinstance(links, dict) or not (links.get("pc_link") or links.get("mobile_link")):
        raise _approval_param_error(f"{where} needs a pc_link or a mobile_link")


def _int64(value: Any, field: str) -> int:
    """An int64 field, sent as a number or a string of digits."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _approval_param_error(f"{field} must be an int64 in ms") from None


def _merge_external(held: Mapping[str, Any], pushed: Mapping[str, Any]) -> dict[str, Any]:
    """update_mode UPDATE: fields given replace, tasks and CCs are added or updated by id."""
    merged = {**held, **{k: v for k, v in pushed.items() if k not in ("task_list", "cc_list")}}
    for field, key in (("task_list", "task_id"), ("cc_list", "cc_id")):
        by_id = {str(item[key]): item for item in held.get(field) or []}
        for item in pushed.get(field) or []:
            by_id[str(item[key])] = {**by_id.get(str(item[key]), {}), **item}
        merged[field] = list(by_id.values())
    return merged


def _check_unique_ids(instance: Mapping[str, Any]) -> None:
    """Instance, task and CC ids must all differ, or the approval center hides the data."""
    ids = [str(instance["instance_id"])]
    ids += [str(t["task_id"]) for t in instance.get("task_list") or []]
    ids += [str(c.get("cc_id")) for c in instance.get("cc_list") or []]
    if len(ids) != len(set(ids)):
        raise _approval_param_error("instance, task and cc ids must be unique in an instance")


def _same_times(held: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether an external_instances/check entry's times are the ones held."""
    try:
        if int(entry.get("update_time", -1)) != int(held.get("update_time", 0)):
            return False
        tasks = {str(t["task_id"]): int(t.get("update_time", 0)) for t in held["task_list"]}
        return all(
            tasks.get(str(t.get("task_id"))) == int(t.get("update_time", -1))
            for t in entry.get("tasks") or []
        )
    except (TypeError, ValueError):
        raise _approval_param_error("update_time must be an int64 in ms") from None


def _user_ids(seed: int, employee_no: str) -> dict[str, str]:
    return {
        "open_id": f"ou_{_hex(seed, 'open', employee_no)}",
        "user_id": _hex(seed, "user", employee_no, n=8),
        "union_id": f"on_{_hex(seed, 'union', employee_no)}",
    }


def _approval_code(seed: int, template: str) -> str:
    return _uuid_like(seed, "approval", template)


def _task(
    instance_code: str,
    step: int,
    approver: Mapping[str, str],
    status: str,
    start: int,
    end: int | None,
) -> dict[str, Any]:
    return {
        "id": _digits(instance_code, "task", step),
        "user_id": approver["user_id"],
        "open_id": approver["open_id"],
        "status": status,
        "node_id": _node_id(step),
        "node_name": f"Approver {step + 1}",
        "custom_node_id": f"approver_{step + 1}",
        "type": "AND",
        "start_time": str(start),
        "end_time": str(end or 0),
    }


@dataclass(frozen=True)
class _WorldView:
    world: World
    ids: dict[str, dict[str, str]]  # employee_no -> open_id, user_id, union_id
    dept_of: dict[str, str]  # employee_no -> department_id


@functools.lru_cache(maxsize=4)
def _world_view(seed: int, people: int) -> _WorldView:
    world = World(seed, people_count=people)
    root = {d.id for d in world.departments if d.parent_id is None}
    return _WorldView(
        world,
        {p.employee_no: _user_ids(seed, p.employee_no) for p in world.people},
        {p.employee_no: "0" if p.department_id in root else p.department_id for p in world.people},
    )


@functools.cache
def _node_id(step: int) -> str:
    return _hex("node", step)


def _form(values: Mapping[str, Any]) -> str:
    widgets = [
        {
            "id": f"widget{i}",
            "custom_id": key,
            "name": key.replace("_", " ").capitalize(),
            "type": "number" if isinstance(value, int | float) else "input",
            "value": value,
        }
        for i, (key, value) in enumerate(values.items(), start=1)
    ]
    return json.dumps(widgets, ensure_ascii=False)


def _instance_body(
    seed: int,
    a: Approval,
    ids: Mapping[str, Mapping[str, str]],
    dept_of: Mapping[str, str],
) -> dict[str, Any]:
    """The `instances/:instance_id` answer for one world approval (plus the remaining chain)."""
    code = _uuid_like(seed, "instance", a.number)
    applicant = ids[a.applicant_no]
    tasks: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    comments: list[dict[str, Any]] = []
    opened = a.created_ms
    for step in a.history:
        who = ids[step.approver_no]
        entry = {
            "create_time": str(step.at_ms),
            "user_id": who["user_id"],
            "open_id": who["open_id"],
            "ext": "{}",
        }
        if step.action == "submit":
            timeline.append({**entry, "type": "START", "comment": ""})
            continue
        if step.action == "revoke":
            timeline.append({**entry, "type": "CANCEL", "comment": step.comment})
            continue
        index = len(tasks)
        status = "APPROVED" if step.action == "approve" else "REJECTED"
        task = _task(code, index, who, status, opened, step.at_ms)
        tasks.append(task)
        opened = step.at_ms
        kind = "PASS" if step.action == "approve" else "REJECT"
        timeline.append(
            {
                **entry,
                "type": kind,
                "task_id": task["id"],
                "comment": step.comment,
                "node_key": task["node_id"],
            }
        )
        if step.comment:
            comments.append(
                {
                    "id": _digits(code, "comment", index),
                    "user_id": who["user_id"],
                    "open_id": who["open_id"],
                    "comment": step.comment,
                    "create_time": str(step.at_ms),
                }
            )
    for no in a.current_approver_nos:
        tasks.append(_task(code, len(tasks), ids[no], "PENDING", opened, None))
    if a.state == "revoked" and len(tasks) < len(a.approver_nos):
        tasks.append(
            _task(code, len(tasks), ids[a.approver_nos[len(tasks)]], "DONE", opened, a.updated_ms)
        )
    return {
        "approval_code": _approval_code(seed, a.template),
        "approval_name": APPROVAL_NAMES[a.template],
        "instance_code": code,
        "serial_number": f"{_ymd(a.created_ms)}{a.number:06d}",
        "status": INSTANCE_STATUS[a.state],
        "start_time": str(a.created_ms),
        "end_time": "0" if a.state == "pending" else str(a.updated_ms),
        "user_id": applicant["user_id"],
        "open_id": applicant["open_id"],
        "department_id": dept_of[a.applicant_no],
        "uuid": "",
        "form": _form(a.form),
        "task_list": tasks,
        "comment_list": comments,
        "timeline": timeline,
        "reverted": False,
        "_chain": [{k: ids[no][k] for k in ("open_id", "user_id")} for no in a.approver_nos],
    }


def _user_tasks(
    world: World, checkins: Iterator[Checkin], ids: Mapping[str, Mapping[str, str]]
) -> Iterator[tuple[str, dict[str, Any], int, int]]:
    """One attendance result per person and work day, from the world's on/off punches."""
    pending: dict[tuple[str, int], Checkin] = {}
    for punch in checkins:
        key = (punch.employee_no, punch.day_ms)
        if punch.kind == "on":
            pending[key] = punch
            continue
        on = pending.pop(key)
        user_id = ids[punch.employee_no]["user_id"]
        day = _ymd(punch.day_ms)
        shift_in, shift_out = punch.day_ms // 1000 + 3600, punch.day_ms // 1000 + 10 * 3600
        record: dict[str, Any] = {
            "check_in_record_id": _digits(user_id, day, "in"),
            "check_in_record": _flow(user_id, day, "in", on.at_ms),
            "check_in_result": on.result,
            "check_in_result_supplement": "None",
            "check_in_shift_time": str(shift_in),
            "check_out_result": punch.result,
            "check_out_result_supplement": "None",
            "check_out_shift_time": str(shift_out),
            "task_shift_type": 0,
        }
        if punch.at_ms:
            record["check_out_record_id"] = _digits(user_id, day, "out")
            record["check_out_record"] = _flow(user_id, day, "out", punch.at_ms)
        body = {
            "result_id": _digits(user_id, day, "result"),
            "user_id": user_id,
            "employee_name": world.person(punch.employee_no).name,
            "day": day,
            "group_id": ATTENDANCE_GROUP_ID,
            "shift_id": ATTENDANCE_SHIFT_ID,
            "records": [record],
        }
        yield f"{user_id}/{day}", body, punch.day_ms, punch.day_ms


def _flow(user_id: str, day: int, kind: str, at_ms: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "creator_id": user_id,
        "location_name": "Sandbox office",
        "check_time": str(at_ms // 1000),
        "comment": "",
        "record_id": _digits(user_id, day, kind),
        "is_field": False,
        "is_wifi": False,
        "type": 7,
    }
