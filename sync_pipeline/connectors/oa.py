"""The Weaver e-cology 9 (泛微 E9) connector: approvals read out of the OA, and its directory.

Written from E9's contract (shared/platform-apis.md section 7.1) and the sandbox's documented
extensions, never from the emulator's code (DESIGN.md section 8). All auth travels in headers:
`regist` is a one-time setup whose answer (secret, spk) is configured; `applytoken` trades
appid + RSA(spk, secret) for a token, cached in Redis and shared by every worker; business
calls send appid, token and userid = RSA(spk, the OA user we act as). Bodies are
form-urlencoded, and the shared session never sends cookies (a stale E9 session cookie
overrides `userid` and mixes users up).

Approvals are read by last operate time with the sandbox-documented conditions
`lastOperateTimeFrom` (inclusive) / `lastOperateTimeTo` (exclusive) and its order
(lastOperateTime, requestId), paged by KEYSET: a page token holds the last key read, and the
next page asks from that second on and drops the rows up to the key. Offset pages over the whole
window would lose data: a request edited while we page leaves the window (its new time is past
the signpost), every later row moves up one place, and one unchanged request falls between two
pages. Only when more than a page of rows share one second does the token fall back to page
numbers within that second. A sync that finds nothing costs exactly one list call; details
(`getWorkflowRequest`, `getRequestOperatorInfo`) are read by `hydrate`, for just the records
the pipeline asks for.

Streams: read "approvals". Write "todos" (E9's unified todo, 统一待办: one todo per receiver,
upserted by (syscode, flowid, receiver), so a resend is harmless) and "project_progress" (a
comment appended to a project's newest progress record, acting as its author; the comment
carries a reference to its effect key and the write looks for it first, so a resend after an
unknown outcome never appends twice).

Webhook events name one request: `read_one` re-reads it by id (one detail call), in the list
row's shape so it gets the same version as a pull; the `hydrate` that follows it takes the form
from that same detail instead of reading it again (a read is kept for FRESH_DETAIL_S, for the
record of that version only), so record and form always come from one read. Approvers decide
from an IM card through `decide`: submitRequest (approve) or rejectRequest (reject) with E9's
`userid` header naming the approver, since E9 acts as the user that header names and ignores
any user in the body.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from marshmallow import ValidationError, fields, validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Text, Whole
from sync_pipeline.connectors.base import (
    ConnectorContext,
    Decision,
    DecisionRequest,
    DirectoryUser,
    StreamCapabilities,
    build_client,
    options_of,
)
from sync_pipeline.connectors.notify import rejected
from sync_pipeline.errors import (
    ConfigError,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import AuthParts, TokenCache
from sync_pipeline.http.client import BARE, Auth
from sync_pipeline.records import (
    EventKind,
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

VENDOR = "oa"
APPROVALS = "approvals"
TODOS = "todos"
PROJECT_PROGRESS = "project_progress"
TODO_PATH = "rest/ofs/ReceiveRequestInfoByJson"  # whitelisted; trusts the registered syscode
PROGRESS_LIST_PATH = "api/proj/progress/list"  # sandbox-documented project progress records
PROGRESS_SAVE_PATH = "api/proj/progress/save"
PROGRESS_COMMENT_PATH = "api/proj/progress/comment"
PROGRESS_PAGE_SIZE = 100
TODO_NAME_MAX = 200  # characters of the todo's title (requestname)
REF_LENGTH = 16  # hex digits of the effect key a project comment carries as its reference
# Sign-log types (workflowRequestLogs.logtype) that record a decision: 0 批准 and 2 提交 approve
# (submitRequest), 3 退回 rejects; 1 保存 (save) and 9 批注 (comment) decide nothing.
DECIDED_LOGTYPES = {Decision.APPROVE: frozenset({"0", "2"}), Decision.REJECT: frozenset({"3"})}
PA = "api/workflow/paService"
LIST_PATH = f"{PA}/getAllWorkflowRequestList"  # every request the acting user may see
DETAIL_PATH = f"{PA}/getWorkflowRequest"
OPERATORS_PATH = f"{PA}/getRequestOperatorInfo"
DECISIONS = {  # decision -> (path, api)
    Decision.APPROVE: (f"{PA}/submitRequest", "workflow/submitRequest"),
    Decision.REJECT: (f"{PA}/rejectRequest", "workflow/rejectRequest"),
}
USERS_PATH = "api/hrm/resful/getHrmUserInfoWithPage"  # sic: E9's spelling
APPLYTOKEN_PATH = "api/ec/dev/auth/applytoken"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # E9's times, in the server's own timezone
DEFAULT_TIMEZONE = "Asia/Shanghai"  # what the sandbox (and most E9 servers) run in
DEFAULT_TOKEN_TTL_S = 1800  # applytoken's `time` header: the lifetime we ask for
TOKEN_REFRESH_MARGIN_S = 300.0
USERS_PAGE_SIZE = 100
LEFT_COMPANY = frozenset({"4", "5", "6", "7"})  # HRM status: dismissed, left, retired, invalid
# E9 9's own form page; a deployment whose users reach the OA elsewhere sets `request_url`.
DEFAULT_REQUEST_URL = (
    "{base_url}/spa/workflow/static4form/index.html#/main/workflow/req?requestid={id}"
)

FRESH_DETAIL_S = 10.0  # how long read_one's detail serves the hydrate of the record it made
FRESH_DETAIL_MAX = 1000  # details kept at most (read_one without a hydrate after it)

RETRYABLE_CODES = frozenset({"SYSTEM_INNER_ERROR"})
RATE_LIMIT_CODE = "REQUEST_FREQUENCY_LIMIT"  # the sandbox's gateway throttle (sandbox-documented)
REFUSAL_CODES = frozenset({"PARAM_ERROR", "NO_PERMISSION", "USER_EXCEPTION"})
OK_CODES = frozenset({"SUCCESS", "1", 0})  # workflow "SUCCESS"; HRM "1"; auth 0 (with status)


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """E9's answer as an error, or None (platform-apis.md section 7.1, error table).

    Auth answers carry `status` (true/false) with a numeric `code`; workflow answers a string
    `code`; HRM answers code "1" (ok) or "0" (refused, with errMsg). An HTML 500 page reaches
    here as an empty body with its status.
    """
    code = body.get("code")
    if status == 429 or code == RATE_LIMIT_CODE:
        return RateLimited(VENDOR, str(code or status), retry_after=_seconds(headers))
    if status >= 500 or code in RETRYABLE_CODES:
        return VendorUnavailable(VENDOR, str(code or status))
    if body.get("status") is False:
        message = str(body.get("msg") or "")
        if "token" in message.lower() or not message:  # "token不存在或者超时：<token>"
            return TokenExpired(VENDOR, "token", "token missing or expired")
        return VendorRejected(VENDOR, "auth", _short(message))
    if code in REFUSAL_CODES:
        return VendorRejected(VENDOR, str(code), _err_msg(body))
    if status >= 400:
        return VendorRejected(VENDOR, f"http_{status}")
    if code == "0":  # HRM's refusal
        return VendorRejected(VENDOR, "hrm", _err_msg(body))
    if code is not None and code not in OK_CODES:
        return VendorRejected(VENDOR, str(code), _err_msg(body))
    return None


def _seconds(headers: Mapping[str, str]) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _err_msg(body: Mapping[str, Any]) -> str:
    err = body.get("errMsg")
    text = err.get("msg") if isinstance(err, Mapping) else err
    return _short(str(text or ""))


def _short(text: str) -> str:
    return text[:200]


def approval_status(item: Mapping[str, Any]) -> str:
    """The canonical status of a list row (or a detail) from E9's node facts.

    Requests at the archive node are approved; a returned (退回) request sits at the creation
    node with `isbereject`, a withdrawn (撤回) one at the creation node without it; any other
    node is still being decided.
    """
    node_type = str(item.get("currentnodetype", ""))
    status = str(item.get("status", ""))
    if node_type == "3" or status == "归档":
        return "approved"
    if str(item.get("isbereject", "")) == "1" or status == "退回":
        return "rejected"
    if node_type == "0" or status == "撤回":
        return "revoked"
    return "pending"


class _Timezone(fields.Field[tzinfo]):
    """An IANA zone name ("Asia/Shanghai") or a fixed offset ("+08:00")."""

    expected = "expected a timezone name or +HH:MM"

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> tzinfo:
        if not isinstance(value, str):
            raise ValidationError(self.expected)
        try:
            if value[:1] in "+-" and ":" in value:
                hours, minutes = value[1:].split(":", 1)
                offset = timedelta(hours=int(hours), minutes=int(minutes))
                return timezone(offset if value[0] == "+" else -offset)
            return ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValidationError(self.expected) from None


def _link_template(template: str) -> None:
    """`request_url` may name only {base_url} and {id}; anything else would fail every link."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        names = {""}
    if not names <= {"base_url", "id"}:
        raise ValidationError("expected a link with no placeholder but {base_url} and {id}")


