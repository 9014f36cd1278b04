"""The WeCom (企业微信) connector: notifications to members, approvals in, the directory.

Written from WeCom's contract (shared/platform-apis.md section 1), never from the sandbox
emulator. Every call goes through the shared `HttpClient`; the access_token (one per app,
from corpid + corpsecret) lives in Redis, shared by every worker, and rides in the query.
WeCom answers every error with HTTP 200 and an `errcode`, so `classify` reads the body.

Every message is sent with `enable_duplicate_check=1` and the longest interval WeCom allows
(4 h): WeCom itself drops a resend of the same content, which is what lets the write step
resend a message whose outcome it does not know (DESIGN.md section 3). The content is built
only from the request, so a resend is byte-for-byte the same message. A card's `task_id`
(unique per app, for ever) is derived from the effect key as well.

Streams: write "messages" (a card, a text message, or an update of a card sent earlier); read
"approvals" (approvals applied for inside the window).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from marshmallow import validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Text, Whole
from sync_pipeline.connectors.base import (
    READ_ONLY,
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import decision_values
from sync_pipeline.connectors.buttons import wecom as wecom_buttons
from sync_pipeline.connectors.markup import PLAIN, WECOM_MARKDOWN, WECOM_TEXT, Unit, link
from sync_pipeline.connectors.notify import message_text, rejected, wants_decision
from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import TokenCache, query_token
from sync_pipeline.records import (
    EventKind,
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

VENDOR = "wecom"
MESSAGES = "messages"
APPROVALS = "approvals"

TOKEN_CODES = frozenset({40014, 42001})  # access_token invalid / expired
RATE_LIMIT_CODES = frozenset({45009, 45033})  # frequency / concurrency
RATE_LIMIT_WAIT_S = 60.0  # WeCom's shortest block lasts the minute that was exceeded
BUSY_CODES = frozenset({-1, 6000, 301022})  # system busy, version conflict, checkin fetch failed
TOKEN_REFRESH_MARGIN_S = 300.0
DUPLICATE_CHECK_S = 4 * 3600  # duplicate_check_interval: WeCom's maximum
DUPLICATE_SAFETY_S = 600.0  # our margin for clock skew and the time a send takes
RESPONSE_CODE_TTL_S = 72 * 3600  # update_template_card: a response_code works once, for 72 h
TEXT_MAX_BYTES = 2048  # text and markdown content
CARD_ROWS = 6  # horizontal_content_list and button_list hold at most 6
# Template card fields: WeCom suggests at most 36 / 112 / 5 / 30 characters (title, sub title,
# key name, value); we allow that many CJK characters' bytes, and the client shortens the rest.
TITLE_BYTES, SUB_TITLE_BYTES, KEYNAME_BYTES, VALUE_BYTES = 108, 336, 15, 90
MAX_SPAN_S = 31 * 86400  # getapprovalinfo: endtime - starttime <= 31 days
LIST_PAGE_SIZE = 100  # getapprovalinfo `size`: at most 100
DEFAULT_HISTORY_DAYS = 366  # how far a full sync reaches back (WeCom needs a start time)
DEFAULT_EMPLOYEE_NO_ATTR = "employee_no"  # WeCom has no standard field: an extattr by name

SP_STATUS = {1: "pending", 2: "approved", 3: "rejected", 4: "revoked", 6: "revoked"}
SP_STATUS |= {7: "revoked", 10: "approved"}  # deleted; paid (an approved reimbursement)
PENDING = 1


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """WeCom's answer as an error, or None (platform-apis.md section 1.3)."""
    if status >= 500:
        return VendorUnavailable(VENDOR, f"http_{status}")
    code = body.get("errcode")
    if code is None:
        return VendorRejected(VENDOR, f"http_{status}") if status >= 400 else None
    try:
        code = int(code)
    except (TypeError, ValueError):
        return VendorRejected(VENDOR, str(code))
    if code == 0:
        return None
    if code in TOKEN_CODES:
        return TokenExpired(VENDOR, str(code))
    if code in RATE_LIMIT_CODES:
        return RateLimited(VENDOR, str(code), retry_after=RATE_LIMIT_WAIT_S)
    if code in BUSY_CODES:
        return VendorUnavailable(VENDOR, str(code))
    return VendorRejected(VENDOR, str(code), _errmsg(body))


def _errmsg(body: Mapping[str, Any]) -> str:
    """errmsg without the hint and link WeCom appends to it."""
    return str(body.get("errmsg", "")).split(", hint:", 1)[0][:200]


