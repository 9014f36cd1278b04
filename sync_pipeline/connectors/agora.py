"""The Agora Chat connector: notifications to users as chat messages, and the user directory.

Written from Agora Chat's REST contract (shared/platform-apis.md section 6), never from the
sandbox emulator. The app token (AccessToken2 with the chat app privilege) is built locally
by AgoraIO's own `ChatTokenBuilder2` from the App ID and App Certificate, and cached in Redis
like every other token so that all workers send the same one. Agora reports errors by HTTP
status with an `error` string in the body.

Agora Chat has no interactive card, no edit API and no dedupe handle: a card is a custom
message (`customEvent` + `customExts`), updating a card is recalling the old message (only
possible within the recall window) and sending a new one that names it in `replaces`, and a
resend is a second message, so the write step must never resend one whose outcome it does
not know (`dedupe_window_s` is None). Our effect key rides along in `ext.sync_effect_key`, so
a message can be matched to its effect in the history export.

A message's `target_id` is "<username>/<msg_id>": a recall needs the recipient as well as the
message id, and Agora cannot look a message up by id.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from marshmallow import validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Text, Whole
from sync_pipeline.connectors.base import (
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import agora as agora_buttons
from sync_pipeline.connectors.buttons import decision_values
from sync_pipeline.connectors.markup import PLAIN, Unit, link
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
from sync_pipeline.http import TokenCache, bearer
from sync_pipeline.records import (
    EventKind,
    Page,
    ReadWindow,
    Record,
    WriteRequest,
    WriteResult,
    WriteStatus,
)

with warnings.catch_warnings():  # the package's __init__ imports its deprecated DynamicKey
    warnings.simplefilter("ignore", DeprecationWarning)
    from agoraiotools.ChatTokenBuilder2 import ChatTokenBuilder  # type: ignore[import-untyped]

VENDOR = "agora"
MESSAGES = "messages"
MAX_TOKEN_TTL_S = 86_400  # app tokens are valid at most 24 h
TOKEN_REFRESH_MARGIN_S = 3_600.0
RATE_LIMIT_WAIT_S = 1.0  # 429 reach_limit documents no Retry-After; the limits are per second
USERNAME = re.compile(r"[a-z0-9_.-]{1,64}")  # Agora's username alphabet
USERS_PAGE_SIZE = 100  # GET /users `limit`: 1..100
CARD_EVENT = "approval_card"
DEFAULT_SENDER = "admin"  # Agora's `from` when none is named: the app's administrator
EFFECT_KEY_EXT = "sync_effect_key"  # in the ext of every message we send (webhooks/agora.py)
EMPLOYEE_NO_FROM_USERNAME = ("upper", "same")
# A message's body and ext together hold at most 5 KB (platform-apis.md section 6); outside
# text gets these shares of it, the rest is ids, the link and the JSON around them.
TEXT_BYTES = 4096
CARD_TITLE_BYTES, CARD_TEXT_BYTES, CARD_LABEL_BYTES = 384, 1536, 192


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """Agora's answer as an error, or None (platform-apis.md section 6, error table)."""
    error = str(body.get("error") or "")
    detail = str(body.get("error_description") or "")
    if status == 408 or status >= 500:
        return VendorUnavailable(VENDOR, error or f"http_{status}")
    if status == 401:  # unauthorized (expired) or auth_bad_access_token: rebuild the token
        return TokenExpired(VENDOR, error or "unauthorized")
    if status == 429:
        if error == "resource_limited":  # the plan's quota, not a throttle: stop the run cleanly
            return QuotaExhausted(VENDOR, "*", 0, "plan")
        return RateLimited(VENDOR, error or "reach_limit", detail, retry_after=RATE_LIMIT_WAIT_S)
    if status >= 400 or error:
        return VendorRejected(VENDOR, error or f"http_{status}", detail)
    return None


def message_target(username: str, msg_id: str) -> str:
    """The target id of a message sent to `username` (usernames never hold a '/')."""
    return f"{username}/{msg_id}"


def parse_target(target_id: str) -> tuple[str, str] | None:
    """(username, msg_id) of a target id, or None if it is not one of ours."""
    username, sep, msg_id = target_id.partition("/")
    return (username, msg_id) if sep and USERNAME.fullmatch(username) and msg_id else None


@dataclass(frozen=True)
class AgoraOptions(ConnectorOptions):
    org_name: str  # with app_name, the App Key's two halves and the REST path's prefix
    app_name: str
    sender: str = DEFAULT_SENDER  # the `from` of our messages
    token_ttl_s: int = MAX_TOKEN_TTL_S
    # Usernames are lower case by Agora's rule; a deployment that derives them from the
    # employee number says how to get it back, so the directory can match people.
    employee_no_from_username: str | None = None


