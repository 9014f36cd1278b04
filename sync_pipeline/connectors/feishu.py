"""The Feishu / Lark connector: IM notifications out, approval instances in, the user directory.

Written from Feishu's contract (shared/platform-apis.md section 3), never from the sandbox
emulator. Every call goes through the shared `HttpClient`; the tenant_access_token lives in
Redis, shared by every worker. Feishu answers errors inside `{code, msg}` bodies, often with
HTTP 200 or 400, so `classify` decides by the body first. Messages carry a `uuid` derived from
our effect key: Feishu itself drops a resend with the same uuid for an hour, which is what lets
the write step resend a message whose outcome it does not know (DESIGN.md section 3).

Streams: write "messages" (a card, a message as a rich-text post, or an update of a card sent
earlier); read "approvals" (instances of the approval definitions listed in the
`approval_codes` option).
`hydrate("messages", ...)` adds to a group message its chat's name and description
(`group_info`), where a project group names its project; message events give only the chat id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from marshmallow import fields, validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Texts
from sync_pipeline.connectors.base import (
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    TargetView,
    ViewPage,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import decision_values
from sync_pipeline.connectors.buttons import feishu as feishu_buttons
from sync_pipeline.connectors.feishu_approval_center import (
    ApprovalCenter,
    ApprovalCenterOptions,
    ApprovalCenterOptionsSchema,
    center_config,
)
from sync_pipeline.connectors.markup import FEISHU_MARKDOWN, PLAIN, Unit, link
from sync_pipeline.connectors.notify import plain_message, rejected, wants_decision
from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    RateLimited,
    SyncError,
    TokenExpired,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import TokenCache, bearer
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

VENDOR = "feishu"
MESSAGES = "messages"
APPROVALS = "approvals"
APPROVAL_CENTER = "approval_center"

TOKEN_CODES = frozenset({99991663, 99991664, 99991668})  # tenant / app / user token invalid
RATE_LIMIT_CODE = 99991400
MESSAGE_RATE_LIMIT_CODE = 230020  # 5 updates a second per message, answered in the body
MESSAGE_RATE_LIMIT_WAIT_S = 1.0
SERVICE_ERROR_CODE = 1395001
EXTERNAL_SYNC_TOO_SOON_CODE = 1390014
EXTERNAL_SYNC_WAIT_S = 2.0  # how soon is too soon is not documented
TOKEN_REFRESH_MARGIN_S = 600.0  # as the official SDK; under 30 min left Feishu issues a new one
UUID_MAX = 50  # Feishu's limit on a message's dedupe `uuid`
UUID_WINDOW_S = 3600.0  # the same uuid is sent at most once per hour ...
UUID_SAFETY_S = 300.0  # ... minus our margin for clock skew and the time a send takes
PATCH_WINDOW_S = 14 * 86400.0  # a card message can be changed for 14 days after it was sent
LIST_PAGE_SIZE = 100  # instance codes per list call; the documented maximum (unconfirmed)
CONTACT_PAGE_SIZE = 50
ROOT_DEPARTMENT = "0"

INSTANCE_STATUS = {
    "PENDING": "pending",
    "APPROVED": "approved",
    "REJECTED": "rejected",
    "CANCELED": "revoked",
    "DELETED": "revoked",
}
HEADER_COLOURS = {"pending": "blue", "approved": "green", "rejected": "red"}
# A card (and a post) may hold 30 KB of JSON (platform-apis.md 3.1); outside text gets these
# shares of it, the rest is our frame, buttons and link. Feishu documents no per-field limit.
TITLE_BYTES = 1024
TEXT_BYTES = 16 * 1024
FIELDS_BYTES = 8 * 1024  # shared by a card's fields, the status among them
LABEL_SHARE = 4  # a field's label gets at most a quarter of the field's share
BOLD_FRAME_BYTES = 6  # the "**" around a label and the newline after it, in JSON
POST_TEXT_BYTES = 24 * 1024


NO_READ_MESSAGES = (
    "Feishu documents a read of one message (GET /im/v1/messages/:message_id) and of a chat's"
    " history, but reading a flow's cards and results back is not built yet: a record makes"
    " several messages, and the id map keys one target object per record"
)


def feishu_uuid(effect_key: str) -> str:
    """Feishu's dedupe handle for one effect: a 50-character hex prefix of its sha256."""
    return hashlib.sha256(effect_key.encode("utf-8")).hexdigest()[:UUID_MAX]


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """Feishu's answer as an error, or None. The body's `code` decides; the status only speaks
    when there is no body code (a gateway 5xx, the plain-text 404 of an unknown path)."""
    code = body.get("code")
    if status == 429 or code == RATE_LIMIT_CODE:
        reset = headers.get("x-ogw-ratelimit-reset")
        return RateLimited(VENDOR, str(code or status), retry_after=_seconds(reset))
    if code == MESSAGE_RATE_LIMIT_CODE:
        return RateLimited(VENDOR, str(code), retry_after=MESSAGE_RATE_LIMIT_WAIT_S)
    if code == EXTERNAL_SYNC_TOO_SOON_CODE:  # the same external instance synced just now
        return RateLimited(VENDOR, str(code), retry_after=EXTERNAL_SYNC_WAIT_S)
    if status >= 500 or code == SERVICE_ERROR_CODE:
        return VendorUnavailable(VENDOR, str(code or status))
    if code is None:
        return VendorRejected(VENDOR, f"http_{status}") if status >= 400 else None
    if code == 0:
        return None
    if code in TOKEN_CODES:
        return TokenExpired(VENDOR, str(code))
    return VendorRejected(VENDOR, str(code), str(body.get("msg", "")))


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class FeishuOptions(ConnectorOptions):
    approval_codes: tuple[str, ...] = ()  # the approval definitions stream "approvals" reads
    approval_center: ApprovalCenterOptions | None = None  # stream "approval_center"