def task_id_for(effect_key: str) -> str:
    """A card's task_id: unique per app for ever, at most 128 bytes of [0-9a-zA-Z_-@]."""
    return hashlib.sha256(effect_key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class WeComOptions(ConnectorOptions):
    agentid: int  # the app's AgentId
    employee_no_attr: str = DEFAULT_EMPLOYEE_NO_ATTR  # the extattr holding employee numbers
    history_days: int = DEFAULT_HISTORY_DAYS


class WeComOptionsSchema(OptionsSchema):
    BUILDS = WeComOptions
    agentid = Whole(required=True, validate=validate.Range(min=1))
    employee_no_attr = Text()
    history_days = Whole(validate=validate.Range(min=1))


class WeComConnector:
    """One WeCom app: credentials corpid and corpsecret; options as `WeComOptions` declares
    them (`agentid` required)."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {
            MESSAGES: StreamCapabilities(
                write=True,
                events=frozenset({EventKind.MESSAGE}),
                no_read_back="WeCom documents no read of an app message it sent (a msgid can"
                " only be recalled)",
            ),
            APPROVALS: READ_ONLY,  # its change events come without a way to re-read one
        }
    )
    OPTIONS = WeComOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self._corpid = config.credentials["corpid"].reveal()
        options = options_of(config, WeComOptions)
        self.agentid = options.agentid
        self.employee_no_attr = options.employee_no_attr
        self.history_days = options.history_days
        app = f"{self._corpid}:{self.agentid}"  # a token belongs to one app of one corp
        self.tokens = TokenCache(
            ctx.redis,
            f"token:{VENDOR}:{app}",
            self._fetch_token,
            TOKEN_REFRESH_MARGIN_S,
            vendor=VENDOR,
        )
        self.client = build_client(config, ctx, classify, self.tokens, app=app)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        return DUPLICATE_CHECK_S - DUPLICATE_SAFETY_S if stream == MESSAGES else None

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        """Only with a response_code no update has spent, within its 72 h (platform-apis.md
        section 1): the one its send returned, or a press's own (events/cards.py)."""
        return bool(handles.get("response_code")) and (
            age_s < RESPONSE_CODE_TTL_S - DUPLICATE_SAFETY_S
        )

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        self._expect_stream(stream, MESSAGES)
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        try:
            if kind == "update_card":
                return self._update_card(request, to, content)
            if not to:
                return rejected(request, f"a {kind} needs a recipient in 'to'")
            if kind == "card":
                message = _card_message(request, content)
            elif kind == "message":
                message = _text_message(content)
            else:
                return rejected(request, f"unknown notification kind {kind.value!r}")
            answer = self._send(to, message)
        except VendorRejected as exc:
            return rejected(request, str(exc))
        if to in _ids(answer.get("invaliduser")):
            return rejected(request, f"WeCom has no member {to!r} (invaliduser)")
        msgid = answer.get("msgid")
        if not msgid:
            raise OutcomeUnknown(VENDOR, "no_msgid", "message/send")
        extra = {k: str(answer[k]) for k in ("response_code",) if answer.get(k)}
        task_id = (message.get("template_card") or {}).get("task_id")
        if task_id:
            extra["task_id"] = str(task_id)  # with response_code, what a card update needs
        return WriteResult(request.effect_key, WriteStatus.DONE, str(msgid), extra=extra)

    def post_to_group(self, chat_id: str, request: WriteRequest) -> WriteResult:
        """A markdown message in a group chat the app created (`appchat/send`, 群聊会话), as
        connectors.base.PostsToGroups asks. WeCom documents neither a duplicate check nor a
        message id for appchat/send (only message/send has them), so a send whose answer is
        lost is OutcomeUnknown and never resent blindly: `group_dedupe_window_s` is None."""
        try:
            self.client.request(
                "POST",
                "cgi-bin/appchat/send",
                api="appchat/send",
                idempotent=False,  # no dedupe handle: a resend is a second message
                json={"chatid": chat_id, **group_markdown(request.notification.content)},
                auth=query_token(),
            )
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, chat_id)

    def group_dedupe_window_s(self) -> float | None:
        return None  # appchat/send has no duplicate check

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        """Approvals applied for inside the window, in apply-time order, details included.

        getapprovalinfo filters on apply time only, so the cursor is the apply time; a decision
        on an approval applied for before the window reaches us through `sys_approval_change`
        callbacks or a full sync. The token is (span start, WeCom's cursor, items already read
        of that list page), so the same token reads the same page.
        """
        self._expect_stream(stream, APPROVALS)
        limit = max(1, limit)
        start_s, end_s = self._bounds(window)
        span, cursor, skip = json.loads(page_token) if page_token else (start_s, "", 0)
        records: list[Record] = []
        calls = 0
        while len(records) < limit and span < end_s:
            span_end = min(span + MAX_SPAN_S, end_s)
            sp_nos, following = self._list(span, span_end, cursor)
            calls += 1
            for sp_no in sp_nos[skip:]:
                if len(records) >= limit:
                    break
                info = self._detail(sp_no)
                calls += 1
                skip += 1
                if start_s <= int(info.get("apply_time") or 0) < end_s:
                    records.append(_approval_record(info))
            else:  # this list page is read: on to the next, or the next span
                span, cursor, skip = (span, following, 0) if following else (span_end, "", 0)
        token = json.dumps([span, cursor, skip]) if span < end_s else None
        return Page(tuple(records), token, calls=calls)

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Nothing to add: the list gives only sp_nos, so `read_page` reads each detail (the
        version and cursor come from it)."""
        return list(records)

    def list_users(self) -> list[DirectoryUser]:
        """Members of every department the app can see, each once."""
        departments = self._get("cgi-bin/department/list", "department/list", {})
        users: dict[str, DirectoryUser] = {}
        for department in departments.get("department") or []:
            answer = self._get(
                "cgi-bin/user/list", "user/list", {"department_id": department["id"]}
            )
            for member in answer.get("userlist") or []:
                users.setdefault(str(member["userid"]), self._directory_user(member))
        return list(users.values())

    # -- calls ---------------------------------------------------------------------------------
    def _fetch_token(self) -> tuple[str, float]:
        try:
            _, body, _ = self.client.request(
                "GET",
                "cgi-bin/gettoken",
                api="gettoken",
                idempotent=True,
                params={
                    "corpid": self._corpid,
                    "corpsecret": self.config.credentials["corpsecret"].reveal(),
                },
            )
        except VendorRejected as exc:  # 40001 / 40013: the operator's to fix
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials", f"WeCom refused corpid/corpsecret ({exc})")],
            ) from None
        return str(body["access_token"]), float(body.get("expires_in") or 7200)

    def _send(self, to: str, message: Mapping[str, Any]) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            "POST",
            "cgi-bin/message/send",
            api="message/send",
            idempotent=True,  # the duplicate check makes a resend within 4 h a no-op
            json={
                "touser": to,
                "agentid": self.agentid,
                **message,
                "enable_duplicate_check": 1,
                "duplicate_check_interval": DUPLICATE_CHECK_S,
            },
            auth=query_token(),
        )
        return body

    def _update_card(
        self, request: WriteRequest, to: str | None, content: Mapping[str, Any]
    ) -> WriteResult:
        """Replace the buttons of a card sent earlier with its new state.

        WeCom updates a card only with the `response_code` of a button callback (each works
        once, for 72 h); without one there is nothing to call.
        """
        code = request.notification.response_code or content.get("response_code")
        if not code:
            return rejected(
                request, "WeCom updates a card only with a button callback's response_code"
            )
        label = content.get("status_label") or content.get("status") or "Updated"
        update: dict[str, Any] = {
            "agentid": self.agentid,
            "response_code": str(code),
            "button": {"replace_name": PLAIN.fit(label, VALUE_BYTES, Unit.BYTES, one_line=True)},
        }
        if to:
            update["userids"] = [to]
        self.client.request(
            "POST",
            "cgi-bin/message/update_template_card",
            api="message/update_template_card",
            idempotent=False,  # a response_code works once: a lost answer is not resent
            json=update,
            auth=query_token(),
        )
        # The code is spent now: kept with the effect, so no later update tries it again.
        spent = {"response_code": str(code)}
        return WriteResult(request.effect_key, WriteStatus.DONE, request.target_id, extra=spent)

    def _list(self, start_s: int, end_s: int, cursor: str) -> tuple[list[str], str]:
        """One getapprovalinfo page of [start, end): (sp_nos, next cursor or "")."""
        body = self._post(
            "cgi-bin/oa/getapprovalinfo",
            "oa/getapprovalinfo",
            {
                "starttime": str(start_s),
                "endtime": str(max(end_s - 1, start_s + 1)),  # inclusive, and after start
                "new_cursor": cursor,
                "size": LIST_PAGE_SIZE,
            },
        )
        following = str(body.get("new_next_cursor") or "")
        if following and following == cursor:
            raise VendorRejected(VENDOR, "cursor_repeated", "oa/getapprovalinfo")
        return [str(n) for n in body.get("sp_no_list") or []], following

    def _detail(self, sp_no: str) -> Mapping[str, Any]:
        body = self._post("cgi-bin/oa/getapprovaldetail", "oa/getapprovaldetail", {"sp_no": sp_no})
        info = body.get("info")
        if not isinstance(info, Mapping):
            raise VendorUnavailable(VENDOR, "bad_body", "oa/getapprovaldetail: no info")
        return info

    def _post(self, path: str, api: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            "POST", path, api=api, idempotent=True, json=dict(payload), auth=query_token()
        )
        return body

    def _get(self, path: str, api: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            "GET", path, api=api, idempotent=True, params=params, auth=query_token()
        )
        return body

    def _bounds(self, window: ReadWindow) -> tuple[int, int]:
        """The window in Unix seconds; a full sync reaches back `history_days`."""
        now = datetime.now(UTC)
        until = parse_iso_utc(window.until) if window.until else now
        since = (
            parse_iso_utc(window.since)
            if window.since
            else until - timedelta(days=self.history_days)
        )
        return int(since.timestamp()), int(until.timestamp())

    def _directory_user(self, member: Mapping[str, Any]) -> DirectoryUser:
        def text(*keys: str) -> str | None:
            return next((str(member[k]) for k in keys if member.get(k)), None)

        attrs = (member.get("extattr") or {}).get("attrs") or []
        employee_no = next(
            (
                str((a.get("text") or {}).get("value") or "") or None
                for a in attrs
                if a.get("name") == self.employee_no_attr
            ),
            None,
        )
        return DirectoryUser(
            user_id=str(member["userid"]),
            employee_no=employee_no,
            email=text("email", "biz_mail"),
            mobile=text("mobile"),
            name=text("name"),
        )

    def _expect_stream(self, stream: str, expected: str) -> None:
        if stream != expected:
            raise ConfigError(
                "flows",
                [(stream, f"expected stream {expected!r} for WeCom connector {self.config.name}")],
            )


# -- messages ----------------------------------------------------------------------------------


def _ids(value: Any) -> list[str]:
    """invaliduser comes as "a|b" from message/send and as a list from card updates."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v for v in str(value or "").split("|") if v]