@dataclass(frozen=True)
class OAOptions(ConnectorOptions):
    userid: str  # the OA user the sync acts as
    timezone: tzinfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    token_ttl_s: int = DEFAULT_TOKEN_TTL_S
    request_url: str = DEFAULT_REQUEST_URL  # the link to a request: {base_url} and {id}


class OAOptionsSchema(OptionsSchema):
    BUILDS = OAOptions
    userid = Text(required=True)
    timezone = _Timezone()
    # A token must outlive the margin at which the cache refreshes it.
    token_ttl_s = Whole(validate=validate.Range(min=TOKEN_REFRESH_MARGIN_S, min_inclusive=False))
    request_url = Text(validate=_link_template)


def _given(value: Any) -> str | None:
    """E9 writes an empty field as "": the canonical payload says None, so a required field
    that is empty becomes a dead letter naming it instead of a message to nobody."""
    return None if value in (None, "") else str(value)


@dataclass(frozen=True)
class _Position:
    """Where the next page starts: rows from second `at` on (None: the window's start), except
    those at `at` whose id is up to `after_id`. `page` is set while more than a page of rows
    share `at`: then the rows of that one second are paged by number."""

    at: str | None
    after_id: str | None = None
    page: int | None = None

    def encode(self) -> str:
        return json.dumps([self.at, self.after_id, self.page])

    @classmethod
    def decode(cls, token: str) -> _Position:
        try:
            at, after_id, page = json.loads(token)
        except (ValueError, TypeError):
            raise VendorRejected(
                VENDOR, "bad_page_token", "not a token of this connector"
            ) from None
        return cls(at, after_id, page)

    def passed(self, row: Mapping[str, Any]) -> bool:
        """True if `row` comes after this position's key, so it was not read yet."""
        if self.after_id is None or str(row["lastOperateTime"]) != self.at:
            return True
        return _id_key(str(row["requestId"])) > _id_key(self.after_id)


