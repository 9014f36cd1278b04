"""The DingTalk (钉钉) connector: cards and work notifications out, approvals in, the directory.

Written from DingTalk's contract (shared/platform-apis.md section 2), never from the sandbox
emulator. DingTalk has two API families and one access token serves both: the new API
(`/v1.0/...`, token in header `x-acs-dingtalk-access-token`, errors as HTTP 4xx/5xx with
`{code, message}`) and the old one (`/topapi/...`, token in the query, errors as HTTP 200 with
`errcode`). `classify` reads both. The token comes from the new API's oauth2 endpoint and lives
in Redis, shared by every worker.

Every call goes through the shared `HttpClient`, so every call (token fetches included) is
charged to the monthly quota configured as `monthly_quota` (standard edition: 10,000 calls a
month) before it is sent; DingTalk's own 90020 answer stops the run the same way.

Dedupe handles (DESIGN.md section 3): a card carries an `outTrackId` derived from our effect
key, and DingTalk creates and delivers a card once per outTrackId, for as long as it keeps the
card. A work notification has no handle, but DingTalk delivers the same content to the same user
at most once per day (China time), and our content is built only from the request. The write
step resends an effect whose outcome it does not know only inside `dedupe_window_s`, so that is
the time since today's midnight in China: within it both handles hold.

Streams: write "messages" (a card, a work notification, or an update of a card sent earlier);
read "approvals" (instances of the processes listed in the `process_codes` option); write and
read back "approval_center" (the process centre: dingtalk_process_centre.py).

Two hosts: DingTalk serves the new API from https://api.dingtalk.com (`base_url`) and the old
one from https://oapi.dingtalk.com (option `oapi_base_url`; it defaults to `base_url`, since
the sandbox serves both on one port). Both go through one client, so the app has one token,
breaker, quota and set of rate limits whichever host a call goes to.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from types import MappingProxyType
from typing import Any

from marshmallow import fields, validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import (
    ConnectorOptions,
    OptionsSchema,
    Text,
    Texts,
    Url,
    Whole,
)
from sync_pipeline.connectors.base import (
    CONFIG_ALL_APIS,
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    TargetView,
    ViewPage,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import dingtalk as dingtalk_buttons
from sync_pipeline.connectors.dingtalk_process_centre import (
    ProcessCentre,
    ProcessCentreOptions,
    ProcessCentreOptionsSchema,
)
from sync_pipeline.connectors.markup import DINGTALK_MARKDOWN, PLAIN, Unit, link
from sync_pipeline.connectors.notify import message_text, rejected, wants_decision
from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    QuotaExhausted,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import Auth, TokenCache, header_token, query_token
from sync_pipeline.records import (
    NotifyKind,
    Page,
    ReadWindow,
    Record,
    WriteRequest,
    WriteResult,
    WriteStatus,
    iso_utc,
    parse_iso_utc,
)

log = logging.getLogger(__name__)

VENDOR = "dingtalk"
MESSAGES = "messages"
APPROVAL_CENTER = "approval_center"
APPROVALS = "approvals"
CHINA = timezone(timedelta(hours=8))  # DingTalk's days (notification dedupe, quotas)

NEW_API: Auth = header_token("x-acs-dingtalk-access-token")
OLD_API: Auth = query_token()
TOKEN_CODES = frozenset({40014, 42001})
THROTTLE_CODES = frozenset({90002, 90018, 90019, 90030})  # global, per app, ISV, robot
QUOTA_CODE = 90020
QUOTA_NEW_CODE = "Forbidden.AccessDenied.ApiCountLimitForOrg"
THROTTLE_PREFIXES = ("Forbidden.AccessDenied.Qps", "Forbidden.AccessDenied.Qpm")
THROTTLE_WAIT_S = 1.0  # limits are per second; DingTalk's advice is to sleep at least 1 s
STANDARD_MONTHLY_CALLS = 10_000  # standard edition, when no monthly_quota is configured
TOKEN_REFRESH_MARGIN_S = 300.0
OUT_TRACK_ID_LEN = 40  # hex characters of sha256(effect key): 160 bits
TEXT_MAX_BYTES = 1800  # the whole `msg` may hold 2048 bytes
# Card variables: DingTalk documents no limit; ours keep a card to what it shows.
TITLE_BYTES, TEXT_BYTES, LABEL_BYTES = 512, 4096, 256
LIST_PAGE_SIZE = 20  # instanceIds/query `maxResults`: at most 20
MAX_SPAN_MS = 120 * 86_400_000  # instanceIds/query: a window of at most 120 days
MAX_HISTORY_DAYS = 365  # ... starting at most 365 days ago
DEFAULT_HISTORY_DAYS = MAX_HISTORY_DAYS - 1
USERS_PAGE_SIZE = 100
ROOT_DEPARTMENT = 1
# A card template is made in DingTalk's card builder; a deployment names its own in the
# `card_template_id` option. Its variables are the cardParamMap keys of `_card_data`.
DEFAULT_CARD_TEMPLATE = "sync_pipeline.approval"

INSTANCE_STATUS = {"NEW": "pending", "RUNNING": "pending", "TERMINATED": "revoked"}
INSTANCE_STATUS["CANCELED"] = "revoked"
RESULT_STATUS = {"agree": "approved", "refuse": "rejected"}


def classify(
    status: int,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    monthly_limit: int = STANDARD_MONTHLY_CALLS,
) -> SyncError | None:
    """DingTalk's answer as an error, or None (platform-apis.md section 2.3).

    Old-API answers carry `errcode` (HTTP 200 even on failure); new-API errors carry `code`
    with a 4xx/5xx status; a banned IP gets `{"status": 1111, "wait": 5, "punish": "deny"}`.
    """
    if body.get("punish") == "deny":
        return RateLimited(VENDOR, "ip_banned", retry_after=_number(body.get("wait")))
    if "errcode" in body:
        return _classify_old(body, monthly_limit)
    code = str(body.get("code") or "")
    if status < 400:
        return None
    if code == QUOTA_NEW_CODE:
        return _quota_spent(monthly_limit)
    if status == 429 or code.startswith(THROTTLE_PREFIXES):
        return RateLimited(VENDOR, code or "429", retry_after=THROTTLE_WAIT_S)
    if status == 401 or code == "InvalidAuthentication":
        return TokenExpired(VENDOR, code or "401")
    if status >= 500:
        return VendorUnavailable(VENDOR, code or f"http_{status}")
    return VendorRejected(VENDOR, code or f"http_{status}", str(body.get("message", ""))[:200])


def _classify_old(body: Mapping[str, Any], monthly_limit: int) -> SyncError | None:
    try:
        code = int(body["errcode"])
    except (TypeError, ValueError):
        return VendorRejected(VENDOR, str(body["errcode"]))
    if code == 88:  # "failure": the real reason is the sub_code
        try:
            code = int(body.get("sub_code") or 88)
        except (TypeError, ValueError):
            code = 88
    if code == 0:
        return None
    if code in TOKEN_CODES:
        return TokenExpired(VENDOR, str(code))
    if code in THROTTLE_CODES:
        return RateLimited(VENDOR, str(code), retry_after=THROTTLE_WAIT_S)
    if code == QUOTA_CODE:
        return _quota_spent(monthly_limit)
    if code == -1:
        return VendorUnavailable(VENDOR, str(code))
    return VendorRejected(VENDOR, str(code), str(body.get("errmsg", ""))[:200])


def _quota_spent(monthly_limit: int) -> QuotaExhausted:
    """DingTalk refuses every call until its month ends: stop the run, do not retry."""
    return QuotaExhausted(VENDOR, "*", monthly_limit, datetime.now(CHINA).strftime("%Y-%m"))


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


NO_READ_MESSAGES = (
    "DingTalk documents no read of a work notice's content or of an interactive card as it"
    " stands, only a notice's send result (read, unread, failed)"
)


def out_track_id(effect_key: str) -> str:
    """A card's outTrackId: DingTalk's idempotency key for creating and delivering it."""
    return hashlib.sha256(effect_key.encode("utf-8")).hexdigest()[:OUT_TRACK_ID_LEN]


@dataclass(frozen=True)
class DingTalkOptions(ConnectorOptions):
    agent_id: str  # the app's AgentId, which work notifications name
    oapi_base_url: str | None = None  # the old API's host; None: base_url (the sandbox's)
    process_codes: tuple[str, ...] = ()  # the approval processes stream "approvals" reads
    card_template_id: str = DEFAULT_CARD_TEMPLATE
    robot_code: str | None = None  # None: the app key, an internal app's robot code
    history_days: int = DEFAULT_HISTORY_DAYS  # how far a full sync reaches back
    # stream "approval_center"
    process_centre: ProcessCentreOptions = field(default_factory=ProcessCentreOptions)


class DingTalkOptionsSchema(OptionsSchema):
    BUILDS = DingTalkOptions
    agent_id = Text(required=True)
    oapi_base_url = Url()
    process_codes = Texts(validate=validate.Length(min=1))
    card_template_id = Text()
    robot_code = Text()
    history_days = Whole(validate=validate.Range(min=1, max=MAX_HISTORY_DAYS))
    process_centre = fields.Nested(ProcessCentreOptionsSchema)


class DingTalkConnector:
    """One DingTalk internal app: credentials app_key and app_secret; options as
    `DingTalkOptions` declares them (`agent_id` required)."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {
            MESSAGES: StreamCapabilities(write=True, no_read_back=NO_READ_MESSAGES),
            APPROVAL_CENTER: StreamCapabilities(write=True, reads_back=True),
            APPROVALS: StreamCapabilities(read=True, option="process_codes"),
        }
    )
    OPTIONS = DingTalkOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self._app_key = config.credentials["app_key"].reveal()
        options = options_of(config, DingTalkOptions)
        self.agent_id = options.agent_id
        self.oapi_base_url = options.oapi_base_url or config.base_url
        self.process_codes = options.process_codes
        self.card_template_id = options.card_template_id
        self.robot_code = options.robot_code or self._app_key
        self.history_days = options.history_days
        limit = config.monthly_quota.get(CONFIG_ALL_APIS, STANDARD_MONTHLY_CALLS)
        self._classify = partial(classify, monthly_limit=limit)
        self.tokens = TokenCache(
            ctx.redis,
            f"token:{VENDOR}:{self._app_key}",
            self._fetch_token,
            TOKEN_REFRESH_MARGIN_S,
            vendor=VENDOR,
        )
        self.client = build_client(config, ctx, self._classify, self.tokens, app=self._app_key)
        self.process_centre = ProcessCentre(
            self._centre_call, ctx.redis, self._app_key, options.process_centre.name
        )

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return self._classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        """Seconds since midnight in China: a send since then is still deduped by DingTalk
        (a card by outTrackId for as long as the card lives, a notification for the day)."""
        if stream != MESSAGES:
            return None
        now = datetime.now(CHINA)
        return (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        """Always: a card is updated by its outTrackId, for which no time limit is documented."""
        return True

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        if stream == APPROVAL_CENTER and request.notification.kind is not NotifyKind.MESSAGE:
            try:
                return self.process_centre.write(request)
            except VendorRejected as exc:
                return rejected(request, str(exc))
        if stream != APPROVAL_CENTER:  # which also carries replies to a person (messages)
            self._expect_stream(stream, MESSAGES)
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        try:
            if kind == "update_card":
                return self._update_card(request, content)
            if not to:
                return rejected(request, f"a {kind} needs a recipient in 'to'")
            if kind == "card":
                return self._create_card(request, to, content)
            if kind == "message":
                return self._notify(request, to, content)
            return rejected(request, f"unknown notification kind {kind.value!r}")
        except VendorRejected as exc:
            return rejected(request, str(exc))

    def post_to_group(self, chat_id: str, request: WriteRequest) -> WriteResult:
        """A card in a group chat (`chat_id`: its openConversationId), as connectors.base.
        PostsToGroups asks: createAndDeliver to the space IM_GROUP by the app's robot, under
        the outTrackId derived from the effect key (DingTalk delivers a card once per
        outTrackId, so a resend after a lost answer delivers nothing twice). The card's text
        carries the alert's fields, one line each."""
        content = request.notification.content
        rows = content.get("fields")
        lines = [str(content.get("text") or "")]
        if isinstance(rows, Mapping):
            lines += [f"{name}: {value}" for name, value in rows.items() if value not in (None, "")]
        text = "\n".join(line for line in lines if line)
        track = out_track_id(request.effect_key)
        try:
            _, body, _ = self.client.request(
                "POST",
                "v1.0/card/instances/createAndDeliver",
                api="card/instances/createAndDeliver",
                idempotent=True,  # DingTalk creates and delivers once per outTrackId
                json={
                    "cardTemplateId": self.card_template_id,
                    "outTrackId": track,
                    "cardData": {
                        "cardParamMap": _card_data(request.source_id, {**content, "text": text})
                    },
                    "callbackType": "STREAM",
                    "openSpaceId": f"dtv1.card//IM_GROUP.{chat_id}",
                    "imGroupOpenDeliverModel": {"robotCode": self.robot_code},
                },
                auth=NEW_API,
            )
        except VendorRejected as exc:
            return rejected(request, str(exc))
        results = (body.get("result") or {}).get("deliverResults") or []
        failed = [r for r in results if not r.get("success")]
        if failed:
            reason = str(failed[0].get("errorMsg") or "not delivered")
            return rejected(
                request, f"DingTalk could not deliver the card to {chat_id!r}: {reason}"
            )
        return WriteResult(request.effect_key, WriteStatus.DONE, track)

    def group_dedupe_window_s(self) -> float | None:
        """The outTrackId holds for as long as DingTalk keeps the card; `dedupe_window_s`'s
        bound (today, China time) is the one the messages stream relies on too."""
        return self.dedupe_window_s(MESSAGES)

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        """Instances created inside the window, in creation order across all process codes.

        instanceIds/query filters on creation time, so the cursor is the creation time; a
        decision on an instance created before the window reaches us through the
        bpms_instance_change event or a full sync. Details are read here, not in `hydrate`:
        the list gives only ids, and the version and cursor come from the detail.
        """
        self._expect_stream(stream, APPROVALS)
        if not self.process_codes:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.options.process_codes", "expected a list of codes")],
            )
        start_ms, end_ms = self._bounds(window)
        reader = _InstanceReader(self._list_ids, self._instance, start_ms, end_ms)
        return reader.page(self.process_codes, page_token, max(1, limit))

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        return list(records)

    def list_users(self) -> list[DirectoryUser]:
        """Everyone in every department, walked from the root; each user once."""
        departments, queue = [ROOT_DEPARTMENT], [ROOT_DEPARTMENT]
        while queue:
            children = self._old("topapi/v2/department/listsub", {"dept_id": queue.pop(0)})
            for child in children.get("result") or []:
                departments.append(int(child["dept_id"]))
                queue.append(int(child["dept_id"]))
        users: dict[str, DirectoryUser] = {}
        for department in departments:
            cursor: int | None = 0
            while cursor is not None:
                answer = self._old(
                    "topapi/v2/user/list",
                    {"dept_id": department, "cursor": cursor, "size": USERS_PAGE_SIZE},
                )
                result = answer.get("result") or {}
                for user in result.get("list") or []:
                    users.setdefault(str(user["userid"]), _directory_user(user))
                more = result.get("has_more") and result.get("next_cursor") is not None
                cursor = int(result["next_cursor"]) if more else None
        return list(users.values())

    # -- writes --------------------------------------------------------------------------------
    def _create_card(
        self, request: WriteRequest, to: str, content: Mapping[str, Any]
    ) -> WriteResult:
        track = out_track_id(request.effect_key)
        _, body, _ = self.client.request(
            "POST",
            "v1.0/card/instances/createAndDeliver",
            api="card/instances/createAndDeliver",
            idempotent=True,  # DingTalk creates and delivers once per outTrackId
            json={
                "cardTemplateId": self.card_template_id,
                "outTrackId": track,
                "cardData": {"cardParamMap": _card_data(request.source_id, content)},
                "callbackType": "STREAM",
                "userIdType": 1,  # userid, not unionId
                "openSpaceId": f"dtv1.card//IM_ROBOT.{to}",
                "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": self.robot_code},
            },
            auth=NEW_API,
        )
        results = (body.get("result") or {}).get("deliverResults") or []
        failed = [r for r in results if not r.get("success")]
        if failed:
            reason = str(failed[0].get("errorMsg") or "not delivered")
            return rejected(request, f"DingTalk could not deliver the card to {to!r}: {reason}")
        return WriteResult(request.effect_key, WriteStatus.DONE, track)

    def _notify(self, request: WriteRequest, to: str, content: Mapping[str, Any]) -> WriteResult:
        body = self._old(
            "topapi/message/corpconversation/asyncsend_v2",
            {
                "agent_id": self.agent_id,
                "userid_list": to,
                "msg": {
                    "msgtype": "text",
                    "text": {"content": message_text(content, PLAIN, TEXT_MAX_BYTES)},
                },
            },
            # DingTalk drops the same content to the same user for the rest of the day only,
            # so a lost answer becomes OutcomeUnknown and the write step checks the window.
            idempotent=False,
        )
        task_id = body.get("task_id")
        if not task_id:
            raise OutcomeUnknown(VENDOR, "no_task_id", "message/corpconversation/asyncsend_v2")
        return WriteResult(request.effect_key, WriteStatus.DONE, str(task_id))

    def _update_card(self, request: WriteRequest, content: Mapping[str, Any]) -> WriteResult:
        """Update the card made earlier; its outTrackId is the target id `_create_card` gave."""
        if not request.target_id:
            return rejected(request, "update_card needs the target_id (outTrackId) of the card")
        self.client.request(
            "PUT",
            "v1.0/card/instances",
            api="card/instances",
            idempotent=True,  # setting the same data twice leaves the same card
            json={
                "outTrackId": request.target_id,
                "cardData": {"cardParamMap": _card_data(request.source_id, content)},
                "cardUpdateOptions": {"updateCardDataByKey": True},
            },
            auth=NEW_API,
        )
        return WriteResult(request.effect_key, WriteStatus.DONE, request.target_id)

    # -- reads ---------------------------------------------------------------------------------
    def _list_ids(self, code: str, start_ms: int, end_ms: int, token: str) -> tuple[list[str], str]:
        """One instanceIds/query page of [start, end): (instance ids, next token or "")."""
        _, body, _ = self.client.request(
            "POST",
            "v1.0/workflow/processes/instanceIds/query",
            api="workflow/processes/instanceIds/query",
            idempotent=True,
            json={
                "processCode": code,
                "startTime": start_ms,
                "endTime": end_ms - 1,  # inclusive
                "nextToken": int(token or 0),
                "maxResults": LIST_PAGE_SIZE,
            },
            auth=NEW_API,
        )
        result = body.get("result") or {}
        following = str(result.get("nextToken") or "")
        if following and following == token:
            raise VendorRejected(VENDOR, "next_token_repeated", "instanceIds/query")
        return [str(i) for i in result.get("list") or []], following

    def _instance(self, code: str, instance_id: str) -> Record:
        _, body, _ = self.client.request(
            "GET",
            "v1.0/workflow/processInstances",
            api="workflow/processInstances",
            idempotent=True,
            params={"processInstanceId": instance_id},
            auth=NEW_API,
        )
        result = body.get("result")
        if not isinstance(result, Mapping):
            raise VendorUnavailable(VENDOR, "bad_body", "workflow/processInstances: no result")
        return _instance_record(code, instance_id, result)

    # -- reading back the process centre (connectors.base.ReadsBack) --------------------------
    def expected_view(self, stream: str, request: WriteRequest) -> TargetView | None:
        return self._centre(stream).expected_view(request)

    def suspects(self, stream: str, requests: Sequence[WriteRequest]) -> set[str]:
        """All of them: DingTalk has no check of its own."""
        centre = self._centre(stream)
        views = (centre.expected_view(r) for r in requests)
        return {v.target_id for v in views if v is not None}

    def read_back(self, stream: str, requests: Sequence[WriteRequest]) -> dict[str, TargetView]:
        return self._centre(stream).read_back(requests)

    def list_back(self, stream: str, page_token: str | None, limit: int) -> ViewPage:
        """Nothing: DingTalk lists no instances, only one user's open tasks."""
        self._centre(stream)
        return ViewPage((), None)

    def remove_back(self, stream: str, target_id: str, request: WriteRequest) -> WriteResult:
        return rejected(request, "DingTalk's process centre lists no instances to remove")

    def repair_request(
        self, stream: str, request: WriteRequest, held: TargetView | None
    ) -> WriteRequest:
        return self._centre(stream).repair_request(request, held)

    def _centre(self, stream: str) -> ProcessCentre:
        if stream != APPROVAL_CENTER:
            raise ValueError(f"{self.config.name}: stream {stream} cannot be read back")
        return self.process_centre

    def _centre_call(
        self, method: str, path: str, api: str, body: Any, idempotent: bool
    ) -> Mapping[str, Any]:
        """One process-centre call (dingtalk_process_centre.py); a GET's body is its query."""
        _, answer, _ = self.client.request(
            method,
            f"v1.0/workflow/processCentres/{path}",
            api=api,
            idempotent=idempotent,
            params=body if method == "GET" else None,
            json=None if method == "GET" else body,
            auth=NEW_API,
        )
        return answer

    def _old(
        self, path: str, payload: Mapping[str, Any], *, idempotent: bool = True
    ) -> Mapping[str, Any]:
        """A call of the old API: its own host, the token in the query."""
        _, body, _ = self.client.request(
            "POST",
            path,
            api=path.removeprefix("topapi/"),
            idempotent=idempotent,
            json=dict(payload),
            auth=OLD_API,
            base_url=self.oapi_base_url,
        )
        return body

    def _fetch_token(self) -> tuple[str, float]:
        try:
            _, body, _ = self.client.request(
                "POST",
                "v1.0/oauth2/accessToken",
                api="oauth2/accessToken",
                idempotent=True,
                json={
                    "appKey": self._app_key,
                    "appSecret": self.config.credentials["app_secret"].reveal(),
                },
            )
        except VendorRejected as exc:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials", f"DingTalk refused app_key/secret ({exc})")],
            ) from None
        return str(body["accessToken"]), float(body.get("expireIn") or 7200)

    def _bounds(self, window: ReadWindow) -> tuple[int, int]:
        until = parse_iso_utc(window.until) if window.until else datetime.now(UTC)
        since = (
            parse_iso_utc(window.since)
            if window.since
            else until - timedelta(days=self.history_days)
        )
        return int(since.timestamp() * 1000), int(until.timestamp() * 1000)

    def _expect_stream(self, stream: str, expected: str) -> None:
        if stream != expected:
            raise ConfigError(
                "flows",
                [(stream, f"expected stream {expected!r} for DingTalk {self.config.name}")],
            )