def _text_message(content: Mapping[str, Any]) -> dict[str, Any]:
    """A text message. WeCom reads `<a href>` links in it (markup.WECOM_TEXT disarms them);
    the link we add is our own."""
    return {
        "msgtype": "text",
        "text": {"content": message_text(content, WECOM_TEXT, TEXT_MAX_BYTES)},
    }


def group_markdown(content: Mapping[str, Any]) -> dict[str, Any]:
    """A group post (an ops alert) as WeCom markdown: the title in bold, the text, and each
    field on a line of its own under its bold name. Every value is outside text, escaped for
    WeCom markdown (markup.WECOM_MARKDOWN); the bold and the line breaks are ours."""
    rows = content.get("fields")
    fields = list(rows.items()) if isinstance(rows, Mapping) else []
    share = TEXT_MAX_BYTES // (2 + len(fields)) - 16
    title = WECOM_MARKDOWN.fit(content.get("title") or "Alert", share, Unit.BYTES, one_line=True)
    lines = [f"**{title}**"]
    if content.get("text"):
        lines.append(WECOM_MARKDOWN.fit(content["text"], share, Unit.BYTES, one_line=True))
    lines += [
        f"**{WECOM_MARKDOWN.fit(name, 32, Unit.BYTES, one_line=True)}**: "
        f"{WECOM_MARKDOWN.fit(value, share - 40, Unit.BYTES, one_line=True)}"
        for name, value in fields
        if value not in (None, "")
    ]
    return {"msgtype": "markdown", "markdown": {"content": "\n".join(lines)}}


