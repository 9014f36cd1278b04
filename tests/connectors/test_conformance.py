"""One suite over every connector the registry knows, against its vendor's emulator.

What a connector class declares in `STREAMS` (the table the config checks flows against)
really works, and what it does not declare is refused. Beyond that, every connector keeps the
same promises, proven here once rather than copied into each vendor's tests:

- a readable stream is paged to its end, each record once, and a vendor stuck on one page
  stops the read with a clear error instead of looping (records.PageTrail, as the pull uses);
- the cursor of successive records never goes back, and stays within the window read;
- the vendor's error answers, and its faults (throttle with its wait, 5xx, an expired token,
  a garbled body), become the right error class with the vendor's code and wait, and only a
  call that is safe to resend is retryable;
- the same write twice makes one object at the vendor, or the connector says the vendor has
  no dedupe (`dedupe_window_s` is None), which is what stops the effect protocol from ever
  resending an effect whose outcome it does not know.

A connector the registry knows without a harness here fails the suite: none is added without
conformance. A vendor tested against its real server instead of an emulator (Matrix, on a
Synapse the tests start) keeps the same promises in a module of its own, named in
`ON_A_REAL_SERVER`, which must exist. What is particular to a vendor (its windows, its codes,
its ledger) is harness data, below."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from sync_pipeline.config.connector import Vendor
from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors import agora, dingtalk, feishu, oa, slack, wecom
from sync_pipeline.connectors.agora import AgoraConnector
from sync_pipeline.connectors.base import Connector, ConnectorContext, ReadsOne
from sync_pipeline.connectors.declarative.connector import DeclarativeConnector, classifier
from sync_pipeline.connectors.dingtalk import DingTalkConnector
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.connectors.registry import CONNECTORS, capabilities, declared_streams
from sync_pipeline.connectors.slack import SlackConnector
from sync_pipeline.connectors.wecom import WeComConnector
from sync_pipeline.devtools.sandbox.agora import AgoraEmulator
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import PROCESS_CODES, DingTalkEmulator, instance_kind
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.devtools.sandbox.seeyon import ACCOUNT_ID as SEEYON_ACCOUNT_ID
from sync_pipeline.devtools.sandbox.seeyon import SeeyonEmulator
from sync_pipeline.devtools.sandbox.server import FaultCache, FaultInjector
from sync_pipeline.devtools.sandbox.slack import SlackEmulator, member_id
from sync_pipeline.devtools.sandbox.wecom import WeComEmulator, userid_for
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    PagingLoop,
    QuotaExhausted,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import RetryPolicy
from sync_pipeline.processes import free_port
from sync_pipeline.records import (
    EventKind,
    Notification,
    Page,
    PageTrail,
    ReadWindow,
    Record,
    WriteOp,
    WriteRequest,
    WriteStatus,
    iso_utc,
)
from tests.conftest import ROOT
from tests.connectors.conftest import SEED, connector_config
from tests.stuck import StuckOn

MAX_PAGES = 500  # a read of the seeded world ends well before this
Classify = Callable[[int, Mapping[str, Any], Mapping[str, str]], SyncError | None]


def iso(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))


def days(since: int, until: int) -> ReadWindow:
    return ReadWindow(iso(EPOCH_MS + since * DAY_MS), iso(EPOCH_MS + until * DAY_MS))


WORLD = days(0, 330)


# -- what a harness holds --------------------------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """How a readable stream is read to its end here, and what the vendor holds in the window."""

    approvals: int  # seeded
    window: ReadWindow
    limit: int
    held: Callable[[SandboxStore, ReadWindow], list[str]]  # source ids, in the vendor's order
    ordered: bool  # the read keeps the vendor's order (else: the same ids, each once)
    list_path: str  # the vendor's list call: a vendor stuck on one page answers it the same
    stuck: type[VendorError]  # what stops a read from a vendor stuck on one page...
    stuck_code: str  # ...with this code
    crowded: int  # approvals to seed for the vendor's first list answer to have a next page
    short_pages: int | None = None  # last pages that may hold fewer than `limit`; None: any
    settings: Mapping[str, str] = field(default_factory=dict)  # the emulator's, for the read


@dataclass(frozen=True)
class Answer:
    """A vendor's answer and the error it is classified as (None: success), with the code and
    the wait the error must carry where the answer gives them."""

    status: int
    body: Mapping[str, Any]
    error: type[SyncError] | None
    code: str | None = None
    wait: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """One call that reaches the vendor (a read, or a write with a new effect key each time):
    the API the client meters it as, its stream, the objects it makes (None for a read), and
    what a garbled answer to it is: VendorUnavailable when a resend is safe (a read, a write
    under the vendor's dedupe handle), else OutcomeUnknown, which is never resent blindly."""

    api: str
    stream: str
    call: Callable[[Connector, Emulator, str], Any]  # (connector, emulator, effect key)
    made: Callable[[SandboxStore], int] | None = None
    garbled: type[VendorError] = VendorUnavailable


@dataclass(frozen=True)
class Dedupe:
    """The vendor drops a resend under the same handle for `dedupe_window_s` seconds, which
    lies between `low` and `high` (bounds included when `closed`)."""

    low: float
    high: float
    closed: bool = False

    def holds(self, window: float) -> bool:
        if self.closed:
            return self.low <= window <= self.high
        return self.low < window < self.high


@dataclass(frozen=True)
class Writing:
    """A valid write to a stream, how many objects the vendor has made, and its dedupe (None:
    the vendor has no dedupe handle, so a second write makes a second object)."""

    payload: Callable[[Any], Mapping[str, Any]]
    made: Callable[[SandboxStore], int]
    dedupe: Dedupe | None
    made_twice: int = 1  # objects the vendor holds once the same write is made twice


@dataclass(frozen=True)
class Harness:
    """How to make a vendor's connector for its emulator, and what the vendor holds and says."""

    emulator: type[Emulator]
    connect: Callable[[Any, ConnectorContext], Connector]
    writes: Mapping[str, Writing]  # every writable stream
    reads: Mapping[str, Reading]  # every readable stream
    classify: Classify
    answers: tuple[Answer, ...]  # the vendor's documented answers
    throttled: Answer  # what its throttle answer (the `ratelimit` fault) is classified as
    probes: Mapping[str, Probe]  # one call per API family
    settings: Mapping[str, str] = field(default_factory=dict)  # the emulator's
    tokens_expire: bool = True  # False: the vendor's token never expires (Slack's bot token)


# -- per vendor ------------------------------------------------------------------------------
def message(to: str) -> dict[str, Any]:
    return {"kind": "message", "to": to, "content": {"text": "Your request: Approved."}}


def card(to: str) -> dict[str, Any]:
    content = {
        "title": "Leave request #8812",
        "text": "Leave request #8812: waiting for your decision",
        "url": "https://oa.example/req/8812",
        "status": "pending",
        "status_label": "Pending",
    }
    return {"kind": "card", "to": to, "content": content}


def center(applicant: str, approver: str) -> dict[str, Any]:
    content = {
        "title": "Annual leave, 3 days",
        "status": "pending",
        "url": "https://oa.example/r/8812",
        "node": "n1",
        "applicant": applicant,
        "approvers": [approver],
        "last_operator": None,
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-01T08:00:00Z",
        "form": {"days": 3},
    }
    return {"kind": "approval_center", "to": None, "content": content}


def users(emulator: Emulator, vendor: str, key: str) -> list[str]:
    return [str(u[key]) for u in emulator.store.list(vendor, "user", limit=2)]


def ledger(platform: str, endpoint: str) -> Callable[[SandboxStore], int]:
    """Objects made: the ledger's entries of one endpoint."""
    return lambda store: sum(1 for e in store.ledger(platform) if e.endpoint == endpoint)


def objects(platform: str, kind: str) -> Callable[[SandboxStore], int]:
    """Objects made: the vendor's objects of one kind."""
    return lambda store: len(store.list(platform, kind))


def write_probe(
    stream: str, payload: Callable[[Any], Mapping[str, Any]]
) -> Callable[[Connector, Emulator, str], Any]:
    def call(connector: Connector, emulator: Emulator, key: str) -> WriteStatus:
        note = Notification.from_json(payload(emulator))
        request = WriteRequest(key, "8812", WriteOp.CREATE, note)
        result = connector.write(stream, request)
        assert result.status is WriteStatus.DONE, result.reason
        return result.status

    return call


def read_probe(stream: str, window: ReadWindow) -> Callable[[Connector, Emulator, str], Any]:
    def call(connector: Connector, emulator: Emulator, key: str) -> Page:
        page = connector.read_page(stream, window, None, 5)
        assert len(page.records) == 5
        return page

    return call


def _oa(emulator: OAEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    names = ("appid", "secret", "spk", "ofs_syscode")
    config = connector_config(Vendor.OA, emulator, {k: creds[k] for k in names}, {"userid": "1"})
    return OAConnector(config, ctx)


def oa_in_order(store: SandboxStore, window: ReadWindow) -> list[str]:
    """Every request id in the OA's own (lastOperateTime, requestId) order."""
    return [str(a["requestId"]) for a in store.list("oa", "approval")]


def oa_todo(emulator: OAEmulator) -> Mapping[str, Any]:
    return {
        "kind": "todo",
        "to": oa_user_id("E00004"),
        "content": {
            "text": "Budget review moved to Friday",
            "url": "https://chat.example/c/oc_1",
            "workflow": "Feishu message",
            "creator": oa_user_id("E00003"),
            "sent_at": "2026-03-02T09:30:00Z",
        },
    }


def oa_comment(emulator: OAEmulator) -> Mapping[str, Any]:
    return {
        "kind": "project_comment",
        "to": "P001",
        "content": {"text": "Decision: we ship on Friday", "author": oa_user_id("E00003")},
    }


def _wecom(emulator: WeComEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    config = connector_config(
        Vendor.WECOM,
        emulator,
        {"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        {"agentid": creds["agentid"]},
    )
    return WeComConnector(config, ctx)


def wecom_member(emulator: Emulator) -> str:
    return userid_for(World(SEED).person("E00002"))


def wecom_applied_within(store: SandboxStore, window: ReadWindow) -> list[str]:
    rows = store.list(
        "wecom",
        "approval",
        time_field="created_ms",
        from_ms=ms(window.since),
        to_ms=ms(window.until),
    )
    return [str(r["sp_no"]) for r in rows]


def ms(text: str | None) -> int:
    assert text is not None
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _dingtalk(emulator: DingTalkEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    config = connector_config(
        Vendor.DINGTALK,
        emulator,
        {"app_key": creds["appKey"], "app_secret": creds["appSecret"]},
        {
            "agent_id": creds["agentId"],
            "process_codes": list(PROCESS_CODES.values()),
            "process_centre": {"name": "OA approvals"},
        },
    )
    return DingTalkConnector(config, ctx)


def dingtalk_created_within(store: SandboxStore, window: ReadWindow) -> list[str]:
    return [
        str(row["processInstanceId"])
        for code in PROCESS_CODES.values()
        for row in store.list(
            "dingtalk",
            instance_kind(code),
            time_field="created_ms",
            from_ms=ms(window.since),
            to_ms=ms(window.until),
        )
    ]


def _feishu(emulator: FeishuEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    codes = [a["approval_code"] for a in emulator.store.list("feishu", "approval")]
    config = connector_config(
        Vendor.FEISHU,
        emulator,
        {
            "app_id": creds["app_id"],
            "app_secret": creds["app_secret"],
            "action_callback_token": creds["verification_token"],
            "action_callback_key": creds["encrypt_key"],
        },
        {
            "approval_codes": codes,
            "approval_center": {
                "approval_code": "oa",
                "action_callback_url": "http://127.0.0.1:9/webhooks/feishu?callback=quick_approval",
            },
        },
    )
    return FeishuConnector(config, ctx)


def feishu_started_within(store: SandboxStore, window: ReadWindow) -> list[str]:
    """Instance codes whose start time falls in [since, until): what Feishu filters on."""
    rows = store.conn().execute(
        "SELECT id FROM objects WHERE platform = 'feishu' AND kind = 'instance'"
        " AND created_ms >= ? AND created_ms < ?",
        (ms(window.since), ms(window.until)),
    )
    return [str(code) for (code,) in rows]


def _agora(emulator: AgoraEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    config = connector_config(
        Vendor.AGORA,
        emulator,
        {"app_id": creds["app_id"], "app_certificate": creds["app_certificate"]},
        {"org_name": creds["org_name"], "app_name": creds["app_name"]},
    )
    return AgoraConnector(config, ctx)


# The declarative connector (vendor rest) runs here as the sandbox's e-cology OA, described in
# YAML alone (config/examples/declarative/): the same emulator, the same promises.
DECLARATIVE = Path(__file__).parents[2] / "config" / "examples" / "declarative"
DECLARATIVE_OA = "sandbox_oa_declarative"


def _declarative_oa_config(base_url: str, credentials: Mapping[str, str]) -> Any:
    env = {
        "SANDBOX_OA_BASE_URL": base_url,
        "SANDBOX_OA_APPID": credentials["appid"],
        "SANDBOX_OA_SECRET": credentials["secret"],
        "SANDBOX_OA_SPK": credentials["spk"],
        "SANDBOX_OA_OFS_SYSCODE": credentials["ofs_syscode"],
    }
    return load_config(DECLARATIVE, env).connectors[DECLARATIVE_OA]


DECLARATIVE_SPEC = load_config(DECLARATIVE, environment=False).connectors[DECLARATIVE_OA]


def _rest(emulator: OAEmulator, ctx: ConnectorContext) -> Connector:
    return DeclarativeConnector(
        _declarative_oa_config(emulator.base_url, emulator.credentials()), ctx
    )


class Described(str):
    """A second declarative description's harness key: its own name, run as vendor rest."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return Vendor.REST.value


# The sandbox's Seeyon A8 OA, also described in YAML alone (config/examples/seeyon/).
SEEYON = Described("rest-seeyon")
SEEYON_EXAMPLE = Path(__file__).parents[2] / "config" / "examples" / "seeyon"


def _seeyon_config(base_url: str, credentials: Mapping[str, str]) -> Any:
    env = {
        "SANDBOX_SEEYON_BASE_URL": base_url,
        "SANDBOX_SEEYON_REST_USER": credentials["restUser"],
        "SANDBOX_SEEYON_REST_PASSWORD": credentials["restPassword"],
        "SANDBOX_SEEYON_ORG_ACCOUNT_ID": credentials["orgAccountId"],
    }
    return load_config(SEEYON_EXAMPLE, env).connectors["seeyon"]


SEEYON_SPEC = load_config(SEEYON_EXAMPLE, environment=False).connectors["seeyon"]


def _seeyon(emulator: SeeyonEmulator, ctx: ConnectorContext) -> Connector:
    return DeclarativeConnector(_seeyon_config(emulator.base_url, emulator.credentials()), ctx)


def seeyon_flows_changed(store: SandboxStore, window: ReadWindow) -> list[str]:
    """Every flow whose updateDate falls in [since, until): its sender's 已发 affair is read."""
    since, until = ms(window.since), ms(window.until)
    return [
        str(s["id"]) for s in store.list("seeyon", "summary") if since <= s["updateDate"] < until
    ]


def seeyon_members(store: SandboxStore, window: ReadWindow) -> list[str]:
    return [str(m["id"]) for m in store.list("seeyon", "member") if not m.get("isDeleted")]


def streams_of_vendor(vendor: Vendor) -> Mapping[str, Any]:
    """The streams a vendor's connector declares; the rest connector's, as its example says."""
    if vendor is Vendor.REST:
        assert DECLARATIVE_SPEC.declarative is not None
        return declared_streams(DECLARATIVE_SPEC.declarative)
    if isinstance(vendor, Described):
        assert SEEYON_SPEC.declarative is not None
        return declared_streams(SEEYON_SPEC.declarative)
    return capabilities(vendor)


def _slack(emulator: SlackEmulator, ctx: ConnectorContext) -> Connector:
    creds = emulator.credentials()
    config = connector_config(Vendor.SLACK, emulator, {"bot_token": creds["bot_token"]})
    return SlackConnector(replace(config, base_url=creds["api_url"]), ctx)


def slack_member(emulator: Emulator) -> str:
    return member_id(SEED, "E00002")


UPSERT = Dedupe(0, float("inf"), closed=True)  # looked up first: never made twice
NO_FAST_LIMITS = {"rate_limit_scale": "0"}  # detail calls are metered: a read would wait
WECOM_SEND = "message/send"
FEISHU_SEND = "POST /open-apis/im/v1/messages"
DINGTALK_CARD = "card/instances/createAndDeliver"
DINGTALK_NOTIFY = "message/corpconversation/asyncsend_v2"
AGORA_SEND = "POST /messages/users"
SLACK_SEND = "chat.postMessage"

HARNESS: Mapping[Vendor, Harness] = {
    Vendor.OA: Harness(
        OAEmulator,
        _oa,
        writes={
            "todos": Writing(oa_todo, objects("oa", "todo"), UPSERT),
            "project_progress": Writing(
                oa_comment, ledger("oa", "/api/proj/progress/comment"), UPSERT
            ),
        },
        reads={
            "approvals": Reading(
                approvals=500,
                window=days(0, 320),  # decisions run past day 300
                limit=37,
                held=oa_in_order,
                ordered=True,
                list_path="/api/workflow/paService/getAllWorkflowRequestList",
                stuck=PagingLoop,  # E9 has no page token: the pull's own trail stops it
                stuck_code="page_token_repeated",
                crowded=500,
            )
        },
        classify=oa.classify,
        answers=(
            Answer(200, {"_bare": []}, None),
            Answer(200, {"code": "SUCCESS", "errMsg": {}}, None),
            Answer(200, {"code": "1", "data": {}}, None),
            Answer(200, {"code": 0, "status": True, "token": "t"}, None),
            Answer(
                200, {"code": -1, "status": False, "msg": "token不存在或者超时：x"}, TokenExpired
            ),
            Answer(200, {"code": -1, "status": False, "msg": "认证信息错误！"}, VendorRejected),
            Answer(
                429,
                {"code": "REQUEST_FREQUENCY_LIMIT"},
                RateLimited,
                "REQUEST_FREQUENCY_LIMIT",
                1.0,
                {"Retry-After": "1"},
            ),
            Answer(200, {"code": "SYSTEM_INNER_ERROR", "errMsg": {}}, VendorUnavailable),
            Answer(500, {}, VendorUnavailable, "500"),  # E9's HTML error page
            Answer(200, {"code": "PARAM_ERROR", "errMsg": {"msg": "bad"}}, VendorRejected),
            Answer(200, {"code": "NO_PERMISSION", "errMsg": {}}, VendorRejected, "NO_PERMISSION"),
            Answer(200, {"code": "USER_EXCEPTION", "errMsg": {}}, VendorRejected),
            Answer(200, {"code": "0", "errMsg": {"msg": "params"}}, VendorRejected),
        ),
        throttled=Answer(429, {}, RateLimited, "REQUEST_FREQUENCY_LIMIT", 1.0),
        probes={
            "read": Probe(
                "workflow/getAllWorkflowRequestList",
                "approvals",
                read_probe("approvals", days(0, 320)),
            )
        },
    ),
    Vendor.WECOM: Harness(
        WeComEmulator,
        _wecom,
        writes={
            "messages": Writing(
                lambda e: card(wecom_member(e)), ledger("wecom", WECOM_SEND), Dedupe(3600, 4 * 3600)
            )
        },
        reads={
            "approvals": Reading(
                approvals=120,
                window=days(20, 200),  # many of getapprovalinfo's 31-day spans
                limit=9,
                held=wecom_applied_within,
                ordered=True,
                list_path="/cgi-bin/oa/getapprovalinfo",
                stuck=VendorRejected,  # the connector's own check of the vendor's token
                stuck_code="cursor_repeated",
                crowded=3000,
                short_pages=2,
                settings=NO_FAST_LIMITS,
            )
        },
        classify=wecom.classify,
        answers=(
            Answer(200, {"errcode": 0, "errmsg": "ok"}, None),
            Answer(
                200, {"errcode": 40014, "errmsg": "invalid access_token"}, TokenExpired, "40014"
            ),
            Answer(
                200, {"errcode": 42001, "errmsg": "access_token expired"}, TokenExpired, "42001"
            ),
            Answer(
                200, {"errcode": 45009, "errmsg": "api freq out of limit"}, RateLimited, "45009"
            ),
            Answer(200, {"errcode": 45033, "errmsg": "api concurrent out of limit"}, RateLimited),
            Answer(200, {"errcode": -1, "errmsg": "system busy"}, VendorUnavailable, "-1"),
            Answer(200, {"errcode": 301022, "errmsg": "checkin fetch failed"}, VendorUnavailable),
            Answer(502, {}, VendorUnavailable),
            Answer(
                200,
                {"errcode": 81013, "errmsg": "user & party & tag all invalid"},
                VendorRejected,
                "81013",
            ),
            Answer(200, {"errcode": 60011, "errmsg": "no privilege"}, VendorRejected, "60011"),
        ),
        throttled=Answer(200, {}, RateLimited, "45009", 60.0),
        probes={
            "send": Probe(
                "message/send",
                "messages",
                write_probe("messages", lambda e: card(wecom_member(e))),
                ledger("wecom", WECOM_SEND),
            )
        },
        # Callback cards need the app's callback URL set (else 43012); nothing is called back.
        settings={"callback_url": "http://127.0.0.1:9/wecom/callback"},
    ),
    Vendor.DINGTALK: Harness(
        DingTalkEmulator,
        _dingtalk,
        writes={
            "messages": Writing(
                lambda e: card(users(e, "dingtalk", "userid")[0]),
                ledger("dingtalk", DINGTALK_CARD),
                Dedupe(0, 86_400, closed=True),  # a card's outTrackId: for the day at least
            ),
            "approval_center": Writing(
                lambda e: center(*users(e, "dingtalk", "userid")),
                objects("dingtalk", "pc_instance"),
                None,
            ),
        },
        reads={
            "approvals": Reading(
                approvals=90,
                window=days(10, 290),
                limit=7,
                held=dingtalk_created_within,
                ordered=False,
                list_path="/v1.0/workflow/processes/instanceIds/query",
                stuck=VendorRejected,  # the connector's own check of the vendor's token
                stuck_code="next_token_repeated",
                crowded=3000,
                settings=NO_FAST_LIMITS,
            )
        },
        classify=dingtalk.classify,
        answers=(
            Answer(200, {"errcode": 0, "errmsg": "ok"}, None),
            Answer(200, {"accessToken": "t", "expireIn": 7200}, None),
            Answer(200, {"errcode": 40014, "errmsg": "不合法的access_token"}, TokenExpired),
            Answer(200, {"errcode": 42001, "errmsg": "access_token超时"}, TokenExpired),
            Answer(
                400,
                {"code": "InvalidAuthentication", "message": "不合法的access_token"},
                TokenExpired,
            ),
            Answer(401, {"code": "Unauthorized"}, TokenExpired),
            Answer(200, {"errcode": 90018, "errmsg": "qps"}, RateLimited, "90018", 1.0),
            Answer(200, {"errcode": 90002, "errmsg": "global"}, RateLimited, "90002"),
            Answer(403, {"code": "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"}, RateLimited),
            Answer(200, {"status": 1111, "wait": 5, "punish": "deny"}, RateLimited),
            Answer(200, {"errcode": 90020, "errmsg": "超出月度调用量"}, QuotaExhausted),
            Answer(403, {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg"}, QuotaExhausted),
            Answer(200, {"errcode": -1, "errmsg": "busy"}, VendorUnavailable),
            Answer(503, {}, VendorUnavailable),
            Answer(200, {"errcode": 88, "sub_code": "90002", "errmsg": "failure"}, RateLimited),
            Answer(200, {"errcode": 60011, "errmsg": "no permission"}, VendorRejected, "60011"),
            Answer(400, {"code": "InvalidParameter", "message": "bad"}, VendorRejected),
        ),
        throttled=Answer(
            403, {}, RateLimited, "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi", 1.0
        ),
        probes={
            "new": Probe(
                DINGTALK_CARD,
                "messages",
                write_probe("messages", lambda e: card(users(e, "dingtalk", "userid")[0])),
                ledger("dingtalk", DINGTALK_CARD),
            ),
            "old": Probe(
                DINGTALK_NOTIFY,
                "messages",
                write_probe("messages", lambda e: message(users(e, "dingtalk", "userid")[1])),
                ledger("dingtalk", DINGTALK_NOTIFY),
                # Never resent by the HTTP layer: the effect protocol resends it, in its window.
                garbled=OutcomeUnknown,
            ),
        },
    ),
    Vendor.FEISHU: Harness(
        FeishuEmulator,
        _feishu,
        writes={
            "messages": Writing(
                lambda e: card(users(e, "feishu", "open_id")[0]),
                ledger("feishu", FEISHU_SEND),
                Dedupe(0, 3600),
            ),
            "approval_center": Writing(
                lambda e: center(*users(e, "feishu", "open_id")),
                objects("feishu", "external_instance"),
                Dedupe(0, 3600),
            ),
        },
        reads={
            "approvals": Reading(
                approvals=90,
                window=days(60, 240),
                limit=7,
                held=feishu_started_within,
                ordered=False,
                list_path="/open-apis/approval/v4/instances",
                stuck=VendorRejected,
                stuck_code="page_token_repeated",
                crowded=3000,
                short_pages=1,
                settings=NO_FAST_LIMITS,
            )
        },
        classify=feishu.classify,
        answers=(
            Answer(200, {"code": 0, "msg": "success"}, None),
            Answer(400, {"code": 99991663, "msg": "invalid token"}, TokenExpired, "99991663"),
            Answer(400, {"code": 99991664, "msg": "invalid token"}, TokenExpired, "99991664"),
            Answer(
                400,
                {"code": 99991400},
                RateLimited,
                "99991400",
                3.0,
                {"x-ogw-ratelimit-reset": "3"},
            ),
            Answer(
                429,
                {"code": 99991400},
                RateLimited,
                "99991400",
                7.0,
                {"x-ogw-ratelimit-reset": "7"},
            ),
            Answer(429, {}, RateLimited),
            Answer(200, {"code": 1395001, "msg": "service busy"}, VendorUnavailable, "1395001"),
            Answer(502, {}, VendorUnavailable),
            Answer(400, {"code": 230013, "msg": "no availability"}, VendorRejected, "230013"),
            Answer(400, {"code": 230020, "msg": "frequency limit"}, RateLimited),  # per message
            Answer(200, {"code": 10003, "msg": "invalid param"}, VendorRejected, "10003"),
            Answer(404, {}, VendorRejected),  # the gateway's plain-text 404: a wrong base URL
        ),
        throttled=Answer(429, {}, RateLimited, "99991400", 1.0),
        probes={
            "send": Probe(
                "im/v1/messages",
                "messages",
                write_probe("messages", lambda e: card(users(e, "feishu", "open_id")[0])),
                ledger("feishu", FEISHU_SEND),
            )
        },
    ),
    Vendor.REST: Harness(
        OAEmulator,
        _rest,
        writes={"todos": Writing(oa_todo, objects("oa", "todo"), UPSERT)},
        reads={
            "approvals": Reading(
                approvals=500,
                window=days(0, 320),
                limit=37,
                held=oa_in_order,
                ordered=True,
                list_path="/api/workflow/paService/getAllWorkflowRequestList",
                stuck=PagingLoop,  # the same page twice: the connector's own check stops it
                stuck_code="page_repeated",
                crowded=500,
            ),
        },
        classify=classifier("rest", DECLARATIVE_SPEC.declarative.errors),  # type: ignore[union-attr]
        answers=(
            Answer(200, {"_bare": []}, None),
            Answer(200, {"code": "SUCCESS", "errMsg": {}}, None),
            Answer(200, {"code": "1", "data": {}}, None),
            Answer(200, {"code": 0, "status": True, "token": "t"}, None),
            Answer(
                200, {"code": -1, "status": False, "msg": "token不存在或者超时：x"}, TokenExpired
            ),
            Answer(200, {"code": -1, "status": False, "msg": "认证信息错误！"}, VendorRejected),
            Answer(
                429,
                {"code": "REQUEST_FREQUENCY_LIMIT"},
                RateLimited,
                "REQUEST_FREQUENCY_LIMIT",
                1.0,
                {"Retry-After": "1"},
            ),
            Answer(200, {"code": "SYSTEM_INNER_ERROR", "errMsg": {}}, VendorUnavailable),
            Answer(500, {}, VendorUnavailable, "http_500"),
            Answer(200, {"code": "PARAM_ERROR", "errMsg": {"msg": "bad"}}, VendorRejected),
            Answer(200, {"code": "NO_PERMISSION", "errMsg": {}}, VendorRejected, "NO_PERMISSION"),
            Answer(200, {"code": "USER_EXCEPTION", "errMsg": {}}, VendorRejected),
            Answer(200, {"code": "0", "errMsg": {"msg": "params"}}, VendorRejected),
        ),
        throttled=Answer(429, {}, RateLimited, "REQUEST_FREQUENCY_LIMIT", 1.0),
        probes={
            "read": Probe(
                "workflow/getAllWorkflowRequestList",
                "approvals",
                read_probe("approvals", days(0, 320)),
            )
        },
    ),
    SEEYON: Harness(  # type: ignore[dict-item]
        SeeyonEmulator,
        _seeyon,
        writes={},
        reads={
            "approvals": Reading(
                approvals=300,
                window=days(0, 320),
                limit=4,
                held=seeyon_flows_changed,
                ordered=False,  # member by member, each member's in updateDate order
                list_path="/seeyon/rest/affairs/sent",
                stuck=PagingLoop,
                stuck_code="page_repeated",
                crowded=300,
                settings=NO_FAST_LIMITS,
            ),
            "members": Reading(
                approvals=5,
                window=ReadWindow(iso(EPOCH_MS), iso_utc(datetime.now(UTC) + timedelta(days=1))),
                limit=7,  # not incremental: read whole, each at the time it is read
                held=seeyon_members,
                ordered=False,
                list_path=f"/seeyon/rest/orgMembers/{SEEYON_ACCOUNT_ID}",
                stuck=PagingLoop,
                stuck_code="page_repeated",
                crowded=5,
                short_pages=1,
            ),
        },
        classify=classifier("rest", SEEYON_SPEC.declarative.errors),  # type: ignore[union-attr]
        answers=(
            Answer(200, {"_bare": []}, None),
            Answer(200, {"_bare": 3}, None),  # flow/state: a bare number
            Answer(200, {"code": 0, "message": "", "data": {"summaryId": "1"}}, None),
            Answer(200, {"page": 1, "size": 20, "pages": 0, "total": 0, "data": []}, None),
            Answer(401, {"code": "1010", "message": "被迫下线"}, TokenExpired),
            Answer(200, {"code": 1001, "message": "bad", "data": None}, VendorRejected, "1001"),
            Answer(200, {"code": 1002, "message": "不存在", "data": None}, VendorRejected, "1002"),
            Answer(200, {"code": 1004, "message": "已处理", "data": None}, VendorRejected, "1004"),
            Answer(429, {"code": "1429"}, RateLimited, "1429", 1.0, {"Retry-After": "1"}),
            Answer(500, {}, VendorUnavailable, "http_500"),
        ),
        throttled=Answer(429, {}, RateLimited, "1429", 1.0),
        probes={
            "read": Probe(
                "orgMembers",
                "members",
                read_probe("members", ReadWindow(None, None)),
            )
        },
    ),
    Vendor.AGORA: Harness(
        AgoraEmulator,
        _agora,
        # Agora has no dedupe handle: only our effect table may stop a second send.
        writes={
            "messages": Writing(
                lambda e: card("e00002"), ledger("agora", AGORA_SEND), None, made_twice=2
            )
        },
        reads={},
        classify=agora.classify,
        answers=(
            Answer(200, {"data": {"u1": "123"}}, None),
            Answer(401, {"error": "unauthorized"}, TokenExpired, "unauthorized"),
            Answer(401, {"error": "auth_bad_access_token"}, TokenExpired, "auth_bad_access_token"),
            Answer(429, {"error": "reach_limit"}, RateLimited, "reach_limit", 1.0),
            Answer(429, {"error": "resource_limited"}, QuotaExhausted),
            Answer(408, {}, VendorUnavailable, "http_408"),
            Answer(503, {}, VendorUnavailable, "http_503"),
            Answer(400, {"error": "illegal_argument"}, VendorRejected, "illegal_argument"),
            Answer(404, {"error": "service_resource_not_found"}, VendorRejected),
            Answer(413, {}, VendorRejected, "http_413"),
        ),
        throttled=Answer(429, {}, RateLimited, "reach_limit", 1.0),
        probes={
            "send": Probe(
                "messages/users",
                "messages",
                write_probe("messages", lambda e: card("e00002")),
                ledger("agora", AGORA_SEND),
                garbled=OutcomeUnknown,
            )
        },
    ),
    Vendor.SLACK: Harness(
        SlackEmulator,
        _slack,
        # chat.postMessage has no dedupe handle: the effect table, and a look-up of the
        # message metadata, stop a second send.
        writes={
            "messages": Writing(
                lambda e: card(slack_member(e)), ledger("slack", SLACK_SEND), None, made_twice=2
            )
        },
        reads={},
        classify=slack.classify,
        answers=(
            Answer(200, {"ok": True, "ts": "1.000100"}, None),
            Answer(200, {"ok": False, "error": "invalid_auth"}, VendorRejected, "invalid_auth"),
            Answer(200, {"ok": False, "error": "token_revoked"}, VendorRejected, "token_revoked"),
            Answer(200, {"ok": False, "error": "token_expired"}, TokenExpired, "token_expired"),
            Answer(
                429,
                {"ok": False, "error": "ratelimited"},
                RateLimited,
                "ratelimited",
                30.0,
                {"Retry-After": "30"},
            ),
            Answer(200, {"ok": False, "error": "rate_limited"}, RateLimited, "rate_limited", 1.0),
            Answer(200, {"ok": False, "error": "internal_error"}, VendorUnavailable),
            Answer(503, {}, VendorUnavailable, "http_503"),
            Answer(
                200,
                {"ok": False, "error": "channel_not_found"},
                VendorRejected,
                "channel_not_found",
            ),
            Answer(200, {"ok": False, "error": "msg_blocks_too_long"}, VendorRejected),
            Answer(404, {}, VendorRejected, "http_404"),
        ),
        throttled=Answer(429, {}, RateLimited, "ratelimited", 1.0),
        probes={
            "send": Probe(
                SLACK_SEND,
                "messages",
                write_probe("messages", lambda e: card(slack_member(e))),
                ledger("slack", SLACK_SEND),
                garbled=OutcomeUnknown,
            )
        },
        tokens_expire=False,
    ),
}


# Vendors whose conformance runs against their real server, in the module named.
ON_A_REAL_SERVER: Mapping[Vendor, str] = {Vendor.MATRIX: "tests/matrix/test_conformance.py"}
# Every vendor the registry knows, and the second declarative description (run as rest).
EMULATED: list[Vendor] = [
    *(vendor for vendor in CONNECTORS if vendor not in ON_A_REAL_SERVER),
    SEEYON,  # type: ignore[list-item]
]


# -- parameters ------------------------------------------------------------------------------
def harness(vendor: Vendor) -> Harness:
    """The vendor's harness; a connector the registry knows without one fails its tests."""
    if vendor not in HARNESS:
        pytest.fail(f"connector {vendor} has no conformance harness in {__name__}")
    return HARNESS[vendor]


def declared(able: Callable[[Any], bool]) -> list[Any]:
    """(vendor, stream) of every declared stream that `able` picks, as pytest params."""
    return [
        pytest.param(vendor, stream, id=f"{vendor}-{stream}")
        for vendor in EMULATED
        for stream, can in streams_of_vendor(vendor).items()
        if able(can)
    ]


def probes() -> list[Any]:
    return [
        pytest.param(vendor, name, id=f"{vendor}-{name}")
        for vendor in EMULATED
        for name in (HARNESS[vendor].probes if vendor in HARNESS else ("none",))
    ]


def answers() -> list[Any]:
    return [
        pytest.param(vendor, answer, id=f"{vendor}-{answer.status}-{number}")
        for vendor in EMULATED
        for number, answer in enumerate(HARNESS[vendor].answers if vendor in HARNESS else ())
    ]


@dataclass(frozen=True)
class Served:
    """An emulator served behind the sandbox's fault injector, and its connector."""

    emulator: Emulator
    connector: Connector
    faults: FaultCache

    @property
    def store(self) -> SandboxStore:
        return self.emulator.store

    def fault(self, kind: str) -> None:
        """Every call from now on meets fault `kind` (sandbox server's FaultInjector)."""
        self.store.set_fault(self.emulator.platform, kind, 1.0, 3600, {})
        self.faults.invalidate()

    def without_retries(self) -> None:
        self.connector.client.retry_policy = RetryPolicy(max_attempts=1)  # type: ignore[attr-defined]

    def calls(self, api: str) -> int:
        return int(self.connector.client.call_counts().get(api, 0))  # type: ignore[attr-defined]

    def tokens_issued(self) -> int:
        """Tokens the vendor has issued (Agora: accepted, as its app tokens are built here)."""
        sql = "SELECT count(*) FROM tokens WHERE platform = ?"
        (count,) = self.store.conn().execute(sql, (self.emulator.platform,)).fetchone()
        return int(count)


Make = Callable[..., Served]


@pytest.fixture
def make(serve_app, store: SandboxStore, ctx: ConnectorContext) -> Make:
    """Serve `vendor`'s emulator seeded with `approvals`, wrapped as `wrap` says (the fault
    injector by default), and make its connector."""

    def made(
        vendor: Vendor,
        approvals: int = 5,
        settings: Mapping[str, str] | None = None,
        wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    ) -> Served:
        kit = harness(vendor)
        port = free_port()
        emulator = kit.emulator(store, f"http://127.0.0.1:{port}")
        faults = FaultCache(store)
        app = Starlette(routes=emulator.routes())
        serve_app(wrap(app) if wrap else FaultInjector(app, emulator, faults), port)
        emulator.seed(World(SEED), approvals=approvals, checkin_days=0)
        for key, value in {**kit.settings, **(settings or {})}.items():
            store.set_setting(emulator.platform, key, value)
        return Served(emulator, kit.connect(emulator, ctx), faults)

    return made


# -- every connector has a harness -----------------------------------------------------------
@pytest.mark.parametrize("vendor", EMULATED)
def test_every_connector_the_registry_knows_has_a_harness_for_each_declared_role(
    vendor: Vendor,
) -> None:
    kit = harness(vendor)
    streams = streams_of_vendor(vendor)

    assert set(kit.writes) == {s for s, can in streams.items() if can.write}
    assert set(kit.reads) == {s for s, can in streams.items() if can.read}
    assert kit.answers
    assert kit.probes


def test_the_suite_has_no_harness_for_a_connector_the_registry_does_not_know() -> None:
    assert {vendor.value for vendor in HARNESS} <= set(CONNECTORS)


@pytest.mark.parametrize("vendor", list(ON_A_REAL_SERVER))
def test_a_connector_tested_on_its_real_server_has_its_conformance_module(vendor: Vendor) -> None:
    assert vendor in CONNECTORS
    assert (ROOT / ON_A_REAL_SERVER[vendor]).is_file()


@pytest.mark.parametrize("vendor", EMULATED)
def test_the_connector_names_its_vendor(vendor: Vendor, make: Make) -> None:
    assert make(vendor).connector.vendor == vendor.value


# -- declared roles work, undeclared ones are refused ----------------------------------------
def read_to_end(connector: Connector, stream: str, window: ReadWindow, limit: int) -> list[Page]:
    """Every page of `stream` in `window`, the tokens followed as the pull follows them."""
    trail = PageTrail(connector.vendor, stream)
    pages: list[Page] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = connector.read_page(stream, window, token, limit)
        pages.append(page)
        token = trail.follow(page.next_token)
        if token is None:
            return pages
    pytest.fail(f"{connector.vendor} {stream}: no end after {MAX_PAGES} pages")


def reading(vendor: Vendor, stream: str, make: Make) -> tuple[Served, Reading]:
    spec = harness(vendor).reads[stream]
    return make(vendor, spec.approvals, spec.settings), spec


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.read))
def test_given_a_stream_declared_readable_a_read_pages_it_to_its_end_once_each(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served, spec = reading(vendor, stream, make)

    pages = read_to_end(served.connector, stream, spec.window, spec.limit)

    ids = [r.source_id for page in pages for r in page.records]
    held = spec.held(served.store, spec.window)
    assert held
    assert ids == held if spec.ordered else sorted(ids) == sorted(held)
    assert all(len(page.records) <= spec.limit for page in pages)
    if spec.short_pages is not None:
        assert all(len(page.records) == spec.limit for page in pages[: -spec.short_pages])


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.read))
def test_the_cursor_never_goes_back_and_stays_within_the_window(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served, spec = reading(vendor, stream, make)

    pages = read_to_end(served.connector, stream, spec.window, spec.limit)

    cursors = [r.cursor_value for page in pages for r in page.records]
    assert cursors == sorted(cursors)  # across pages too: the cursor commits per page
    since, until = spec.window.since or "", spec.window.until or ""
    assert since
    assert until
    assert all(since <= cursor < until for cursor in cursors)


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.read))
def test_the_same_page_token_reads_the_same_page(vendor: Vendor, stream: str, make: Make) -> None:
    served, spec = reading(vendor, stream, make)
    first = served.connector.read_page(stream, spec.window, None, spec.limit)

    again = served.connector.read_page(stream, spec.window, first.next_token, spec.limit)
    once_more = served.connector.read_page(stream, spec.window, first.next_token, spec.limit)

    assert first.next_token is not None
    assert again.records == once_more.records
    assert again.next_token == once_more.next_token


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.read))
def test_given_a_vendor_stuck_on_one_page_the_read_stops_with_a_clear_error(
    vendor: Vendor, stream: str, make: Make
) -> None:
    spec = harness(vendor).reads[stream]
    served = make(vendor, spec.crowded, spec.settings, lambda app: StuckOn(spec.list_path, app))

    with pytest.raises(spec.stuck) as caught:
        read_to_end(served.connector, stream, spec.window, spec.limit)

    assert caught.value.vendor == vendor.value
    assert caught.value.code == spec.stuck_code
    assert not caught.value.retryable


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: not can.read))
def test_given_a_stream_not_declared_readable_a_pull_of_it_is_refused(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served = make(vendor)

    with pytest.raises(ConfigError):
        served.connector.read_page(stream, WORLD, None, 50)


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.write))
def test_given_a_stream_declared_writable_a_write_is_done(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served = make(vendor)
    payload = harness(vendor).writes[stream].payload(served.emulator)

    note = Notification.from_json(payload)
    result = served.connector.write(stream, WriteRequest("c" * 64, "8812", WriteOp.CREATE, note))

    assert result.status is WriteStatus.DONE, result.reason


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: not can.write))
def test_given_a_stream_not_declared_writable_a_write_to_it_is_refused(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served = make(vendor)
    request = WriteRequest(
        "c" * 64, "8812", WriteOp.CREATE, Notification.from_json(message("anyone"))
    )

    with pytest.raises((ConfigError, VendorRejected)):
        served.connector.write(stream, request)


@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: not can.write))
def test_given_a_stream_not_declared_writable_no_vendor_dedupe_is_claimed_for_it(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served = make(vendor)

    assert served.connector.dedupe_window_s(stream) is None


@pytest.mark.parametrize(
    ("vendor", "stream"), declared(lambda can: EventKind.APPROVAL_CHANGED in can.events)
)
def test_given_approval_changed_events_declared_the_connector_rereads_the_record_named(
    vendor: Vendor, stream: str, make: Make
) -> None:
    connector = make(vendor).connector
    [first, *_] = connector.read_page(stream, WORLD, None, 5).records

    assert isinstance(connector, ReadsOne)
    again = connector.read_one(stream, first.source_id)

    assert again is not None
    assert again.source_id == first.source_id


@pytest.mark.parametrize(
    ("vendor", "stream"), declared(lambda can: EventKind.MESSAGE in can.events)
)
def test_given_message_events_declared_the_connector_hydrates_a_message_record(
    vendor: Vendor, stream: str, make: Make
) -> None:
    connector = make(vendor).connector
    payload = {
        "message_id": "m1",
        "sender": "someone",
        "chat_id": "someone",
        "chat_type": "p2p",
        "text": "#important budget",
        "flags": ["important"],
        "mentions": [],
        "sent_at": "2026-03-02T09:30:00Z",
    }
    record = Record("m1", "m1", "2026-03-02T09:30:00Z", payload)

    [hydrated] = connector.hydrate(stream, [record])

    assert hydrated.source_id == "m1"


# -- errors classified -----------------------------------------------------------------------
@pytest.mark.parametrize(("vendor", "answer"), answers())
def test_a_vendor_answer_is_classified_with_its_code_and_wait(
    vendor: Vendor, answer: Answer
) -> None:
    error = harness(vendor).classify(answer.status, answer.body, answer.headers)

    if answer.error is None:
        assert error is None
        return
    assert isinstance(error, answer.error)
    assert isinstance(error, VendorError)
    assert error.vendor == vendor.value
    if answer.code is not None:
        assert error.code == answer.code
    if answer.wait is not None:
        assert error.retry_after == answer.wait


@pytest.mark.parametrize(("vendor", "probe"), probes())
def test_given_the_vendor_throttles_the_call_fails_rate_limited_with_its_code_and_wait(
    vendor: Vendor, probe: str, make: Make
) -> None:
    served = make(vendor)
    served.without_retries()
    served.fault("ratelimit")
    throttled = harness(vendor).throttled

    with pytest.raises(RateLimited) as caught:
        harness(vendor).probes[probe].call(served.connector, served.emulator, "k1")

    assert caught.value.code == throttled.code
    assert caught.value.retry_after == throttled.wait
    assert caught.value.retryable is True


@pytest.mark.parametrize(("vendor", "probe"), probes())
def test_given_the_vendor_answers_5xx_the_call_fails_as_unavailable_and_retryable(
    vendor: Vendor, probe: str, make: Make
) -> None:
    served = make(vendor)
    served.without_retries()
    served.fault("error5xx")

    with pytest.raises(VendorUnavailable) as caught:
        harness(vendor).probes[probe].call(served.connector, served.emulator, "k1")

    assert caught.value.code.endswith(("500", "503"))
    assert caught.value.retryable is True


@pytest.mark.parametrize(("vendor", "probe"), probes())
def test_given_an_expired_token_the_call_gets_a_new_one_and_succeeds(
    vendor: Vendor, probe: str, make: Make
) -> None:
    if not harness(vendor).tokens_expire:
        pytest.skip(f"{vendor} tokens never expire: there is nothing to renew")
    served = make(vendor)
    call = harness(vendor).probes[probe]
    call.call(served.connector, served.emulator, "k1")
    served.store.expire_tokens(served.emulator.platform)

    call.call(served.connector, served.emulator, "k2")

    assert served.tokens_issued() == 2
    assert served.calls(call.api) == 3  # the first, the refused one, then its retry
    if call.made is not None:
        assert call.made(served.store) == 2


@pytest.mark.parametrize(("vendor", "probe"), probes())
def test_given_a_garbled_answer_the_call_is_retryable_only_if_a_resend_is_safe(
    vendor: Vendor, probe: str, make: Make
) -> None:
    served = make(vendor)
    served.without_retries()
    call = harness(vendor).probes[probe]
    call.call(served.connector, served.emulator, "k1")  # the token comes while answers are whole
    served.fault("malformed")

    with pytest.raises(call.garbled) as caught:
        call.call(served.connector, served.emulator, "k2")

    assert caught.value.code == "bad_body"
    if call.made is not None and served.connector.dedupe_window_s(call.stream) is None:
        # Sent, and nothing at the vendor would drop a second copy: never resend it blindly.
        assert isinstance(caught.value, OutcomeUnknown)


# -- writes idempotent under their key -------------------------------------------------------
@pytest.mark.parametrize(("vendor", "stream"), declared(lambda can: can.write))
def test_given_the_same_write_twice_the_vendor_keeps_one_object_or_has_no_dedupe(
    vendor: Vendor, stream: str, make: Make
) -> None:
    served = make(vendor)
    spec = harness(vendor).writes[stream]
    note = Notification.from_json(spec.payload(served.emulator))
    request = WriteRequest("d" * 64, "8812", WriteOp.CREATE, note)

    first = served.connector.write(stream, request)
    again = served.connector.write(stream, request)

    assert first.status is again.status is WriteStatus.DONE, again.reason
    window = served.connector.dedupe_window_s(stream)
    assert spec.made(served.store) == spec.made_twice
    if spec.dedupe is None:
        # No handle to resend under: the effect protocol must never resend an effect whose
        # outcome it does not know, which a window of None tells it (steps._write_one).
        assert window is None
    else:
        assert window is not None
        assert spec.dedupe.holds(window)
        assert spec.made_twice == 1
        assert again.target_id == first.target_id
    if spec.made_twice == 2:
        assert again.target_id != first.target_id