# -- messages ----------------------------------------------------------------------------------


def _card_data(source_id: str, content: Mapping[str, Any]) -> dict[str, str]:
    """The card template's variables; DingTalk wants every value as a string. `can_decide`
    shows the template's Approve / Reject buttons, whose callback params carry `source_id`.
    A deployment's template may show any text variable in a markdown component, so outside
    text is escaped for DingTalk markdown (markup.py), which reads the same as plain text."""
    decide = wants_decision(content)
    texts = {
        "title": (content.get("title") or "Notification", TITLE_BYTES, True),
        "text": (content.get("text"), TEXT_BYTES, False),
        "status": (content.get("status"), LABEL_BYTES, True),
        "status_label": (content.get("status_label"), LABEL_BYTES, True),
    }
    data = {
        name: DINGTALK_MARKDOWN.fit(value, limit, Unit.BYTES, one_line=one_line)
        for name, (value, limit, one_line) in texts.items()
        if value not in (None, "")
    }
    data |= {**dingtalk_buttons.encode(source_id), "url": link(content.get("url")) or ""}
    data["can_decide"] = "true" if decide else "false"
    return {name: value for name, value in data.items() if value}


# -- approvals ---------------------------------------------------------------------------------
def _iso(text: str) -> str:
    """DingTalk's workflow time ("2026-03-02T09:30Z", UTC to the minute) as our cursor."""
    return iso_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _instance_record(code: str, instance_id: str, result: Mapping[str, Any]) -> Record:
    """An instance's detail in the canonical approval shape (`stages` module docstring)."""
    raw_status = str(result.get("status", ""))
    outcome = str(result.get("result", ""))
    status = INSTANCE_STATUS.get(raw_status) or RESULT_STATUS.get(outcome, raw_status.lower())
    tasks = result.get("tasks") or []
    operations = result.get("operationRecords") or []
    created = _iso(str(result["createTime"]))
    moments = [str(result.get("finishTime") or "")]
    moments += [str(o.get("date") or "") for o in operations]
    moments += [str(t.get(k) or "") for t in tasks for k in ("createTime", "finishTime")]
    updated = max([created, *(_iso(m) for m in moments if m)])
    running = [t for t in tasks if t.get("status") == "RUNNING"]
    payload = {
        "id": instance_id,
        "title": str(result.get("title", "")),
        "template": code,
        "status": status,
        "applicant": str(result.get("originatorUserId", "")),
        "current_approvers": [str(t["userId"]) for t in running] if status == "pending" else [],
        "created_at": created,
        "updated_at": updated,
        "form": {
            str(f.get("name") or f.get("id")): f.get("value")
            for f in result.get("formComponentValues") or []
        },
        "url": next((str(t["pcUrl"]) for t in running if t.get("pcUrl")), None),
    }
    version = f"{updated}|{raw_status}|{outcome}|{len(operations)}|{len(tasks)}"
    return Record(source_id=instance_id, version=version, cursor_value=created, payload=payload)