class AgoraOptionsSchema(OptionsSchema):
    BUILDS = AgoraOptions
    org_name = Text(required=True)
    app_name = Text(required=True)
    sender = Text(validate=validate.Regexp(USERNAME, error="expected an Agora username"))
    # A token must outlive the margin at which the cache refreshes it, and Agora's 24 h.
    token_ttl_s = Whole(
        validate=validate.Range(
            min=TOKEN_REFRESH_MARGIN_S, max=MAX_TOKEN_TTL_S, min_inclusive=False
        )
    )
    employee_no_from_username = Text(validate=validate.OneOf(EMPLOYEE_NO_FROM_USERNAME))


class AgoraConnector:
    """One Agora Chat app: `base_url` is the REST host; options as `AgoraOptions` declares
    them (`org_name` and `app_name` required)."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {
            MESSAGES: StreamCapabilities(
                write=True,
                events=frozenset({EventKind.MESSAGE}),
                no_read_back="Agora Chat documents no read of one sent message, only hourly"
                " history exports (GET /chatmessages/{yyyyMMddHH})",
            )
        }
    )
    OPTIONS = AgoraOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        self._app_id = config.credentials["app_id"].reveal()
        options = options_of(config, AgoraOptions)
        self.prefix = f"{options.org_name}/{options.app_name}"
        self.sender = options.sender
        self.token_ttl_s = options.token_ttl_s
        self.employee_no_from_username = options.employee_no_from_username
        self.tokens = TokenCache(
            ctx.redis,
            f"token:{VENDOR}:{self._app_id}",
            self._build_token,
            TOKEN_REFRESH_MARGIN_S,
            vendor=VENDOR,
        )
        self.client = build_client(config, ctx, classify, self.tokens, app=self._app_id)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        return None  # Agora has no dedupe handle: a resend is a second message

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        if stream != MESSAGES:
            raise self._no_stream(stream)
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        try:
            if kind == "update_card":
                return self._replace_card(request, content)
            if not to or not USERNAME.fullmatch(to):
                return rejected(request, f"expected an Agora username in 'to', got {to!r}")
            if kind == "card":
                msg_id = self._send(to, request, "custom", _card(request.source_id, content))
            elif kind == "message":
                msg_id = self._send(
                    to, request, "txt", {"msg": message_text(content, PLAIN, TEXT_BYTES)}
                )
            else:
                return rejected(request, f"unknown notification kind {kind.value!r}")
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, message_target(to, msg_id))

    def post_to_group(self, chat_id: str, request: WriteRequest) -> WriteResult:
        """A text message in a chat group (`/messages/chatgroups`, `chat_id` its group id), as
        connectors.base.PostsToGroups asks: the title, the text and each field on a line of its
        own, plain text (Agora interprets none of it). Agora has no dedupe handle, so a send
        whose answer is lost is OutcomeUnknown and never resent (`group_dedupe_window_s`)."""
        content = request.notification.content
        rows = content.get("fields")
        lines = [str(content.get("title") or ""), str(content.get("text") or "")]
        if isinstance(rows, Mapping):
            lines += [f"{name}: {value}" for name, value in rows.items() if value not in (None, "")]
        text = PLAIN.fit("\n".join(line for line in lines if line), TEXT_BYTES, Unit.BYTES)
        try:
            _, answer, _ = self.client.request(
                "POST",
                f"{self.prefix}/messages/chatgroups",
                api="messages/chatgroups",
                idempotent=False,  # no dedupe handle: an unanswered send is OutcomeUnknown
                json={
                    "from": self.sender,
                    "to": [chat_id],
                    "type": "txt",
                    "body": {"msg": text},
                    "ext": {EFFECT_KEY_EXT: request.effect_key},
                },
                headers={"Accept": "application/json"},
                auth=bearer,
            )
        except VendorRejected as exc:
            return rejected(request, str(exc))
        msg_id = (answer.get("data") or {}).get(chat_id)
        if not msg_id:
            raise OutcomeUnknown(VENDOR, "no_msg_id", "messages/chatgroups")
        return WriteResult(request.effect_key, WriteStatus.DONE, message_target(chat_id, msg_id))

    def group_dedupe_window_s(self) -> float | None:
        return None  # Agora has no dedupe handle: a resend is a second message

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        raise self._no_stream(stream)

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        """Messages as the callback told them: Agora's REST API has no read of one message or
        of a conversation's latest ones to confirm a callback's unsigned body against (the
        history export, `chatmessages/{hour}`, is hourly and an hour or more late), so
        nothing is added or checked here (webhooks/agora.py says what limits a forgery)."""
        return list(records)

    def list_users(self) -> list[DirectoryUser]:
        """Every user of the app, oldest first, `limit`/`cursor` paged ("get users in batch")."""
        users: list[DirectoryUser] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": USERS_PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            _, body, _ = self.client.request(
                "GET",
                f"{self.prefix}/users",
                api="users",
                idempotent=True,
                params=params,
                headers={"Accept": "application/json"},
                auth=bearer,
            )
            users += [self._directory_user(e) for e in body.get("entities") or []]
            cursor = str(body.get("cursor") or "") or None
            if cursor is None:
                return users
            if cursor in seen:
                raise VendorRejected(VENDOR, "cursor_repeated", "users")
            seen.add(cursor)

    # -- calls ---------------------------------------------------------------------------------
    def _build_token(self) -> tuple[str, float]:
        token = ChatTokenBuilder.build_app_token(
            self._app_id, self.config.credentials["app_certificate"].reveal(), self.token_ttl_s
        )
        return str(token), float(self.token_ttl_s)

    def _send(self, to: str, request: WriteRequest, msg_type: str, body: Mapping[str, Any]) -> str:
        _, answer, _ = self.client.request(
            "POST",
            f"{self.prefix}/messages/users",
            api="messages/users",
            idempotent=False,  # no dedupe handle: an unanswered send is OutcomeUnknown
            json={
                "from": self.sender,
                "to": [to],
                "type": msg_type,
                "body": dict(body),
                "ext": {EFFECT_KEY_EXT: request.effect_key},
            },
            headers={"Accept": "application/json"},
            auth=bearer,
        )
        msg_id = (answer.get("data") or {}).get(to)
        if not msg_id:
            raise OutcomeUnknown(VENDOR, "no_msg_id", "messages/users")
        return str(msg_id)

    def _replace_card(self, request: WriteRequest, content: Mapping[str, Any]) -> WriteResult:
        """Recall the card (if still inside the recall window) and send its successor.

        A retry after the recall finds it already recalled and only sends; the effect key
        keeps the successor from being sent twice.
        """
        earlier = parse_target(request.target_id or "")
        if earlier is None:
            return rejected(request, "update_card needs the target_id of an Agora card")
        to, old_msg_id = earlier
        _, answer, _ = self.client.request(
            "POST",
            f"{self.prefix}/messages/msg_recall",
            api="messages/msg_recall",
            idempotent=True,  # recalling a recalled message changes nothing
            json={"msg_id": old_msg_id, "to": to, "chat_type": "chat", "from": self.sender},
            headers={"Accept": "application/json"},
            auth=bearer,
        )
        recalled = str((answer.get("data") or {}).get("recalled", ""))
        card = _card(request.source_id, content, replaces=old_msg_id)
        msg_id = self._send(to, request, "custom", card)
        return WriteResult(
            request.effect_key,
            WriteStatus.DONE,
            message_target(to, msg_id),
            extra={"replaced": old_msg_id, "recalled": recalled},
        )

    def _directory_user(self, entity: Mapping[str, Any]) -> DirectoryUser:
        username = str(entity["username"])
        employee_no = {"upper": username.upper(), "same": username}.get(
            str(self.employee_no_from_username)
        )
        nickname = entity.get("nickname")
        return DirectoryUser(
            user_id=username,
            employee_no=employee_no,
            email=None,  # Agora keeps no email or mobile for a user
            mobile=None,
            name=str(nickname) if nickname else None,
        )

    def _no_stream(self, stream: str) -> ConfigError:
        return ConfigError(
            "flows",
            [(stream, f"expected stream {MESSAGES!r} (write only) for Agora {self.config.name}")],
        )


# -- messages ----------------------------------------------------------------------------------


def _card(source_id: str, content: Mapping[str, Any], replaces: str = "") -> dict[str, Any]:
    """A card as a custom message: `customExts` is a flat map of strings (at most 16). Agora
    interprets none of it (the client app shows it); outside text is normalised and cut."""
    decide = wants_decision(content)
    buttons = (
        [agora_buttons.encode(value, label) for value, label in decision_values(source_id)]
        if decide
        else []
    )
    texts = {
        "title": (content.get("title"), CARD_TITLE_BYTES, True),
        "text": (content.get("text"), CARD_TEXT_BYTES, False),
        "status": (content.get("status"), CARD_LABEL_BYTES, True),
        "status_label": (content.get("status_label"), CARD_LABEL_BYTES, True),
    }
    exts = {
        "source_id": source_id,
        **{
            name: PLAIN.fit(value, limit, Unit.BYTES, one_line=one_line)
            for name, (value, limit, one_line) in texts.items()
            if value not in (None, "")
        },
        "url": link(content.get("url")),
        "buttons": json.dumps(buttons, ensure_ascii=False) if buttons else None,
        "replaces": replaces,
    }
    return {
        "customEvent": CARD_EVENT,
        "customExts": {k: str(v) for k, v in exts.items() if v not in (None, "")},
    }