def _id_key(request_id: str) -> tuple[int, int, str]:
    """requestIds compare as numbers when they are numbers (E9's), else as text. Only ASCII
    digits count ("²" is a digit int() refuses), and no more than int() converts."""
    numeric = request_id.isascii() and request_id.isdecimal() and len(request_id) <= _ID_DIGITS
    return (0, int(request_id), "") if numeric else (1, 0, request_id)


_ID_DIGITS = 4000  # Python's int() refuses strings of more than 4300 digits


class OAConnector:
    """One E9 server at `config.base_url`; credentials appid, secret, spk; option `userid`
    (the OA user the sync acts as), optionally `timezone`, `token_ttl_s` and `request_url`
    (a template with {base_url} and {id}, the request id percent-encoded)."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {
            APPROVALS: StreamCapabilities(
                read=True, events=frozenset({EventKind.APPROVAL_CHANGED})
            ),
            TODOS: StreamCapabilities(
                write=True,
                no_read_back="the OA's unified-todo API (rest/ofs) documents no read of a"
                " todo it received",
            ),
            # comments appended; there is no read of its own
            PROJECT_PROGRESS: StreamCapabilities(
                write=True,
                no_read_back="a progress comment is appended with no id of its own to read back by",
            ),
        }
    )
    OPTIONS = OAOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        credentials = config.credentials
        self._appid = credentials["appid"].reveal()
        self._spk = self._public_key(credentials["spk"].reveal())
        options = options_of(config, OAOptions)
        self.timezone = options.timezone
        self.token_ttl_s = options.token_ttl_s
        self.request_url = options.request_url
        # PKCS#1 v1.5 is randomised: encrypt once, so E9 sees one stable header per instance.
        self._userid = self._encrypt(options.userid)
        self._acting_user = options.userid
        self._userids_as: dict[str, str] = {}  # OA user id -> its userid header, for authors
        # (request id, version) -> (monotonic time read, detail): read_one's reads, for hydrate
        self._fresh: OrderedDict[tuple[str, str], tuple[float, Mapping[str, Any]]] = OrderedDict()
        self._fresh_lock = threading.Lock()
        self.tokens = TokenCache(
            ctx.redis,
            f"token:{VENDOR}:{self._appid}",
            self._fetch_token,
            TOKEN_REFRESH_MARGIN_S,
            vendor=VENDOR,
        )
        self.client = build_client(config, ctx, classify, self.tokens, app=self._appid)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        if stream in (TODOS, PROJECT_PROGRESS):
            return math.inf  # a todo is upserted; a comment is looked up before it is made
        return None

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        if stream == TODOS:
            return self._write_todo(request)
        if stream == PROJECT_PROGRESS:
            return self._write_project_comment(request)
        raise VendorRejected(
            VENDOR,
            "unsupported_stream",
            f"connector {self.config.name} cannot write stream {stream!r} to the OA",
        )

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        """Requests last operated inside the window, in (lastOperateTime, requestId) order."""
        self._expect_stream(stream)
        limit = max(1, limit)
        until = self._oa_time(window.until) if window.until else None
        if page_token:
            position = _Position.decode(page_token)
        else:
            position = _Position(self._oa_time(window.since) if window.since else None)
        calls = 0
        while True:
            rows, following = self._step(position, until, limit)
            calls += 1
            if rows or following is None:
                break
            position = following  # a page of rows already read: look further at once
        records = tuple(self._list_record(row) for row in rows)
        return Page(records, following.encode() if following else None, calls=calls)

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Add form and current approvers: one detail call per record, and one operator call
        per pending record (a decided request has no current approver)."""
        self._expect_stream(stream)
        hydrated: list[Record] = []
        for record in records:
            detail = self._take_fresh(record)
            if detail is None:
                detail = self._detail(record.source_id)
            if detail is None:
                continue
            pending = record.payload["status"] == "pending"
            payload = {
                **record.payload,
                "form": _form(detail),
                "current_approvers": self._current_approvers(record.source_id) if pending else [],
            }
            hydrated.append(replace(record, payload=payload))
        return hydrated

    def list_users(self) -> list[DirectoryUser]:
        """Everyone in E9's HRM who has not left, page by page."""
        users: list[DirectoryUser] = []
        page = 1
        while True:
            params = {"curpage": page, "pagesize": USERS_PAGE_SIZE}
            body = self._post(USERS_PATH, "hrm/getHrmUserInfoWithPage", {"params": params})
            data = body.get("data") or {}
            rows = data.get("dataList") or []
            users += [_directory_user(r) for r in rows if str(r.get("status")) not in LEFT_COMPANY]
            if not rows or page * USERS_PAGE_SIZE >= int(data.get("totalSize") or 0):
                return users
            page += 1

    # -- writes: todos and project records ------------------------------------------------------
    def _write_todo(self, request: WriteRequest) -> WriteResult:
        """One receiver's todo (platform-apis.md 7.1; E9 统一待办 ReceiveRequestInfoByJson)."""
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        if kind is not NotifyKind.TODO or not to:
            return rejected(
                request, f"expected a todo with a receiver, got {kind.value!r} to {to!r}"
            )
        syscode = self.config.credentials.get("ofs_syscode")
        if syscode is None:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials.ofs_syscode", "expected the todo syscode")],
            )
        url = _given(content.get("url"))
        if url is None:
            return rejected(request, "an OA todo needs a url (pcurl) to open it from")
        # The message's own time, so a resend carries the same receivets and E9 keeps one state.
        at = parse_iso_utc(str(content.get("sent_at") or _now()))
        body = {
            "syscode": syscode.reveal(),
            "flowid": request.source_id,
            "requestname": clip_chars(str(content.get("text") or content.get("title") or "")),
            "workflowname": str(content.get("workflow") or "IM"),
            "nodename": str(content.get("node") or "todo"),
            "pcurl": url,
            "appurl": url,
            "isremark": "0",  # a todo, not yet handled
            "viewtype": "0",  # unread
            "creator": str(content.get("creator") or self._acting_user),
            "createdatetime": self._oa_time(iso_utc(at)),
            "receiver": to,
            "receivedatetime": self._oa_time(iso_utc(at)),
            "receivets": str(int(at.timestamp() * 1000)),
        }
        _, answer, _ = self.client.request(
            "POST", TODO_PATH, api="ofs/ReceiveRequestInfoByJson", idempotent=True, json=body
        )
        if str(answer.get("operResult")) != "1":
            return rejected(request, f"E9 refused the todo: {_short(str(answer.get('message')))}")
        return WriteResult(request.effect_key, WriteStatus.DONE, f"{request.source_id}|{to}")

    def _write_project_comment(self, request: WriteRequest) -> WriteResult:
        """A comment on the project's newest progress record, as its author; a project without
        any record gets one whose content is the comment (a new project is at 0 %)."""
        note = request.notification
        kind, project, content = note.kind, note.to, note.content
        if kind is not NotifyKind.PROJECT_COMMENT or not project:
            return rejected(
                request, f"expected a project_comment with a project, got {kind.value!r}"
            )
        text = str(content.get("text") or "").strip()
        if not text:
            return rejected(request, "a project comment needs text")
        ref = f"[ref {request.effect_key[:REF_LENGTH]}]"
        records = self._progress_records(project)
        done = next((r for r in records if _carries(r, ref)), None)
        if done is not None:  # an earlier attempt made it; its answer was lost
            return WriteResult(request.effect_key, WriteStatus.DONE, str(done["recordId"]))
        author = self._auth_as(str(content.get("author") or self._acting_user))
        stamped = f"{text}\n{ref}"
        try:
            if records:
                newest = max(records, key=lambda r: (str(r["lastModifyTime"]), str(r["recordId"])))
                record_id = str(newest["recordId"])
                form = {"recordId": record_id, "content": stamped}
                self._post(PROGRESS_COMMENT_PATH, "proj/progress/comment", form, author, False)
            else:
                form = {"projectId": project, "content": stamped, "percent": "0"}
                saved = self._post(PROGRESS_SAVE_PATH, "proj/progress/save", form, author, False)
                record_id = str((saved.get("data") or {}).get("recordId") or "")
        except VendorRejected as exc:
            return rejected(request, f"project {project}: {exc}")
        return WriteResult(request.effect_key, WriteStatus.DONE, record_id)

    def _progress_records(self, project: str) -> list[Mapping[str, Any]]:
        """Every progress record of a project, with its comments, page by page."""
        records: list[Mapping[str, Any]] = []
        page = 1
        while True:
            form = {"projectId": project, "pageNo": page, "pageSize": PROGRESS_PAGE_SIZE}
            body = self._post(PROGRESS_LIST_PATH, "proj/progress/list", form)
            data = body.get("data") or {}
            rows = [r for r in data.get("list") or [] if isinstance(r, Mapping)]
            records += rows
            if not rows or page * PROGRESS_PAGE_SIZE >= int(data.get("total") or 0):
                return records
            page += 1

    def _auth_as(self, user_id: str) -> Auth:
        """Headers acting as another OA user (the author of a comment), encrypted once each."""
        if user_id not in self._userids_as:
            self._userids_as[user_id] = self._encrypt(user_id)
        header = self._userids_as[user_id]
        return lambda token: AuthParts(
            headers={"appid": self._appid, "token": token, "userid": header}
        )

    # -- one request, and deciding it -----------------------------------------------------------
    def read_one(self, stream: str, source_id: str) -> Record | None:
        """The request now, as `read_page` gives it (`hydrate` adds form and approvers), or
        None when it is gone or out of our user's sight: one detail call."""
        self._expect_stream(stream)
        detail = self._detail(source_id)
        if not detail:
            return None
        record = self._list_record(_as_list_row(detail))
        self._keep_fresh(record, detail)
        return record

    def _keep_fresh(self, record: Record, detail: Mapping[str, Any]) -> None:
        now = time.monotonic()
        with self._fresh_lock:
            self._fresh[(record.source_id, record.version)] = (now, detail)
            self._fresh.move_to_end((record.source_id, record.version))
            while self._fresh and (
                len(self._fresh) > FRESH_DETAIL_MAX
                or next(iter(self._fresh.values()))[0] < now - FRESH_DETAIL_S
            ):
                self._fresh.popitem(last=False)

    def _take_fresh(self, record: Record) -> Mapping[str, Any] | None:
        """The detail read_one just made this very record from, once; None if there is none."""
        with self._fresh_lock:
            found = self._fresh.pop((record.source_id, record.version), None)
        if found is None or found[0] < time.monotonic() - FRESH_DETAIL_S:
            return None
        return found[1]

    def decide(
        self, stream: str, source_id: str, decision: Decision, as_user: str, comment: str
    ) -> None:
        """Approve or reject as OA user `as_user`, with `comment` as the sign remark.

        Never resent (E9 would act on whatever node the request reached meanwhile): a lost
        answer is OutcomeUnknown, and the caller reads the request's state to learn the rest.
        """
        self._expect_stream(stream)
        path, api = DECISIONS[decision]
        form: dict[str, Any] = {"requestId": source_id, "remark": comment}
        if decision is Decision.APPROVE:
            form["otherParams"] = {"src": "submit"}  # "save" would only save the form
        self._post(path, api, form, self._auth_as(as_user), False)

    # -- reading back what we may have made (connectors.base.LooksUpEffects) -------------------
    def looks_up(self, stream: str) -> bool:
        return stream in (APPROVALS, PROJECT_PROGRESS)

    def look_up(self, stream: str, request: WriteRequest) -> WriteResult | None:
        """A decision: the request's sign log says whether the approver decided it at that
        node. A project comment: whether a record or comment of the project carries its
        reference. None when it is not there and may be made now."""
        if stream == PROJECT_PROGRESS:
            project = request.notification.to
            ref = f"[ref {request.effect_key[:REF_LENGTH]}]"
            records = self._progress_records(project) if project else []
            done = next((r for r in records if _carries(r, ref)), None)
            if done is None:
                return None
            return WriteResult(request.effect_key, WriteStatus.DONE, str(done["recordId"]))
        self._expect_stream(stream)
        return self._look_up_decision(DecisionRequest.of(request), request)

    def _look_up_decision(
        self, decision: DecisionRequest, request: WriteRequest
    ) -> WriteResult | None:
        detail = self._detail(decision.source_id)
        if not detail:
            return rejected(request, "the request is gone or out of our user's sight")
        for entry in detail.get("workflowRequestLogs") or []:
            if (
                isinstance(entry, Mapping)
                and str(entry.get("operator") or "") == decision.as_user
                and str(entry.get("nodeid") or "") == decision.node
                and str(entry.get("logtype") or "") in DECIDED_LOGTYPES[decision.decision]
            ):
                at = f"{entry.get('operatedate') or ''} {entry.get('operatetime') or '00:00:00'}"
                extra = {"at": self._iso(at)} if entry.get("operatedate") else {}
                return WriteResult(
                    request.effect_key, WriteStatus.DONE, decision.as_user, extra=extra
                )
        now = self._list_record(_as_list_row(detail)).payload
        if (
            now["status"] == "pending"
            and str(now.get("node") or "") == decision.node
            and decision.as_user in self._current_approvers(decision.source_id)
        ):
            return None  # still theirs to decide at that node: not made, safe to make now
        return rejected(request, "the request moved on without this decision")

    # -- approvals ------------------------------------------------------------------------------
    def _step(
        self, position: _Position, until: str | None, limit: int
    ) -> tuple[list[Mapping[str, Any]], _Position | None]:
        """One list call: the rows not read yet, and where the page after them starts."""
        if position.page is None:
            rows = self._list(position.at, until, 1, limit)
            fresh = [r for r in rows if position.passed(r)]
            if len(rows) < limit:
                return fresh, None  # the window holds nothing more
            if fresh:
                last = fresh[-1]
                return fresh, _Position(str(last["lastOperateTime"]), str(last["requestId"]))
            # A whole page shares `at` and was read: page through that second by number. Its
            # page 1 is the page just read.
            return [], replace(position, page=2)
        assert position.at is not None  # noqa: S101 - set whenever `page` is
        second_after = self._next_second(position.at)
        end = second_after if until is None else min(second_after, until)
        rows = self._list(position.at, end, position.page, limit)
        fresh = [r for r in rows if position.passed(r)]
        if len(rows) >= limit:
            after = str(fresh[-1]["requestId"]) if fresh else position.after_id
            return fresh, _Position(position.at, after, position.page + 1)
        done = until is not None and second_after >= until
        return fresh, None if done else _Position(second_after)

    def _list(
        self, since: str | None, until: str | None, page_no: int, size: int
    ) -> list[Mapping[str, Any]]:
        conditions: dict[str, str] = {}
        if since:
            conditions["lastOperateTimeFrom"] = since
        if until:
            conditions["lastOperateTimeTo"] = until
        body = self._post(
            LIST_PATH,
            "workflow/getAllWorkflowRequestList",
            {"pageNo": page_no, "pageSize": size, "conditions": conditions},
        )
        rows = body.get(BARE)
        if not isinstance(rows, list):
            raise VendorUnavailable(VENDOR, "bad_body", "getAllWorkflowRequestList: not a list")
        return [r for r in rows if isinstance(r, Mapping)]

    def _list_record(self, row: Mapping[str, Any]) -> Record:
        """A list row in the canonical approval shape; `hydrate` adds form and approvers."""
        request_id = str(row["requestId"])
        status = approval_status(row)
        updated = self._iso(str(row["lastOperateTime"]))
        workflow = row.get("workflowBaseInfo") or {}
        payload: dict[str, Any] = {
            "id": request_id,
            "title": _given(row.get("requestName")),
            "template": str(workflow.get("workflowId") or ""),
            "status": status,
            "applicant": _given(row.get("creatorId")),
            "current_approvers": [],
            "node": _given(row.get("currentNodeId")),
            "last_operator": _given(row.get("lastOperatorId")),
            "created_at": self._iso(str(row["createTime"])) if row.get("createTime") else updated,
            "updated_at": updated,
            "form": {},
            "url": self.request_url.format(base_url=self.client.base_url, id=_url_part(request_id)),
        }
        # The node joins the time: a request approved on to its next level within the same
        # second still gets a new version.
        version = f"{updated}|{row.get('currentNodeId', '')}|{status}"
        return Record(request_id, version, updated, payload)

    def _detail(self, request_id: str) -> Mapping[str, Any] | None:
        try:
            body = self._get(DETAIL_PATH, "workflow/getWorkflowRequest", request_id)
        except VendorRejected as exc:
            if exc.code != "NO_PERMISSION":
                raise
            # E9 answers a deleted request, or one out of our user's sight, this way.
            log.warning("oa request %s is gone or out of sight; not synced", request_id)
            return None
        data = body.get("data")
        return data if isinstance(data, Mapping) else {}

    def _current_approvers(self, request_id: str) -> list[str]:
        """Operators whose turn it is (isremark 0, "not yet operated")."""
        body = self._get(OPERATORS_PATH, "workflow/getRequestOperatorInfo", request_id)
        rows = body.get("data") or []
        todo = (str(r["userid"]) for r in rows if str(r.get("isremark")) == "0" and r.get("userid"))
        return list(dict.fromkeys(todo))

    # -- calls ---------------------------------------------------------------------------------
    def _auth(self, token: str) -> AuthParts:
        return AuthParts(headers={"appid": self._appid, "token": token, "userid": self._userid})

    def _post(
        self,
        path: str,
        api: str,
        form: Mapping[str, Any],
        auth: Auth | None = None,
        idempotent: bool = True,
    ) -> Mapping[str, Any]:
        """A form-urlencoded POST; JSON-valued fields travel as JSON strings, as E9 wants."""
        data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
        _, body, _ = self.client.request(
            "POST", path, api=api, idempotent=idempotent, data=data, auth=auth or self._auth
        )
        return body

    def _get(self, path: str, api: str, request_id: str) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            "GET", path, api=api, idempotent=True, params={"requestId": request_id}, auth=self._auth
        )
        return body

    def _fetch_token(self) -> tuple[str, float]:
        headers = {
            "appid": self._appid,
            "secret": self._encrypt(self.config.credentials["secret"].reveal()),
            "time": str(self.token_ttl_s),
        }
        try:
            _, body, _ = self.client.request(
                "POST", APPLYTOKEN_PATH, api="auth/applytoken", idempotent=True, headers=headers
            )
        except (VendorRejected, TokenExpired) as exc:
            # A wrong appid or secret is the operator's to fix (run regist again if the OA was
            # reinstalled), not a reason to refuse a record.
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials", f"E9 refused appid/secret ({exc})")],
            ) from None
        token = body.get("token")
        if not token:
            raise VendorUnavailable(VENDOR, "no_token", "applytoken answered without a token")
        return str(token), float(self.token_ttl_s)

    def _public_key(self, spk: str) -> rsa.RSAPublicKey:
        try:
            key = serialization.load_der_public_key(base64.b64decode(spk))
        except (ValueError, binascii.Error):
            key = None
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials.spk", "expected regist's base64 RSA key")],
            )
        return key

    def _encrypt(self, text: str) -> str:
        """b64(RSA_PKCS1v1_5(spk, text)): how E9 wants `secret` and `userid` sent."""
        return base64.b64encode(
            self._spk.encrypt(text.encode("utf-8"), padding.PKCS1v15())
        ).decode()

    # -- times ---------------------------------------------------------------------------------
    def _oa_time(self, cursor: str) -> str:
        """An ISO-8601 UTC cursor as E9 writes times: server-local, to the second."""
        moment = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        return moment.astimezone(self.timezone).strftime(TIME_FORMAT)

    def _iso(self, oa_time: str) -> str:
        local = datetime.strptime(oa_time.strip(), TIME_FORMAT).replace(tzinfo=self.timezone)
        return iso_utc(local)

    def _next_second(self, oa_time: str) -> str:
        local = datetime.strptime(oa_time, TIME_FORMAT).replace(tzinfo=self.timezone)
        return (local + timedelta(seconds=1)).strftime(TIME_FORMAT)

    def _expect_stream(self, stream: str) -> None:
        if stream != APPROVALS:
            raise ConfigError(
                "flows",
                [(stream, f"expected stream {APPROVALS!r} for OA connector {self.config.name}")],
            )