def _card_message(request: WriteRequest, content: Mapping[str, Any]) -> dict[str, Any]:
    """A `button_interaction` template card: Approve / Reject keys carry the source id to the
    card callback (`EventKey`), and an Open button jumps to the OA. A card with nothing to
    press is a `text_notice` card, or a text message when there is no link either. Its fields
    are plain text to WeCom; outside text in them is only normalised and cut (markup.py)."""
    url = link(content.get("url"))
    decide = wants_decision(content)
    buttons: list[dict[str, Any]] = []
    if decide:
        buttons += [
            {"type": 0, "text": label, "style": style, "key": wecom_buttons.encode(value)}
            for (value, label), style in zip(
                decision_values(request.source_id), (1, 2), strict=True
            )
        ]
    if url:
        buttons.append({"type": 1, "text": "Open", "style": 4, "url": url})
    rows = [("Status", content.get("status_label"))]
    extra = content.get("fields")
    if isinstance(extra, Mapping):
        rows += list(extra.items())
    title = content.get("title") or "Notification"
    card: dict[str, Any] = {
        "main_title": {"title": PLAIN.fit(title, TITLE_BYTES, Unit.BYTES, one_line=True)},
        "horizontal_content_list": [
            {
                "keyname": PLAIN.fit(k, KEYNAME_BYTES, Unit.BYTES, one_line=True),
                "value": PLAIN.fit(v, VALUE_BYTES, Unit.BYTES, one_line=True),
            }
            for k, v in rows
            if v not in (None, "")
        ][:CARD_ROWS],
    }
    if content.get("text"):
        card["sub_title_text"] = PLAIN.fit(content["text"], SUB_TITLE_BYTES, Unit.BYTES)
    if url:
        card["card_action"] = {"type": 1, "url": url}
    if decide:
        card |= {
            "card_type": "button_interaction",
            "task_id": task_id_for(request.effect_key),
            "button_list": buttons[:CARD_ROWS],
        }
    elif url:
        card["card_type"] = "text_notice"  # its card_action is the jump
    else:
        return _text_message(content)
    return {"msgtype": "template_card", "template_card": card}