class FeishuOptionsSchema(OptionsSchema):
    BUILDS = FeishuOptions
    approval_codes = Texts(validate=validate.Length(min=1))
    approval_center = fields.Nested(ApprovalCenterOptionsSchema)


class FeishuConnector:
    """One Feishu app (app_id, app_secret) at `config.base_url` (`.../open-apis` is added);
    options as `FeishuOptions` declares them."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {
            MESSAGES: StreamCapabilities(
                write=True, events=frozenset({EventKind.MESSAGE}), no_read_back=NO_READ_MESSAGES
            ),
            APPROVALS: StreamCapabilities(read=True, option="approval_codes"),
            APPROVAL_CENTER: StreamCapabilities(
                write=True, option="approval_center", reads_back=True
            ),
        }
    )
    OPTIONS = FeishuOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self._app_id = config.credentials["app_id"].reveal()
        self.tokens = TokenCache(
            ctx.redis,
            f"token:{VENDOR}:{self._app_id}",
            self._fetch_token,
            TOKEN_REFRESH_MARGIN_S,
            vendor=VENDOR,
        )
        self.client = build_client(config, ctx, classify, self.tokens, app=self._app_id)
        options = options_of(config, FeishuOptions)
        self.approval_codes = options.approval_codes
        # stream "approval_center" (feishu_approval_center.py)
        center = center_config(config, options.approval_center)
        self.approval_center = None if center is None else ApprovalCenter(center, self._data)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        # An approval center sync is an upsert; its stream also carries replies (messages).
        return UUID_WINDOW_S - UUID_SAFETY_S if stream in (MESSAGES, APPROVAL_CENTER) else None

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        """A PATCH of the card message, for 14 days after it was sent (230031 after that)."""
        return age_s < PATCH_WINDOW_S - UUID_SAFETY_S

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        if stream == APPROVAL_CENTER and request.notification.kind is not NotifyKind.MESSAGE:
            return self._center_write(request)
        if stream != APPROVAL_CENTER:
            self._expect_stream(stream, MESSAGES)
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        try:
            if kind == "update_card":
                if not request.target_id:
                    return rejected(request, "update_card needs the target_id of the card")
                self._patch_card(request.target_id, _card(request.source_id, content))
                return WriteResult(request.effect_key, WriteStatus.DONE, request.target_id)
            if not to:
                return rejected(request, f"a {kind} needs a recipient in 'to'")
            if kind == "card":
                msg_type, body = "interactive", _card(request.source_id, content)
            elif kind == "message":
                msg_type, body = "post", _post(content)
            else:
                return rejected(request, f"unknown notification kind {kind.value!r}")
            message_id = self._send(to, msg_type, body, feishu_uuid(request.effect_key))
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, message_id)

    def post_to_group(self, chat_id: str, request: WriteRequest) -> WriteResult:
        """A card in a group chat the app is in (connectors.base.PostsToGroups)."""
        card = _card(request.source_id, request.notification.content)
        try:
            message_id = self._send(
                chat_id, "interactive", card, feishu_uuid(request.effect_key), to_group=True
            )
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, message_id)

    def group_dedupe_window_s(self) -> float | None:
        return UUID_WINDOW_S - UUID_SAFETY_S

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        self._expect_stream(stream, APPROVALS)
        if not self.approval_codes:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.options.approval_codes", "expected approval codes to read")],
            )
        reader = _ApprovalReader(self._get, self.approval_codes, window)
        return reader.page(page_token, max(1, limit))

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Approvals: nothing to add (the list gives only codes, so `read_page` reads each
        detail). Messages: `group_info` {id, name, description} of a group message's chat, or
        None when the app is not in that group; a message that has it already is left as is."""
        if stream != MESSAGES or not any(_needs_group(r) for r in records):
            return list(records)
        chats = {
            str(chat["chat_id"]): {
                "id": str(chat["chat_id"]),
                "name": chat.get("name"),
                "description": chat.get("description"),
            }
            for chat in self._paged("im/v1/chats", "im/v1/chats", {})
        }
        return [
            replace(r, payload={**r.payload, "group_info": chats.get(str(r.payload["group"]))})
            if _needs_group(r)
            else r
            for r in records
        ]

    def list_users(self) -> list[DirectoryUser]:
        """Everyone in the app's contact scope: every department from the root down."""
        departments = [ROOT_DEPARTMENT] + [
            str(d["open_department_id"])
            for d in self._paged(
                f"contact/v3/departments/{ROOT_DEPARTMENT}/children",
                "contact/v3/departments/:department_id/children",
                {"fetch_child": "true", "department_id_type": "open_department_id"},
            )
        ]
        users: dict[str, DirectoryUser] = {}
        for department in departments:
            for item in self._paged(
                "contact/v3/users/find_by_department",
                "contact/v3/users/find_by_department",
                {
                    "department_id": department,
                    "department_id_type": "open_department_id",
                    "user_id_type": "open_id",
                },
            ):
                users.setdefault(str(item["open_id"]), _directory_user(item))
        return list(users.values())

    # -- reading back the approval center (connectors.base.ReadsBack) -------------------------
    def expected_view(self, stream: str, request: WriteRequest) -> TargetView | None:
        return self._center(stream).expected_view(request)

    def suspects(self, stream: str, requests: Sequence[WriteRequest]) -> set[str]:
        return self._center(stream).suspects(requests)

    def read_back(self, stream: str, requests: Sequence[WriteRequest]) -> dict[str, TargetView]:
        return self._center(stream).read_back([r.source_id for r in requests])

    def repair_request(
        self, stream: str, request: WriteRequest, held: TargetView | None
    ) -> WriteRequest:
        """An instance written again whole, as a first sync writes it (an upsert by its id)."""
        self._center(stream)
        return replace(request, target_id=None)

    def list_back(self, stream: str, page_token: str | None, limit: int) -> ViewPage:
        return self._center(stream).list_back(page_token, limit)

    def remove_back(self, stream: str, target_id: str, request: WriteRequest) -> WriteResult:
        try:
            return self._center(stream).remove_back(target_id, request)
        except VendorRejected as exc:
            return rejected(request, str(exc))

    def _center(self, stream: str) -> ApprovalCenter:
        if stream != APPROVAL_CENTER:
            raise ValueError(f"{self.config.name}: stream {stream} cannot be read back")
        if self.approval_center is None:
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.options.approval_center", "expected approval_code")],
            )
        return self.approval_center

    # -- calls ---------------------------------------------------------------------------------
    def _center_write(self, request: WriteRequest) -> WriteResult:
        center = self._center(APPROVAL_CENTER)
        try:
            return center.write(request)
        except VendorRejected as exc:
            return rejected(request, str(exc))

    def _data(self, method: str, path: str, api: str, body: Any) -> Mapping[str, Any]:
        """One approval-center call; its `data`. Every one is an upsert or a read."""
        _, answer, _ = self.client.request(
            method, f"open-apis/{path}", api=api, idempotent=True, json=body, auth=bearer
        )
        data = answer.get("data")
        return data if isinstance(data, Mapping) else {}

    def _fetch_token(self) -> tuple[str, float]:
        try:
            _, body, _ = self.client.request(
                "POST",
                "open-apis/auth/v3/tenant_access_token/internal",
                api="auth/v3/tenant_access_token",
                idempotent=True,
                json={
                    "app_id": self._app_id,
                    "app_secret": self.config.credentials["app_secret"].reveal(),
                },
            )
        except VendorRejected as exc:
            # Wrong credentials are the operator's to fix, not a reason to refuse a record.
            raise ConfigError(
                "connectors.yaml",
                [(f"{self.config.name}.credentials", f"Feishu refused app_id/app_secret ({exc})")],
            ) from None
        token, expire = body.get("tenant_access_token"), body.get("expire")
        if not token or not isinstance(expire, int | float):
            raise VendorUnavailable(VENDOR, "no_token", "auth/v3/tenant_access_token")
        return str(token), float(expire)

    def _send(
        self,
        to: str,
        msg_type: str,
        content: Mapping[str, Any],
        dedupe: str,
        *,
        to_group: bool = False,
    ) -> str:
        _, body, _ = self.client.request(
            "POST",
            "open-apis/im/v1/messages",
            api="im/v1/messages",
            idempotent=True,  # the uuid makes a resend within the hour a no-op at Feishu
            # The directory's user ids are open_ids; a group is named by its chat_id.
            params={"receive_id_type": "chat_id" if to_group else "open_id"},
            json={
                "receive_id": to,
                "msg_type": msg_type,
                "content": json.dumps(content, ensure_ascii=False),
                "uuid": dedupe,
            },
            auth=bearer,
        )
        message_id = (body.get("data") or {}).get("message_id")
        if not message_id:
            raise OutcomeUnknown(VENDOR, "no_message_id", "im/v1/messages")
        return str(message_id)

    def _patch_card(self, message_id: str, card: Mapping[str, Any]) -> None:
        self.client.request(
            "PATCH",
            f"open-apis/im/v1/messages/{message_id}",
            api="im/v1/messages/:message_id",
            idempotent=True,  # setting the same content twice leaves the same card
            json={"content": json.dumps(card, ensure_ascii=False)},
            auth=bearer,
        )

    def _get(self, path: str, api: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            "GET", f"open-apis/{path}", api=api, idempotent=True, params=params, auth=bearer
        )
        data = body.get("data")
        return data if isinstance(data, Mapping) else {}

    def _paged(self, path: str, api: str, params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        """Every item of a `page_token` / `has_more` listing; a repeated token is a vendor bug."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page_params = {**params, "page_size": CONTACT_PAGE_SIZE}
            if token:
                page_params["page_token"] = token
            data = self._get(path, api, page_params)
            yield from data.get("items") or []
            token = str(data.get("page_token") or "") if data.get("has_more") else None
            if not token:
                return
            if token in seen:
                raise VendorRejected(VENDOR, "page_token_repeated", api)
            seen.add(token)

    def _expect_stream(self, stream: str, expected: str) -> None:
        if stream != expected:
            raise ConfigError(
                "flows",
                [(stream, f"expected stream {expected!r} for Feishu connector {self.config.name}")],
            )


# -- messages ----------------------------------------------------------------------------------


def _needs_group(record: Record) -> bool:
    return bool(record.payload.get("group")) and "group_info" not in record.payload


def _card(source_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """An interactive card (JSON 1.0). `update_multi` lets a later PATCH change it for every
    recipient; button values carry what the card callback needs to act on the source. Every
    value from the content is outside text: plain_text as it is, markdown escaped (markup.py)."""
    status = str(content.get("status") or "")
    elements: list[dict[str, Any]] = []
    text = FEISHU_MARKDOWN.fit(content.get("text") or "", TEXT_BYTES, Unit.BYTES)
    if text:
        elements.append({"tag": "markdown", "content": text})
    shown = _fields(content)
    if shown:
        elements.append({"tag": "div", "fields": shown})
    actions: list[dict[str, Any]] = []
    url = link(content.get("url"))
    if url:
        actions.append(_button("Open", "default", url=url))
    if wants_decision(content):
        for (value, label), style in zip(
            decision_values(source_id), ("primary", "danger"), strict=True
        ):
            actions.append(_button(label, style, value=feishu_buttons.encode(value)))
    if actions:
        elements.append({"tag": "action", "actions": actions})
    title = content.get("title") or "Notification"
    return {
        "config": {"update_multi": True, "wide_screen_mode": True},
        "header": {
            "title": {
                "tag": "plain_text",
                "content": PLAIN.fit(title, TITLE_BYTES, Unit.BYTES, one_line=True),
            },
            "template": HEADER_COLOURS.get(status, "grey"),
        },
        "elements": elements,
    }


def _fields(content: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The status and the content's `fields` as short lark_md fields: our bold label, then
    the value, both escaped, sharing FIELDS_BYTES."""
    rows = [("Status", content.get("status_label"))]
    extra = content.get("fields")
    if isinstance(extra, Mapping):
        rows += list(extra.items())
    rows = [(label, value) for label, value in rows if value not in (None, "")]
    share = FIELDS_BYTES // max(1, len(rows))
    shown = []
    for label, value in rows:
        name = FEISHU_MARKDOWN.fit(label, share // LABEL_SHARE, Unit.BYTES, one_line=True)
        bold = f"**{name}**\n" if name else ""
        room = share - share // LABEL_SHARE - BOLD_FRAME_BYTES
        text = bold + FEISHU_MARKDOWN.fit(value, room, Unit.BYTES)
        shown.append({"is_short": True, "text": {"tag": "lark_md", "content": text}})
    return shown


def _post(content: Mapping[str, Any]) -> dict[str, Any]:
    """A message as a rich-text post: its text in a `text` element, which Feishu shows as it
    is (no @, no link, no style), and the link in an `a` element of our own. A `text` message
    would read `<at user_id="all">` and `[text](url)` in it."""
    text, url = plain_message(content, PLAIN, POST_TEXT_BYTES)
    paragraphs = [[{"tag": "text", "text": text}]]
    if url:
        paragraphs.append([{"tag": "a", "href": url, "text": url}])
    return {"zh_cn": {"content": paragraphs}}


def _button(
    label: str, style: str, *, url: str | None = None, value: Mapping[str, str] | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": style,
    }
    if url is not None:
        button["url"] = url
    if value is not None:
        button["value"] = dict(value)
    return button


# -- directory ---------------------------------------------------------------------------------
def _directory_user(item: Mapping[str, Any]) -> DirectoryUser:
    def text(*keys: str) -> str | None:
        return next((str(item[k]) for k in keys if item.get(k)), None)

    return DirectoryUser(
        user_id=str(item["open_id"]),
        employee_no=text("employee_no"),
        email=text("email", "enterprise_email"),
        mobile=text("mobile"),
        name=text("name"),
    )


# -- approvals ---------------------------------------------------------------------------------
_Get = Callable[[str, str, Mapping[str, Any]], Mapping[str, Any]]  # (path, api, params) -> data


@dataclass
class _Lane:
    """Where one approval code's instance list stands: the list page holding its next
    instance (`token`, None for the first) and how many of that page were already read.
    The rest is scratch state of the page being read and never leaves `_ApprovalReader`."""

    code: str
    token: str | None = None
    skip: int = 0
    done: bool = False
    listed: bool = False
    left: list[str] = field(default_factory=list)  # instance codes of the list page after skip
    more: str | None = None  # the next list page's token when Feishu said has_more
    head: tuple[int, Record] | None = None  # the next instance, read, not yet in the page


class _ApprovalReader:
    """One page of approval instances started inside the window, in start-time order.

    Feishu lists instance codes per approval code, each list in start-time order (assumed:
    the docs do not say), and only the detail call tells an instance's start time and state.
    Pages must be in cursor order across all codes (the cursor commits per page), so this
    merges the lists: it reads the next instance of each code and takes the earliest,
    fetching details lazily. The page token holds every lane's (list page token, instances
    already read), so the same token reads the same page. Feishu filters by start time only,
    so a decision on an instance started before the window is seen through the approval
    events or a full sync.
    """

    def __init__(self, get: _Get, codes: Sequence[str], window: ReadWindow) -> None:
        self._get = get
        self.codes = codes
        self.start_ms = _ms(window.since) if window.since else 0
        self.end_ms = _ms(window.until) if window.until else _ms(iso_utc(datetime.now(UTC)))
        self.calls = 0

    def page(self, page_token: str | None, limit: int) -> Page:
        lanes = self._lanes(page_token)
        records: list[Record] = []
        while len(records) < limit:
            for lane in lanes:
                self._fill(lane)
            heads = [(lane.head, i) for i, lane in enumerate(lanes) if lane.head is not None]
            if not heads:
                break
            (_, record), i = min(heads, key=lambda h: (h[0][0], h[0][1].source_id))
            lane = lanes[i]
            records.append(record)
            lane.head, lane.skip = None, lane.skip + 1
            if not lane.left:
                self._next_list_page(lane)
        done = all(lane.done for lane in lanes)
        return Page(tuple(records), None if done else _encode(lanes), calls=self.calls)

    def _lanes(self, page_token: str | None) -> list[_Lane]:
        if not page_token:
            return [_Lane(code) for code in self.codes]
        return [_Lane(str(c), t, int(s), bool(d)) for c, t, s, d in json.loads(page_token)]

    def _fill(self, lane: _Lane) -> None:
        """Give the lane its next instance as `head`, listing and reading as needed."""
        while lane.head is None and not lane.done:
            if not lane.listed:
                self._list(lane)
            if not lane.left:
                self._next_list_page(lane)
                continue
            code = lane.left.pop(0)
            instance = self._detail(code)
            if instance is None:  # gone between list and detail: nothing left to sync
                lane.skip += 1
                continue
            lane.head = (int(instance.get("start_time") or 0), _approval_record(instance))

    def _next_list_page(self, lane: _Lane) -> None:
        if lane.more:
            lane.token, lane.skip, lane.listed, lane.more = lane.more, 0, False, None
        else:
            lane.done = True

    def _list(self, lane: _Lane) -> None:
        params: dict[str, Any] = {
            "approval_code": lane.code,
            "start_time": self.start_ms,
            "end_time": self.end_ms,
            "page_size": LIST_PAGE_SIZE,
        }
        if lane.token:
            params["page_token"] = lane.token
        data = self._get("approval/v4/instances", "approval/v4/instances", params)
        self.calls += 1
        codes = [str(c) for c in data.get("instance_code_list") or []]
        lane.left, lane.listed = codes[lane.skip :], True
        more = data.get("page_token") if data.get("has_more") else None
        if more and more == lane.token:
            raise VendorRejected(VENDOR, "page_token_repeated", "approval/v4/instances")
        lane.more = str(more) if more else None

    def _detail(self, instance_code: str) -> Mapping[str, Any] | None:
        self.calls += 1
        try:
            return self._get(
                f"approval/v4/instances/{instance_code}",
                "approval/v4/instances/:instance_id",
                {"user_id_type": "open_id"},
            )
        except VendorRejected as exc:
            if exc.code != "1390003":  # instance code not found
                raise
            log.warning("feishu approval instance %s vanished while paging", instance_code)
            return None


def _encode(lanes: Sequence[_Lane]) -> str:
    return json.dumps([[lane.code, lane.token, lane.skip, lane.done] for lane in lanes])


def _ms(cursor: str) -> int:
    return int(parse_iso_utc(cursor).timestamp() * 1000)


def _iso(ms: int) -> str:
    return iso_utc(datetime.fromtimestamp(ms / 1000, UTC))


def _approval_record(instance: Mapping[str, Any]) -> Record:
    """An approval instance in the canonical approval shape (`stages` module docstring)."""
    start = int(instance.get("start_time") or 0)
    tasks = instance.get("task_list") or []
    moments = [start, int(instance.get("end_time") or 0)]
    moments += [int(t.get("create_time") or 0) for t in instance.get("timeline") or []]
    moments += [int(t.get("end_time") or 0) for t in tasks]
    updated = max(moments)
    status = INSTANCE_STATUS.get(str(instance.get("status")), str(instance.get("status")).lower())
    code, created = str(instance["instance_code"]), _iso(start)
    payload = {
        "id": code,
        "title": f"{instance.get('approval_name', '')} {instance.get('serial_number', '')}".strip(),
        "template": str(instance.get("approval_code", "")),
        "status": status,
        "applicant": str(instance.get("open_id", "")),
        "current_approvers": [str(t["open_id"]) for t in tasks if t.get("status") == "PENDING"],
        "created_at": created,
        "updated_at": _iso(updated),
        "form": _form(instance.get("form")),
        "url": None,
    }
    return Record(
        source_id=code, version=f"{updated}:{status}", cursor_value=created, payload=payload
    )


def _form(raw: Any) -> dict[str, Any]:
    """Feishu's form (a JSON string of widgets) as {custom_id or name: value}."""
    try:
        widgets = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return {}
    if not isinstance(widgets, list):
        return {}
    return {
        str(w.get("custom_id") or w.get("name") or w.get("id")): w.get("value")
        for w in widgets
        if isinstance(w, Mapping)
    }