def _as_list_row(detail: Mapping[str, Any]) -> Mapping[str, Any]:
    """A detail in the list row's shape, so one builder makes both records (same version).

    E9 documents no lastOperateTime in the detail (the sandbox gives it): the newest sign
    log's time stands in for it.
    """
    if detail.get("lastOperateTime"):
        return detail
    logs = [x for x in detail.get("workflowRequestLogs") or [] if isinstance(x, Mapping)]
    times = [
        f"{x['operatedate']} {x.get('operatetime') or '00:00:00'}"
        for x in logs
        if x.get("operatedate")
    ]
    return {**detail, "lastOperateTime": max(times, default=str(detail.get("createTime") or ""))}


def _form(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The main table's fields by name. E9 builds name the records list differently
    (`requestRecords` / `workflowRequestTableRecords`); either is read."""
    main = detail.get("workflowMainTableInfo") or {}
    records = main.get("requestRecords") or main.get("workflowRequestTableRecords") or []
    if not records:
        return {}
    fields = records[0].get("workflowRequestTableFields") or []
    return {str(f["fieldName"]): f.get("fieldValue") for f in fields if f.get("fieldName")}


def _directory_user(row: Mapping[str, Any]) -> DirectoryUser:
    def text(key: str) -> str | None:
        value = row.get(key)
        return str(value) if value not in (None, "") else None

    return DirectoryUser(
        user_id=str(row["id"]),
        employee_no=text("workcode"),
        email=text("email"),
        mobile=text("mobile"),
        name=text("lastname"),
    )


def _url_part(value: str) -> str:
    """A value as one component of a link: percent-encoded whole, so that no character of it
    (`&`, `#`, `/`, a blank, a NUL) ends the component, adds a parameter, or makes the
    connectors refuse the link and drop the card's Open button."""
    return quote(value, safe="")


def clip_chars(text: str) -> str:
    """A todo title E9 can show in one line: at most TODO_NAME_MAX characters."""
    line = " ".join(text.split())
    return line if len(line) <= TODO_NAME_MAX else line[: TODO_NAME_MAX - 1] + "…"


def _carries(record: Mapping[str, Any], ref: str) -> bool:
    """Whether a progress record, or one of its comments, holds our reference."""
    texts = [str(record.get("content") or "")]
    texts += [str(c.get("content") or "") for c in record.get("comments") or []]
    return any(ref in text for text in texts)


def _now() -> str:
    return iso_utc(datetime.now(UTC))