# -- approvals ---------------------------------------------------------------------------------
def _iso(seconds: int) -> str:
    return iso_utc(datetime.fromtimestamp(seconds, UTC))


def _approval_record(info: Mapping[str, Any]) -> Record:
    """getapprovaldetail's `info` in the canonical approval shape (`stages` docstring)."""
    sp_no = str(info["sp_no"])
    applied = int(info.get("apply_time") or 0)
    code = int(info.get("sp_status") or 0)
    status = SP_STATUS.get(code, "pending")
    nodes = info.get("sp_record") or []
    details = [d for node in nodes for d in node.get("details") or []]
    comments = info.get("comments") or []
    moments = [applied, *(int(d.get("sptime") or 0) for d in details)]
    moments += [int(c.get("commenttime") or 0) for c in comments]
    updated = max(moments)
    current = next((n for n in nodes if n.get("sp_status") == PENDING), None)
    approvers = (
        [
            str(d["approver"]["userid"])
            for d in current.get("details") or []
            if d.get("sp_status") == PENDING
        ]
        if current is not None and code == PENDING
        else []
    )
    decided = sum(1 for d in details if d.get("sp_status") != PENDING)
    payload = {
        "id": sp_no,
        "title": f"{info.get('sp_name', '')} {sp_no}".strip(),
        "template": str(info.get("template_id", "")),
        "status": status,
        "applicant": str((info.get("applyer") or {}).get("userid", "")),
        "current_approvers": approvers,
        "created_at": _iso(applied),
        "updated_at": _iso(updated),
        "form": _form((info.get("apply_data") or {}).get("contents") or []),
        "url": None,
    }
    version = f"{updated}|{code}|{decided}|{len(comments)}"
    return Record(source_id=sp_no, version=version, cursor_value=_iso(applied), payload=payload)


def _form(contents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """apply_data controls as {title: value}; selectors give their option texts."""
    form: dict[str, Any] = {}
    for control in contents:
        titles = control.get("title") or []
        name = str(titles[0].get("text") if titles else control.get("id", ""))
        form[name] = _control_value(control.get("value") or {})
    return form


def _control_value(value: Mapping[str, Any]) -> Any:
    if "text" in value:
        return value["text"]
    if "new_money" in value:
        return value["new_money"]
    if "new_number" in value:
        return value["new_number"]
    if "date" in value:
        return (value["date"] or {}).get("s_timestamp")
    if "vacation" in value:
        value = value["vacation"] or {}
    selector = value.get("selector")
    if isinstance(selector, Mapping):
        options = selector.get("options") or []
        texts = [v.get("text") for o in options for v in (o.get("value") or [])[:1]]
        return texts[0] if len(texts) == 1 else texts
    return None
