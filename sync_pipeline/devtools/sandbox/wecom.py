"""WeCom (企业微信) emulator: the `/cgi-bin` contract of platform-apis.md §1, served locally.

Written from WeCom's documented contract, never from our connector: paths, parameter names,
field names and `errcode`s are WeCom's own, and every answer is HTTP 200 with `errcode`/`errmsg`
as WeCom sends them. Callbacks are XML, encrypted with WXBizMsgCrypt (wxcrypto.py), signed, and
always sent through `core.deliver_callback` so the duplicate and out-of-order faults apply.

Settings (store.set_setting("wecom", key, value)):
    callback_url      where callbacks go; callback template cards need it (errcode 43012)
    token_ttl_s       access_token lifetime (default 7200, WeCom's)
    rate_limit_scale  multiplies WeCom's limits (approval/checkin 600/min, day data 100/min);
                      0 turns them off

Not emulated (documented here so no one relies on it): the per-member 30/min and 1000/h message
cap that WeCom enforces by silently dropping the excess; tags (every `totag` is invalid).
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
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
from sync_pipeline.devtools.sandbox.world import DAY_MS, Approval, Checkin, Person, World
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt, new_aes_key, random_text

PLATFORM = "wecom"
TOKEN_TTL_S = 7200
APPROVAL_AGENTID = "3010040"  # WeCom's built-in approval app sends sys_approval_change
MAX_WINDOW_S = 31 * 86400  # getapprovalinfo: span <= 31 days, else 301025
MAX_CHECKIN_SPAN_S = 30 * 86400  # getcheckindata: span <= 30 days, else 301024
RESPONSE_CODE_TTL_MS = 72 * 3_600_000  # update_template_card: each code valid 72 h, once
DUPLICATE_DEFAULT_S, DUPLICATE_MAX_S = 1800, 4 * 3600
TEXT_MAX_BYTES = 2048
CST_MS = 8 * 3_600_000  # WeCom days start at midnight China time (UTC+8)

# Documented limits: (calls, window seconds) per (corp, API). platform-apis.md §1.3.
LIMITS: dict[str, tuple[int, float]] = {
    "oa/getapprovalinfo": (600, 60.0),
    "oa/getapprovaldetail": (600, 60.0),
    "checkin/getcheckindata": (600, 60.0),
    "checkin/getcheckin_daydata": (100, 60.0),
}

SP_STATUS = {"pending": 1, "approved": 2, "rejected": 3, "revoked": 4}
TEMPLATE_NAMES = {"leave": "请假", "expense": "报销", "general": "通用审批"}
RECORD_TYPE = {"leave": 1}  # only system templates carry a record_type
INTERACTIVE_CARDS = ("button_interaction", "vote_interaction", "multiple_interaction")
CARD_TYPES = ("text_notice", "news_notice", *INTERACTIVE_CARDS)
CARD_LIST_MAX = 6  # horizontal_content_list, like button_list, holds at most 6 entries
MESSAGE_TYPES = ("text", "markdown", "textcard", "template_card")
APPCHAT_TYPES = ("text", "markdown", "textcard")
# sys_approval_change StatuChangeEvent for each decision a simulated user can make.
STATUS_CHANGE_EVENT = {"submit": 1, "approve": 2, "reject": 3, "revoke": 6}

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


def chatid_for(group_id: str) -> str:
    return "wr" + hashlib.sha256(f"wecom-chat/{group_id}".encode()).hexdigest()[:30]


def as_int(value: Any, name: str, errcode: int) -> int:
    """WeCom takes some integers as JSON strings (starttime in the doc's own example)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise WeComError(errcode, f"invalid {name}") from None


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_element(name: str, value: Any) -> str:
    """WeCom's callback XML: strings in CDATA, numbers bare, dicts and lists nested."""
    if isinstance(value, dict):
        return f"<{name}>" + "".join(xml_element(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list):
        return "".join(xml_element(name, item) for item in value)
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{cdata(str(value))}</{name}>"


class WeComEmulator(Emulator):
    """One WeCom corp with one self-built app, its approvals, checkins, messages and chats."""

    platform = PLATFORM
    title = "WeCom (企业微信)"
    port_offset = 2

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

    def routes(self) -> list[BaseRoute]:
        api = self._api
        return [
            Route("/cgi-bin/gettoken", self._gettoken, methods=["GET"]),
            Route("/cgi-bin/oa/getapprovalinfo", api(self.getapprovalinfo), methods=["POST"]),
            Route("/cgi-bin/oa/getapprovaldetail", api(self.getapprovaldetail), methods=["POST"]),
            Route("/cgi-bin/checkin/getcheckindata", api(self.getcheckindata), methods=["POST"]),
            Route(
                "/cgi-bin/checkin/getcheckin_daydata",
                api(self.getcheckin_daydata),
                methods=["POST"],
            ),
            Route("/cgi-bin/user/get", api(self.user_get), methods=["GET"]),
            Route("/cgi-bin/user/list", api(self.user_list), methods=["GET"]),
            Route("/cgi-bin/user/simplelist", api(self.user_simplelist), methods=["GET"]),
            Route("/cgi-bin/user/list_id", api(self.user_list_id), methods=["POST"]),
            Route("/cgi-bin/department/list", api(self.department_list), methods=["GET"]),
            Route("/cgi-bin/message/send", api(self.message_send), methods=["POST"]),
            Route(
                "/cgi-bin/message/update_template_card",
                api(self.update_template_card),
                methods=["POST"],
            ),
            Route("/cgi-bin/appchat/create", api(self.appchat_create), methods=["POST"]),
            Route("/cgi-bin/appchat/get", api(self.appchat_get), methods=["GET"]),
            Route("/cgi-bin/appchat/send", api(self.appchat_send), methods=["POST"]),
        ]

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

    def _token_ttl_s(self) -> int:
        return int(self.store.setting(PLATFORM, "token_ttl_s", str(TOKEN_TTL_S)) or TOKEN_TTL_S)

    # -- auth --------------------------------------------------------------------------------
    async def _gettoken(self, request: Request) -> Response:
        return await run_in_threadpool(self._issue, dict(request.query_params))

    def _issue(self, query: Mapping[str, str]) -> Response:
        """Within its lifetime the same token comes back, as WeCom documents; then a new one."""
        creds = self.credentials()
        corpid, secret = query.get("corpid"), query.get("corpsecret")
        if not corpid:
            return answer_error(41002, "corpid missing")
        if corpid != creds["corpid"]:
            return answer_error(40013, "invalid corpid")
        if not secret:
            return answer_error(41004, "corpsecret missing")
        if secret != creds["corpsecret"]:
            return answer_error(40001, "invalid credential")
        ttl = self._token_ttl_s()
        app = creds["agentid"]
        token = self.store.valid_token_for(PLATFORM, app) or self.store.issue_token(
            PLATFORM, app, ttl, token=random_text(64)
        )
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": ttl}
        )

    # -- approvals ---------------------------------------------------------------------------
    def getapprovalinfo(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """sp_no list of approvals applied in [starttime, endtime], ordered by apply time.

        Filters are applied to each page after it is cut, the way WeCom applies its visibility
        rules, so a filtered page can be short or empty while the cursor goes on: clients must
        loop until the cursor is empty (platform-apis.md §1.1). The sandbox's choice of how to
        produce short pages; the cursor itself is opaque, and the same cursor gives the same
        page.
        """
        start = as_int(args.get("starttime"), "starttime", 301025)
        end = as_int(args.get("endtime"), "endtime", 301025)
        if start <= 0 or end <= start:
            raise WeComError(301025, "endtime must be greater than starttime")
        if end - start > MAX_WINDOW_S:
            raise WeComError(301025, "starttime and endtime span more than 31 days")
        size = as_int(args.get("size", 100), "size", 301025)
        if not 0 < size <= 100:
            raise WeComError(301025, "size must be between 1 and 100")
        legacy = "new_cursor" not in args and "cursor" in args
        if legacy:
            offset = as_int(args.get("cursor"), "cursor", 301025)
        else:
            offset = self._offset(args.get("new_cursor", ""), 301025)
        matches = self._approval_filter(args.get("filters", args.get("filter")) or [])
        rows = self.store.list(
            PLATFORM,
            "approval",
            time_field="created_ms",
            from_ms=start * 1000,
            to_ms=(end + 1) * 1000,
            offset=offset,
            limit=size + 1,
        )
        page, more = rows[:size], len(rows) > size
        sp_nos = [row["sp_no"] for row in page if matches(row)]
        if legacy:
            return {"sp_no_list": sp_nos, "next_cursor": offset + size if more else 0}
        return {
            "sp_no_list": sp_nos,
            "new_next_cursor": self._cursor(offset + size) if more else "",
        }

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
    def _approval_filter(filters: Any) -> Callable[[Mapping[str, Any]], bool]:
        """Same-key filters OR, different keys AND; only `department` may repeat."""
        wanted: dict[str, set[str]] = {}
        if not isinstance(filters, list):
            raise WeComError(301025, "filters must be a list")
        for item in filters:
            key, value = str(item.get("key", "")), str(item.get("value", ""))
            if key not in ("template_id", "creator", "department", "sp_status", "record_type"):
                raise WeComError(301025, f"invalid filter key {key}")
            if key in wanted and key != "department":
                raise WeComError(301025, f"filter key {key} may appear once")
            wanted.setdefault(key, set()).add(value)

        def matches(row: Mapping[str, Any]) -> bool:
            return all(str(row.get(key, "")) in values for key, values in wanted.items())

        return matches

    def getapprovaldetail(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        sp_no = str(args.get("sp_no", ""))
        if not sp_no:
            raise WeComError(301025, "sp_no missing")
        row = self.store.get(PLATFORM, "approval", sp_no)
        if row is None:
            raise WeComError(301025, f"sp_no {sp_no} not found")
        return {"info": self._info(row)}

    def _info(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An approval's `info`: stored once written, else built from the seeded world.

        Seeded approvals are stored as their filter fields and world number only, so that
        100,000 of them seed in seconds; the world is deterministic, so the same number always
        gives the same approval.
        """
        if "info" in row:
            return dict(row["info"])
        world, userids = self._world()
        return approval_info(world.approval(int(row["_n"])), world, userids)

    def _world(self) -> tuple[World, dict[str, str]]:
        saved = self.store.setting(PLATFORM, "world") or "[]"
        with self._cache_lock:
            if self._world_cache is None or self._world_cache[0] != saved:
                seed, people = json.loads(saved)
                world = World(seed, people_count=people)
                userids = {p.employee_no: userid_for(p) for p in world.people}
                self._world_cache = (saved, world, userids)
            return self._world_cache[1], self._world_cache[2]

    # -- checkins ----------------------------------------------------------------------------
    def _checkin_users(self, args: Mapping[str, Any]) -> list[str]:
        userids = args.get("useridlist")
        if not isinstance(userids, list) or not 0 < len(userids) <= 100:
            raise WeComError(301023, "useridlist must hold 1 to 100 userids")
        userids = [str(u) for u in userids]
        known = {u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": userids})}
        if set(userids) - known:
            raise WeComError(301021, "invalid userid")
        return userids

    def _checkin_span(self, args: Mapping[str, Any]) -> tuple[int, int]:
        start = as_int(args.get("starttime"), "starttime", 301024)
        end = as_int(args.get("endtime"), "endtime", 301024)
        if start <= 0 or end <= start or end - start > MAX_CHECKIN_SPAN_S:
            raise WeComError(301024, "time span must be positive and at most 30 days")
        return start, end

    def getcheckindata(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        kind = as_int(args.get("opencheckindatatype", 3), "opencheckindatatype", 301039)
        if kind not in (1, 2, 3):
            raise WeComError(301039, "opencheckindatatype must be 1, 2 or 3")
        start, end = self._checkin_span(args)
        userids = self._checkin_users(args)
        if kind == 2:  # outings: the seeded company never goes out
            return {"checkindata": []}
        rows = self.store.list(
            PLATFORM,
            "checkin",
            time_field="created_ms",
            from_ms=start * 1000,
            to_ms=(end + 1) * 1000,
            one_of={"userid": userids},
        )
        return {"checkindata": [self._public(row) for row in rows]}

    def getcheckin_daydata(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """One summary per user per day between the two midnights (China time), inclusive."""
        start, end = self._checkin_span(args)
        userids = self._checkin_users(args)
        users = {
            u["userid"]: u for u in self.store.list(PLATFORM, "user", one_of={"userid": userids})
        }
        first_day = (start * 1000 + CST_MS) // DAY_MS * DAY_MS - CST_MS
        rows = self.store.list(
            PLATFORM,
            "checkin",
            time_field="created_ms",
            from_ms=first_day,
            to_ms=(end + 1) * 1000 + DAY_MS,
            one_of={"userid": userids},
        )
        by_day: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            by_day.setdefault((row["userid"], row["_day"]), []).append(row)
        datas = []
        day = first_day
        while day <= end * 1000:
            for userid in userids:
                datas.append(self._day_summary(users[userid], day, by_day.get((userid, day), [])))
            day += DAY_MS
        return {"datas": datas}

    @staticmethod
    def _day_summary(
        user: Mapping[str, Any], day_ms: int, punches: list[dict[str, Any]]
    ) -> dict[str, Any]:
        day_s = day_ms // 1000
        weekday = datetime.fromtimestamp((day_ms + CST_MS) / 1000, UTC).weekday()
        done = [p for p in punches if p["exception_type"] != "未打卡"]
        times = sorted(p["checkin_time"] - day_s for p in done)
        exceptions = []
        for punch in punches:
            if punch["exception_type"] == "时间异常":
                late = punch["checkin_time"] - punch["sch_checkin_time"]
                exceptions.append({"exception": 1, "count": 1, "duration": late})
            elif punch["exception_type"] == "未打卡":
                exceptions.append({"exception": 3, "count": 1, "duration": 0})
        return {
            "base_info": {
                "date": day_s,
                "record_type": 1,
                "name": user["name"],
                "name_ex": user["name"],
                "departs_name": user["_department_name"],
                "acctid": user["userid"],
                "rule_info": {
                    "groupid": 1,
                    "groupname": "Office hours",
                    "scheduleid": 0,
                    "schedulename": "",
                    "checkintime": [{"work_sec": 9 * 3600, "off_work_sec": 18 * 3600}],
                },
                "day_type": 1 if weekday >= 5 else 0,  # Saturday, Sunday
            },
            "summary_info": {
                "checkin_count": len(done),
                "regular_work_sec": times[-1] - times[0] if len(times) > 1 else 0,
                "standard_work_sec": 9 * 3600 if weekday < 5 else 0,
                "earliest_time": times[0] if times else 0,
                "lastest_time": times[-1] if times else 0,  # sic: WeCom's spelling
            },
            "holiday_infos": [],
            "exception_infos": exceptions,
            "ot_info": {"ot_status": 0, "ot_duration": 0, "exception_duration": []},
            "sp_items": [],
        }

    # -- directory ---------------------------------------------------------------------------
    def _department_tree(self, root: int | None) -> list[dict[str, Any]]:
        departments = self.store.list(PLATFORM, "department")
        if root is None:
            return departments
        if not any(d["id"] == root for d in departments):
            raise WeComError(60003, "department not found")
        keep, frontier = {root}, {root}
        while frontier:
            frontier = {d["id"] for d in departments if d["parentid"] in frontier} - keep
            keep |= frontier
        return [d for d in departments if d["id"] in keep]

    def department_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        root = as_int(args["id"], "id", 60003) if args.get("id") else None
        return {"department": self._department_tree(root)}

    def _users_in(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not args.get("department_id"):
            raise WeComError(60003, "department_id missing")
        root = as_int(args["department_id"], "department_id", 60003)
        fetch_child = str(args.get("fetch_child", "0")) == "1"
        tree = self._department_tree(root)  # an unknown department is an error either way
        ids = {d["id"] for d in tree} if fetch_child else {root}
        users = self.store.list(PLATFORM, "user")
        return [self._public(u) for u in users if set(u["department"]) & ids]

    @staticmethod
    def _public(row: Mapping[str, Any]) -> dict[str, Any]:
        """A stored row without the sandbox's own bookkeeping fields (leading underscore)."""
        return {k: v for k, v in row.items() if not k.startswith("_")}

    def user_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"userlist": self._users_in(args)}

    def user_simplelist(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        keys = ("userid", "name", "department", "open_userid")
        return {"userlist": [{k: u[k] for k in keys} for u in self._users_in(args)]}

    def user_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", str(args.get("userid", "")))
        if user is None:
            raise WeComError(60111, "userid not found")
        return self._public(user)

    def user_list_id(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        offset = self._offset(args.get("cursor", ""), 50100)
        limit = as_int(args.get("limit", 10000), "limit", 40058)
        if not 0 < limit <= 10000:
            raise WeComError(40058, "limit must be between 1 and 10000")
        rows = self.store.list(PLATFORM, "user", offset=offset, limit=limit + 1)
        page = rows[:limit]
        dept_user = [
            {"userid": u["userid"], "department": d} for u in page for d in u["department"]
        ]
        more = len(rows) > limit
        return {"next_cursor": self._cursor(offset + limit) if more else "", "dept_user": dept_user}

    # -- messages ----------------------------------------------------------------------------
    def _recipients(self, args: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """Resolved userids, and the invalid ones WeCom reports back ("a|b")."""
        users = {u["userid"]: u for u in self.store.list(PLATFORM, "user")}
        touser = str(args.get("touser", "") or "")
        toparty = str(args.get("toparty", "") or "")
        totag = str(args.get("totag", "") or "")
        if not (touser or toparty or totag):
            raise WeComError(40035, "touser, toparty and totag are all empty")
        wanted: list[str] = []
        invalid_users: list[str] = []
        if touser == "@all":
            wanted = list(users)
        elif touser:
            for userid in touser.split("|"):
                (wanted if userid in users else invalid_users).append(userid)
        invalid_parties: list[str] = []
        for party in filter(None, toparty.split("|")):
            members = [
                u for u, row in users.items() if party.isdigit() and int(party) in row["department"]
            ]
            if not members and not any(
                str(d["id"]) == party for d in self.store.list(PLATFORM, "department")
            ):
                invalid_parties.append(party)
            wanted += members
        invalid = {
            "invaliduser": "|".join(invalid_users),
            "invalidparty": "|".join(invalid_parties),
            "invalidtag": totag,  # the sandbox's corp has no tags
        }
        recipients = list(dict.fromkeys(wanted))
        if not recipients:
            raise WeComError(81013, "user & party & tag all invalid")
        return recipients, invalid

    def _check_agent(self, args: Mapping[str, Any]) -> None:
        if "agentid" not in args or args["agentid"] in ("", None):
            raise WeComError(41011, "agentid missing")
        if str(args["agentid"]) != self.credentials()["agentid"]:
            raise WeComError(40056, "invalid agentid")

    @staticmethod
    def _check_content(msgtype: str, args: Mapping[str, Any]) -> None:
        content = args.get(msgtype)
        if not isinstance(content, dict):
            raise WeComError(40058, f"{msgtype} missing")
        if msgtype in ("text", "markdown"):
            text = str(content.get("content", ""))
            if not text:
                raise WeComError(44004, "content is empty")
            if len(text.encode("utf-8")) > TEXT_MAX_BYTES:
                raise WeComError(45002, "content size out of limit")
        if msgtype == "textcard":
            if not content.get("title"):
                raise WeComError(41016, "title missing")
            if not content.get("description"):
                raise WeComError(41033, "description missing")
            if not content.get("url"):
                raise WeComError(41010, "url missing")

    def _check_card(self, card: Mapping[str, Any]) -> None:
        card_type = card.get("card_type")
        if card_type not in CARD_TYPES:
            raise WeComError(40058, "invalid template_card.card_type")
        rows = card.get("horizontal_content_list", [])
        if not isinstance(rows, list) or len(rows) > CARD_LIST_MAX:
            raise WeComError(40058, "template_card.horizontal_content_list holds at most 6")
        if card_type not in INTERACTIVE_CARDS:
            return
        task_id = str(card.get("task_id", ""))
        if not task_id or len(task_id.encode()) > 128:
            raise WeComError(40058, "template_card.task_id must be 1 to 128 bytes")
        if self.store.setting(PLATFORM, "callback_url") is None:
            raise WeComError(43012, "callback url of the app is not set")
        if card_type == "button_interaction":
            buttons = card.get("button_list")
            if not isinstance(buttons, list) or not 0 < len(buttons) <= 6:
                raise WeComError(40058, "template_card.button_list must hold 1 to 6 buttons")
            for button in buttons:
                key = str(button.get("key", ""))
                if button.get("type", 0) == 0 and not 0 < len(key.encode()) <= 1024:
                    raise WeComError(40058, "button key must be 1 to 1024 bytes")
        # A task_id is unique per app for ever; reusing one is refused. The errcode WeCom uses
        # for it is unconfirmed; 40058 (invalid parameter) is the plausible one.
        if self.store.get(PLATFORM, "card", task_id) is not None:
            raise WeComError(40058, "template_card.task_id already used")

    def message_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send to users, parties or @all; same content within the interval is a duplicate.

        With `enable_duplicate_check` a repeat of the same message inside
        `duplicate_check_interval` (default 1800 s, max 4 h) is not sent again. WeCom does not
        document its answer for that case; the sandbox answers as for the first send (same
        msgid), which is what makes a blind retry harmless. Only the first send is in the
        ledger.
        """
        self._check_agent(args)
        msgtype = str(args.get("msgtype", ""))
        if msgtype not in MESSAGE_TYPES:
            raise WeComError(40008, "invalid message type")
        self._check_content(msgtype, args)
        recipients, invalid = self._recipients(args)
        dedupe = str(args.get("enable_duplicate_check", 0)) == "1"
        interval = min(
            as_int(
                args.get("duplicate_check_interval", DUPLICATE_DEFAULT_S),
                "duplicate_check_interval",
                40058,
            ),
            DUPLICATE_MAX_S,
        )
        content = {
            k: v
            for k, v in args.items()
            if k not in ("access_token", "enable_duplicate_check", "duplicate_check_interval")
        }
        key = (
            "dup:"
            + hashlib.sha256(
                json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
            ).hexdigest()
        )
        with self._write_lock:
            if dedupe:
                first = self.store.find_write(PLATFORM, key, interval)
                if first is not None:
                    again: dict[str, Any] = {
                        k: first.body[k] for k in ("msgid", "response_code") if k in first.body
                    }
                    return {**invalid, "unlicenseduser": "", **again}
            if msgtype == "template_card":
                self._check_card(args["template_card"])
            msgid = secrets.token_urlsafe(24)
            answer: dict[str, Any] = {"msgid": msgid}
            card = args.get("template_card") if msgtype == "template_card" else None
            if card is not None and card.get("card_type") in INTERACTIVE_CARDS:
                answer["response_code"] = self._new_response_code(str(card["task_id"]))
                self.store.put(
                    PLATFORM,
                    "card",
                    str(card["task_id"]),
                    {
                        "task_id": card["task_id"],
                        "msgid": msgid,
                        "touser": recipients,
                        "template_card": card,
                    },
                )
            self.store.record(
                PLATFORM,
                "message/send",
                app,
                {**content, **answer, "delivered_to": recipients},
                idem_key=key if dedupe else None,
            )
        return {**invalid, "unlicenseduser": "", **answer}

    def _new_response_code(self, task_id: str) -> str:
        code = secrets.token_urlsafe(48)
        body = {"task_id": task_id, "expires_ms": now_ms() + RESPONSE_CODE_TTL_MS, "used": False}
        self.store.put(PLATFORM, "response_code", code, body)
        return code

    def update_template_card(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Replace a card's buttons or the whole card; each response_code works once, for 72 h.

        WeCom's errcode for a used or expired response_code is unconfirmed; the sandbox answers
        40058 (invalid parameter).
        """
        self._check_agent(args)
        code = str(args.get("response_code", ""))
        if not code:
            raise WeComError(40058, "response_code missing")
        replace = args.get("button") if isinstance(args.get("button"), dict) else None
        new_card = (
            args.get("template_card") if isinstance(args.get("template_card"), dict) else None
        )
        if replace is None and new_card is None:
            raise WeComError(40058, "button or template_card missing")
        with self._write_lock:
            grant = self.store.get(PLATFORM, "response_code", code)
            if grant is None or grant["used"] or grant["expires_ms"] < now_ms():
                raise WeComError(40058, "invalid response_code")
            card = self.store.get(PLATFORM, "card", grant["task_id"])
            if card is None:
                raise WeComError(40058, "invalid response_code")
            if replace is not None:
                card["replace_name"] = str(replace.get("replace_name", ""))
            else:
                card["template_card"] = new_card
            self.store.put(PLATFORM, "response_code", code, {**grant, "used": True})
            self.store.put(PLATFORM, "card", grant["task_id"], card)
            body = {k: v for k, v in args.items() if k != "access_token"}
            self.store.record(PLATFORM, "message/update_template_card", app, body, idem_key=code)
        return {"invaliduser": []}

    # -- group chats -------------------------------------------------------------------------
    def appchat_create(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        userlist = args.get("userlist")
        if not isinstance(userlist, list) or not 2 <= len(userlist) <= 2000:
            raise WeComError(86006, "chat member count must be 2 to 2000")
        known = {
            u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": userlist})
        }
        if set(map(str, userlist)) - known:
            raise WeComError(86216, "invalid chat member")
        owner = str(args.get("owner") or userlist[0])
        if owner not in known:
            raise WeComError(86005, "invalid chat owner")
        chatid = str(args.get("chatid") or "wr" + secrets.token_hex(15))
        chat = {
            "chatid": chatid,
            "name": str(args.get("name", "")),
            "owner": owner,
            "userlist": [str(u) for u in userlist],
            "chat_type": 0,
        }
        with self._write_lock:
            if self.store.get(PLATFORM, "appchat", chatid) is not None:
                raise WeComError(86215, "chatid already exists")
            self.store.put(PLATFORM, "appchat", chatid, chat)
            self.store.record(PLATFORM, "appchat/create", app, chat, idem_key=None)
        return {"chatid": chatid}

    def appchat_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        chat = self.store.get(PLATFORM, "appchat", str(args.get("chatid", "")))
        if chat is None:
            raise WeComError(86003, "chatid not found")
        return {"chat_info": chat}

    def appchat_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        chatid = str(args.get("chatid", ""))
        if not chatid:
            raise WeComError(86201, "chatid missing")
        chat = self.store.get(PLATFORM, "appchat", chatid)
        if chat is None:
            raise WeComError(86003, "chatid not found")
        msgtype = str(args.get("msgtype", ""))
        if msgtype not in APPCHAT_TYPES:
            raise WeComError(40008, "invalid message type")
        self._check_content(msgtype, args)
        body = {k: v for k, v in args.items() if k != "access_token"}
        self.store.record(PLATFORM, "appchat/send", app, {**body, "delivered_to": chat["userlist"]})
        return {}

    # -- seeding -----------------------------------------------------------------------------
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        self.credentials()
        userids = {p.employee_no: userid_for(p) for p in world.people}
        dept_names = {department_id(d.id): d.name for d in world.departments}
        leaders: dict[int, str] = {}
        for person in world.people:
            leaders.setdefault(department_id(person.department_id), userids[person.employee_no])
        departments = [
            (
                str(department_id(d.id)),
                {
                    "id": department_id(d.id),
                    "name": d.name,
                    "name_en": d.name,
                    "department_leader": [leaders[department_id(d.id)]]
                    if department_id(d.id) in leaders
                    else [],
                    "parentid": department_id(d.parent_id) if d.parent_id else 0,
                    "order": 100000000 - department_id(d.id),
                },
                None,
                None,
            )
            for d in world.departments
        ]
        self.store.put_many(PLATFORM, "department", departments)
        users = [
            (userids[p.employee_no], self._user_row(p, userids, leaders, dept_names), None, None)
            for p in world.people
        ]
        self.store.put_many(PLATFORM, "user", users)
        chats = [
            (
                chatid_for(g.id),
                {
                    "chatid": chatid_for(g.id),
                    "name": g.name,
                    "owner": userids[g.owner_no],
                    "userlist": [userids[n] for n in g.member_nos],
                    "chat_type": 0,
                },
                None,
                None,
            )
            for g in world.groups
        ]
        self.store.put_many(PLATFORM, "appchat", chats)
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        approval_count = 0
        for chunk in batched(world.approvals(approvals)):
            rows = [approval_stub(a, world, userids) for a in chunk]
            approval_count += self.store.put_many(PLATFORM, "approval", rows)
        checkin_count = 0
        for chunk in batched(world.checkins(checkin_days)):
            checkin_count += self.store.put_many(
                PLATFORM, "checkin", [self._checkin_row(c, userids) for c in chunk]
            )
        return {
            "departments": len(departments),
            "users": len(users),
            "appchats": len(chats),
            "approvals": approval_count,
            "checkins": checkin_count,
        }

    @staticmethod
    def _user_row(
        person: Person,
        userids: Mapping[str, str],
        leaders: Mapping[int, str],
        dept_names: Mapping[int, str],
    ) -> dict[str, Any]:
        userid = userids[person.employee_no]
        dept = department_id(person.department_id)
        return {
            "userid": userid,
            "name": person.name,
            "department": [dept],
            "order": [0],
            "position": "Manager" if leaders.get(dept) == userid else "Staff",
            "mobile": person.mobile.replace("+86-", ""),
            "gender": "1" if person.index % 2 else "2",
            "email": person.email,
            "biz_mail": person.email,
            "is_leader_in_dept": [1 if leaders.get(dept) == userid else 0],
            "direct_leader": [userids[person.manager_no]] if person.manager_no else [],
            "avatar": "",
            "thumb_avatar": "",
            "telephone": "",
            "alias": "",
            "status": 1,
            "address": "",
            "open_userid": "wo" + hashlib.sha256(userid.encode()).hexdigest()[:30],
            "main_department": dept,
            "extattr": {
                "attrs": [{"type": 0, "name": "employee_no", "text": {"value": person.employee_no}}]
            },
            "_department_name": dept_names[dept],
        }

    @staticmethod
    def _checkin_row(
        checkin: Checkin, userids: Mapping[str, str]
    ) -> tuple[str, dict[str, Any], int, int]:
        userid = userids[checkin.employee_no]
        day = checkin.day_ms - CST_MS  # world days start 08:00 China time; WeCom's at midnight
        scheduled = checkin.day_ms + (3_600_000 if checkin.kind == "on" else 10 * 3_600_000)
        at = checkin.at_ms if checkin.result != "Lack" else scheduled
        exception = {"Late": "时间异常", "Lack": "未打卡", "Early": "时间异常"}.get(
            checkin.result, ""
        )
        row: dict[str, Any] = {
            "userid": userid,
            "groupname": "Office hours",
            "checkin_type": "上班打卡" if checkin.kind == "on" else "下班打卡",
            "exception_type": exception,
            "checkin_time": at // 1000,
            "location_title": "Headquarters" if checkin.result != "Lack" else "",
            "location_detail": "1 Example Road" if checkin.result != "Lack" else "",
            "wifiname": "OFFICE" if checkin.result != "Lack" else "",
            "wifimac": "3c:46:d8:0c:7a:70" if checkin.result != "Lack" else "",
            "notes": "",
            "mediaids": [],
            "sch_checkin_time": scheduled // 1000,
            "groupid": 1,
            "schedule_id": 0,
            "timeline_id": 1,
            "lat": 30547645 if checkin.result != "Lack" else 0,
            "lng": 104063236 if checkin.result != "Lack" else 0,
            "deviceid": "",
            "_day": day,
        }
        return f"{userid}:{day // 1000}:{checkin.kind}", row, at, at

    # -- the simulated user ------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a WeCom user and send the callback WeCom would send.

        kinds:
          button          {task_id, userid, key}: press a template card button
          approval_change {sp_no, [decision: approve|reject|revoke, userid, speech]}: act on
                          an approval (or, without a decision, re-announce its state)
          message         {userid, content}: a user writes to the app
          verify_url      the GET echostr handshake a callback URL must pass
        """
        kind = action.get("kind")
        if kind == "verify_url":
            return self._verify_url()
        if kind == "button":
            return self._press_button(action)
        if kind == "approval_change":
            return self._approval_change(action)
        if kind == "message":
            return self._user_message(action)
        raise PressError(
            f"wecom press kind must be button, approval_change, message or verify_url, not {kind!r}"
        )

    def _callback_url(self) -> str:
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("wecom has no callback_url setting: set it before pressing")
        return url

    def _crypto(self) -> WXBizMsgCrypt:
        creds = self.credentials()
        return WXBizMsgCrypt(creds["token"], creds["encoding_aes_key"], creds["corpid"])

    def _send(self, inner: Mapping[str, Any], agentid: str) -> list[int]:
        """Encrypt one callback message and POST it, as WeCom does, through deliver_callback."""
        plain = xml_element("xml", dict(inner))
        sealed = self._crypto().seal(plain)
        corpid = self.credentials()["corpid"]
        envelope = (
            f"<xml><ToUserName>{cdata(corpid)}</ToUserName><AgentID>{cdata(agentid)}</AgentID>"
            f"<Encrypt>{cdata(sealed.encrypt)}</Encrypt></xml>"
        )
        params = {
            "msg_signature": sealed.msg_signature,
            "timestamp": sealed.timestamp,
            "nonce": sealed.nonce,
        }
        return deliver_callback(
            self.store,
            PLATFORM,
            self._callback_url(),
            body=envelope.encode("utf-8"),
            headers={"Content-Type": "text/xml"},
            params=params,
        )

    def _verify_url(self) -> dict[str, Any]:
        """WeCom's URL check: the receiver must answer the decrypted echostr, bare, within 1 s."""
        url = self._callback_url()
        plain = str(secrets.randbelow(10**19))
        sealed = self._crypto().seal(plain)
        params = {
            "msg_signature": sealed.msg_signature,
            "timestamp": sealed.timestamp,
            "nonce": sealed.nonce,
            "echostr": sealed.encrypt,
        }
        try:
            answer = requests.get(url, params=params, timeout=1.0)
        except requests.RequestException as exc:
            return {"ok": False, "status": 0, "error": type(exc).__name__}
        ok = answer.status_code == 200 and answer.content == plain.encode()
        return {"ok": ok, "status": answer.status_code, "answer": answer.text[:100]}

    def _press_button(self, action: Mapping[str, Any]) -> dict[str, Any]:
        task_id = str(action.get("task_id", ""))
        card = self.store.get(PLATFORM, "card", task_id)
        if card is None:
            raise PressError(f"no template card with task_id {task_id!r}")
        userid = str(action.get("userid") or card["touser"][0])
        if userid not in card["touser"]:
            raise PressError(f"{userid} did not receive card {task_id}")
        keys = [str(b.get("key")) for b in card["template_card"].get("button_list", [])]
        key = str(action.get("key") or (keys[0] if keys else ""))
        if keys and key not in keys:
            raise PressError(f"card {task_id} has no button {key!r}; it has {keys}")
        agentid = self.credentials()["agentid"]
        code = self._new_response_code(task_id)
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "template_card_event",
            "EventKey": key,
            "TaskId": task_id,
            "CardType": str(card["template_card"]["card_type"]),
            "ResponseCode": code,
            "AgentID": int(agentid),
        }
        return {"delivered": self._send(event, agentid), "response_code": code, "event": event}

    def _user_message(self, action: Mapping[str, Any]) -> dict[str, Any]:
        userid = str(action.get("userid", ""))
        if self.store.get(PLATFORM, "user", userid) is None:
            raise PressError(f"no wecom user {userid!r}")
        agentid = self.credentials()["agentid"]
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "text",
            "Content": str(action.get("content", "")),
            "MsgId": str(secrets.randbits(63)),
            "AgentID": int(agentid),
        }
        return {"delivered": self._send(event, agentid), "event": event}

    def _approval_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        sp_no = str(action.get("sp_no", ""))
        decision = action.get("decision")
        with self._write_lock:  # read, decide, write: one press at a time per emulator
            row = self.store.get(PLATFORM, "approval", sp_no)
            if row is None:
                raise PressError(f"no wecom approval {sp_no!r}")
            info = self._info(row)
            change = STATUS_CHANGE_EVENT["submit"]
            if decision is not None:
                change = self._decide(info, str(decision), action)
                written = {**row, "sp_status": info["sp_status"], "info": info}
                self.store.put(PLATFORM, "approval", sp_no, written, updated_ms=now_ms())
            elif info["sp_status"] != SP_STATUS["pending"]:
                change = {2: 2, 3: 3, 4: 6}[info["sp_status"]]
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": "sys",
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "sys_approval_change",
            "AgentID": int(APPROVAL_AGENTID),
            "ApprovalInfo": approval_info_xml(info, change),
        }
        return {"delivered": self._send(event, APPROVAL_AGENTID), "event": event, "info": info}

    @staticmethod
    def _decide(info: dict[str, Any], decision: str, action: Mapping[str, Any]) -> int:
        """Apply an approver's (or the applicant's) decision to the approval, as WeCom would."""
        if info["sp_status"] != SP_STATUS["pending"]:
            raise PressError(f"approval {info['sp_no']} is not pending")
        userid = str(action.get("userid", ""))
        now_s = int(time.time())
        if decision == "revoke":
            if userid and userid != info["applyer"]["userid"]:
                raise PressError("only the applicant can revoke")
            info["sp_status"] = SP_STATUS["revoked"]
            return STATUS_CHANGE_EVENT["revoke"]
        if decision not in ("approve", "reject"):
            raise PressError(f"decision must be approve, reject or revoke, not {decision!r}")
        node = next(r for r in info["sp_record"] if r["sp_status"] == 1)
        detail = node["details"][0]
        if userid and userid != detail["approver"]["userid"]:
            raise PressError(f"{userid} is not the current approver of {info['sp_no']}")
        status = 2 if decision == "approve" else 3
        node["sp_status"] = detail["sp_status"] = status
        detail["sptime"] = now_s
        detail["speech"] = str(action.get("speech", ""))
        if status == 3 or all(r["sp_status"] == 2 for r in info["sp_record"]):
            info["sp_status"] = status
        return STATUS_CHANGE_EVENT[decision]


def approval_stub(
    approval: Approval, world: World, userids: Mapping[str, str]
) -> tuple[str, dict[str, Any], int, int]:
    """What getapprovalinfo filters on, and the world number that `approval_info` expands."""
    applicant = world.person(approval.applicant_no)
    sp_no = sp_no_for(approval)
    body: dict[str, Any] = {
        "sp_no": sp_no,
        "template_id": TEMPLATE_IDS[approval.template],
        "creator": userids[approval.applicant_no],
        "department": str(department_id(applicant.department_id)),
        "sp_status": SP_STATUS[approval.state],
        "_n": approval.number,
    }
    if approval.template in RECORD_TYPE:
        body["record_type"] = RECORD_TYPE[approval.template]
    return sp_no, body, approval.created_ms, approval.updated_ms


def approval_info(approval: Approval, world: World, userids: Mapping[str, str]) -> dict[str, Any]:
    """One world approval as getapprovaldetail's `info`."""
    applicant = world.person(approval.applicant_no)
    decided = {
        step.approver_no: step for step in approval.history if step.action in ("approve", "reject")
    }
    records = []
    for approver in approval.approver_nos:
        step = decided.get(approver)
        status = {"approve": 2, "reject": 3}[step.action] if step else 1
        records.append(
            {
                "sp_status": status,
                "approverattr": 1,
                "details": [
                    {
                        "approver": {"userid": userids[approver]},
                        "speech": step.comment if step else "",
                        "sp_status": status,
                        "sptime": step.at_ms // 1000 if step else 0,
                        "media_id": [],
                    }
                ],
            }
        )
    comments = [
        {
            "commentUserInfo": {"userid": userids[s.approver_no]},
            "commenttime": s.at_ms // 1000,
            "commentcontent": s.comment,
            "commentid": str(approval.number * 100 + i),
            "media_id": [],
        }
        for i, s in enumerate(approval.history)
        if s.action in ("comment", "revoke") and s.comment
    ]
    return {
        "sp_no": sp_no_for(approval),
        "sp_name": TEMPLATE_NAMES[approval.template],
        "sp_status": SP_STATUS[approval.state],
        "template_id": TEMPLATE_IDS[approval.template],
        "apply_time": approval.created_ms // 1000,
        "applyer": {
            "userid": userids[approval.applicant_no],
            "partyid": str(department_id(applicant.department_id)),
        },
        "sp_record": records,
        "notifyer": [],
        "apply_data": {"contents": apply_contents(approval)},
        "comments": comments,
    }


def approval_info_xml(info: Mapping[str, Any], change: int) -> dict[str, Any]:
    """The ApprovalInfo block of sys_approval_change: getapprovaldetail's info in PascalCase."""
    return {
        "SpNo": info["sp_no"],
        "SpName": info["sp_name"],
        "SpStatus": info["sp_status"],
        "TemplateId": info["template_id"],
        "ApplyTime": info["apply_time"],
        "Applyer": {"UserId": info["applyer"]["userid"], "Party": info["applyer"]["partyid"]},
        "SpRecord": [
            {
                "SpStatus": record["sp_status"],
                "ApproverAttr": record["approverattr"],
                "Details": [
                    {
                        "Approver": {"UserId": d["approver"]["userid"]},
                        "Speech": d["speech"],
                        "SpStatus": d["sp_status"],
                        "SpTime": d["sptime"],
                    }
                    for d in record["details"]
                ],
            }
            for record in info["sp_record"]
        ],
        "StatuChangeEvent": change,  # sic: WeCom's spelling
    }


def apply_contents(approval: Approval) -> list[dict[str, Any]]:
    """apply_data.contents with WeCom's control names for the world's three templates."""
    form = approval.form

    def control(kind: str, cid: str, title: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "control": kind,
            "id": cid,
            "title": [{"text": title, "lang": "zh_CN"}],
            "value": value,
        }

    if approval.template == "leave":
        return [
            control(
                "Vacation",
                "vacation-1563793073898",
                "请假类型",
                {
                    "vacation": {
                        "selector": {
                            "type": "single",
                            "options": [
                                {
                                    "key": form["leave_type"],
                                    "value": [{"text": form["leave_type"], "lang": "zh_CN"}],
                                }
                            ],
                        },
                        "attendance": {
                            "date_range": {
                                "type": "halfday",
                                "new_begin": form["start_ms"] // 1000,
                                "new_end": form["end_ms"] // 1000,
                                "new_duration": int(form["days"] * 86400),
                            },
                            "type": 1,
                        },
                    }
                },
            ),
            control("Textarea", "item-1497581399901", "请假事由", {"text": form["reason"]}),
        ]
    if approval.template == "expense":
        return [
            control("Money", "item-1497581399902", "金额", {"new_money": f"{form['amount']:.2f}"}),
            control(
                "Selector",
                "item-1497581399903",
                "费用类型",
                {
                    "selector": {
                        "type": "single",
                        "options": [
                            {
                                "key": form["category"],
                                "value": [{"text": form["category"], "lang": "zh_CN"}],
                            }
                        ],
                    }
                },
            ),
            control("Textarea", "item-1497581399904", "事由", {"text": form["reason"]}),
        ]
    return [
        control("Text", "item-1497581399905", "主题", {"text": form["subject"]}),
        control("Textarea", "item-1497581399906", "详情", {"text": form["detail"]}),
    ]