ListIds = Callable[[str, int, int, str], tuple[list[str], str]]  # code, start, end, token
Detail = Callable[[str, str], Record]  # code, instance id


@dataclass
class _Lane:
    """Where one process code's instance list stands: the span (≤120 days) being read, the
    list page holding its next instance (`token`, "" for the first) and how many of that page
    were already read. The rest is scratch state of the page being read."""

    code: str
    span: int
    token: str = ""
    skip: int = 0
    listed: bool = False
    left: list[str] = field(default_factory=list)
    more: str = ""
    head: Record | None = None


class _InstanceReader:
    """One page of instances in creation order across process codes: each code's list is in
    creation order, so the page takes the earliest head of all lists, reading details lazily.
    The token holds every lane's (span, list token, instances read), so the same token reads
    the same page."""

    def __init__(self, list_ids: ListIds, detail: Detail, start_ms: int, end_ms: int) -> None:
        self._list_ids, self._detail = list_ids, detail
        self.start_ms, self.end_ms = start_ms, end_ms
        self.calls = 0

    def page(self, codes: Sequence[str], token: str | None, limit: int) -> Page:
        if token:
            lanes = [_Lane(str(c), int(s), str(t), int(k)) for c, s, t, k in json.loads(token)]
        else:
            lanes = [_Lane(code, self.start_ms) for code in codes]
        records: list[Record] = []
        while len(records) < limit:
            for lane in lanes:
                self._fill(lane)
            ready = [lane for lane in lanes if lane.head is not None]
            if not ready:
                break
            lane = min(ready, key=_head_key)
            assert lane.head is not None  # noqa: S101 - `ready` holds lanes with a head
            records.append(lane.head)
            lane.head, lane.skip = None, lane.skip + 1
        done = all(lane.span >= self.end_ms for lane in lanes)
        state = [[lane.code, lane.span, lane.token, lane.skip] for lane in lanes]
        return Page(tuple(records), None if done else json.dumps(state), calls=self.calls)

    def _fill(self, lane: _Lane) -> None:
        """Give the lane its next instance inside the window as `head`, listing as needed."""
        while lane.head is None and lane.span < self.end_ms:
            span_end = min(lane.span + MAX_SPAN_MS, self.end_ms)
            if not lane.listed:
                ids, lane.more = self._list_ids(lane.code, lane.span, span_end, lane.token)
                lane.left, lane.listed = ids[lane.skip :], True
                self.calls += 1
            if lane.left:
                record = self._detail(lane.code, lane.left.pop(0))
                self.calls += 1
                lane.head = record
            elif lane.more:
                lane.token, lane.skip, lane.listed = lane.more, 0, False
            else:
                lane.span, lane.token, lane.skip, lane.listed = span_end, "", 0, False


def _head_key(lane: _Lane) -> tuple[str, str]:
    head = lane.head
    return ("", "") if head is None else (head.cursor_value, head.source_id)


def _directory_user(user: Mapping[str, Any]) -> DirectoryUser:
    def text(*keys: str) -> str | None:
        return next((str(user[k]) for k in keys if user.get(k)), None)

    return DirectoryUser(
        user_id=str(user["userid"]),
        employee_no=text("job_number"),
        email=text("email", "org_email"),
        mobile=text("mobile"),
        name=text("name"),
    )
