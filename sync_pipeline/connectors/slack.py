"""The Slack connector: approval cards with Block Kit buttons, messages, card updates, and the
user directory.

Written from Slack's Web API contract (shared/platform-apis.md section 4, docs.slack.dev
method pages), never from the sandbox emulator. `base_url` is the Web API's root
(`https://slack.com/api/`); every call carries the bot token (`xoxb-`, which does not expire
without token rotation, and token rotation is not supported) as a Bearer header. Answers are
HTTP 200 with `ok`; a failure names itself in `error`, and a rate limit is HTTP 429 with
`Retry-After` in seconds.

A card or message goes to a person's DM with the app (`conversations.open`, then
`chat.postMessage` to that channel); its target id is "<channel>:<ts>", what `chat.update`
needs. Slack has no dedupe handle for `chat.postMessage`, so a resend is a second message and
`dedupe_window_s` is None: every message instead carries our effect key in its message
metadata (`metadata.event_payload.effect_key`, Slack's documented way to attach data to a
message), and an effect whose answer was lost is looked up in the DM's history
(`conversations.history` with `include_all_metadata`), found rather than sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from marshmallow import validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Whole
from sync_pipeline.connectors.base import (
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import decision_values
from sync_pipeline.connectors.buttons import slack as slack_buttons
from sync_pipeline.connectors.markup import PLAIN, SLACK_MRKDWN, link
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
from sync_pipeline.http import bearer
from sync_pipeline.records import (
    NotifyKind,
    Page,
    ReadWindow,
    Record,
    WriteRequest,
    WriteResult,
    WriteStatus,
)

VENDOR = "slack"
MESSAGES = "messages"
METADATA_EVENT = "sync_pipeline_effect"  # metadata.event_type of every message we send
USERS_PAGE_SIZE = 200  # users.list: Slack recommends no more than 200 a page
HISTORY_PAGE_SIZE = 200
DEFAULT_LOOK_UP_PAGES = 5  # conversations.history pages read back for one lost answer
DEFAULT_RETRY_AFTER_S = 1.0
TEXT_CHARS = 3000  # a section block's text (msg_blocks_too_long past it)
MESSAGE_CHARS = 4000  # a message's text: Slack truncates at 40,000; keep messages readable
TITLE_CHARS = 150  # a header block's plain_text
FIELD_CHARS = 2000  # a section field's text
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
THROTTLED = frozenset({"ratelimited", "rate_limited"})
SLACKBOT = "USLACKBOT"


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """Slack's answer as an error, or None (platform-apis.md section 4, error table)."""
    error = str(body.get("error") or "")
    if status == 429 or error in THROTTLED:
        return RateLimited(VENDOR, error or "ratelimited", retry_after=_retry_after(headers))
    if status >= 500 or error in TRANSIENT:
        return VendorUnavailable(VENDOR, error or f"http_{status}")
    if error == "token_expired":
        return TokenExpired(VENDOR, error)
    if status >= 400 and not error:
        return VendorRejected(VENDOR, f"http_{status}")
    if body.get("ok") is True or "ok" not in body:
        return None  # an answer without `ok` is no answer: the caller finds no ts or id in it
    messages = (body.get("response_metadata") or {}).get("messages") or []
    detail = "; ".join(str(m) for m in messages)[:300] if isinstance(messages, list) else ""
    return VendorRejected(VENDOR, error or "not_ok", detail)


def _retry_after(headers: Mapping[str, str]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return DEFAULT_RETRY_AFTER_S


def message_target(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def parse_target(target_id: str) -> tuple[str, str] | None:
    """(channel, ts) of a target id of ours, or None."""
    channel, sep, ts = target_id.partition(":")
    return (channel, ts) if sep and channel and ts else None


@dataclass(frozen=True)
class SlackOptions(ConnectorOptions):
    # How many pages of a DM's history a lost answer is looked for in (200 messages each).
    look_up_pages: int = DEFAULT_LOOK_UP_PAGES


class SlackOptionsSchema(OptionsSchema):
    BUILDS = SlackOptions
    look_up_pages = Whole(validate=validate.Range(min=1, max=50))


class BotToken:
    """The bot token as the HTTP client's token provider: it never changes, so there is
    nothing to refresh (`invalidate` drops nothing)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get(self) -> str:
        return self._token

    def invalidate(self, token: str) -> bool:
        return False


NO_READ_MESSAGES = (
    "Slack documents a read of a conversation's history (conversations.history, which finds a"
    " lost post by its metadata), but reading a flow's cards back is not built yet: a record"
    " makes several messages, and the id map keys one target object per record"
)


class SlackConnector:
    """One Slack app installed in one workspace: `base_url` is the Web API root; credential
    `bot_token`; options as `SlackOptions` declares them."""

    vendor = VENDOR
    STREAMS = MappingProxyType(
        {MESSAGES: StreamCapabilities(write=True, no_read_back=NO_READ_MESSAGES)}
    )
    OPTIONS = SlackOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        token = config.credentials["bot_token"].reveal()
        options = options_of(config, SlackOptions)
        self.look_up_pages = options.look_up_pages
        # The app's rate limits, breaker and quota are keyed by the token's workspace part
        # (xoxb-<team>-...), never by the secret itself.
        app = token.split("-")[1] if token.count("-") >= 2 else config.name
        self.client = build_client(config, ctx, classify, BotToken(token), app=app)
        self._dms: dict[str, str] = {}  # user id -> the app's DM channel with them (never changes)

    # -- the connector seam --------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        return None  # chat.postMessage has no dedupe handle: a resend is a second message

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        return True  # an app may chat.update its own messages at any time

    def looks_up(self, stream: str) -> bool:
        return stream == MESSAGES

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        self._expect_messages(stream)
        note = request.notification
        kind, to, content = note.kind, note.to, note.content
        try:
            if kind == NotifyKind.UPDATE_CARD:
                return self._update_card(request, content)
            if not to:
                return rejected(request, f"a {kind.value} needs a Slack user id in 'to'")
            if kind == NotifyKind.CARD:
                text, blocks = _card(request.source_id, content)
            elif kind == NotifyKind.MESSAGE:
                text, blocks = message_text(content, SLACK_MRKDWN, MESSAGE_CHARS), []
            else:
                return rejected(request, f"unknown notification kind {kind.value!r}")
            channel = self._dm(to)
            ts = self._post(channel, text, blocks, request)
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, message_target(channel, ts))

    def look_up(self, stream: str, request: WriteRequest) -> WriteResult | None:
        """The message carrying `request`'s effect key in its metadata, in the recipient's DM
        with the app, newest first over `look_up_pages` pages; None when it is not there
        (sending it now is safe). An update is the same update again: never looked up."""
        self._expect_messages(stream)
        note = request.notification
        if note.kind not in (NotifyKind.CARD, NotifyKind.MESSAGE) or not note.to:
            return None
        try:
            channel = self._dm(note.to)
        except VendorRejected as exc:
            return rejected(request, str(exc))
        cursor: str | None = None
        for _ in range(self.look_up_pages):
            params: dict[str, Any] = {
                "channel": channel,
                "limit": HISTORY_PAGE_SIZE,
                "include_all_metadata": "true",
            }
            if cursor:
                params["cursor"] = cursor
            body = self._call("GET", "conversations.history", idempotent=True, params=params)
            for message in body.get("messages") or []:
                if _effect_key_of(message) == request.effect_key:
                    target = message_target(channel, str(message.get("ts", "")))
                    return WriteResult(request.effect_key, WriteStatus.DONE, target)
            cursor = str((body.get("response_metadata") or {}).get("next_cursor") or "")
            if not body.get("has_more") or not cursor:
                return None
        return None

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        raise self._no_stream(stream)

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        return list(records)

    def list_users(self) -> list[DirectoryUser]:
        """Every active person of the workspace (users.list, cursor-paged until the cursor is
        empty; a cursor that comes back again stops the read)."""
        users: list[DirectoryUser] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": USERS_PAGE_SIZE}
            if cursor:
                params["cursor"] = cursor
            body = self._call("GET", "users.list", idempotent=True, params=params)
            users += [
                _directory_user(member)
                for member in body.get("members") or []
                if isinstance(member, Mapping) and _is_person(member)
            ]
            cursor = str((body.get("response_metadata") or {}).get("next_cursor") or "") or None
            if cursor is None:
                return users
            if cursor in seen:
                raise VendorRejected(VENDOR, "cursor_repeated", "users.list")
            seen.add(cursor)

    # -- calls ---------------------------------------------------------------------------------
    def _call(
        self,
        http_method: str,
        method: str,
        *,
        idempotent: bool,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any]:
        _, body, _ = self.client.request(
            http_method,
            method,
            api=method,
            idempotent=idempotent,
            params=params,
            json=json,
            headers={"Content-Type": "application/json; charset=utf-8"} if json else None,
            auth=bearer,
        )
        return body

    def _dm(self, user_id: str) -> str:
        """The app's DM channel with `user_id`, opened once per process (a DM's id is fixed)."""
        if user_id in self._dms:
            return self._dms[user_id]
        body = self._call("POST", "conversations.open", idempotent=True, json={"users": user_id})
        channel = (body.get("channel") or {}).get("id")
        if not channel:
            raise VendorRejected(VENDOR, "no_channel", "conversations.open")
        self._dms[user_id] = str(channel)
        return str(channel)

    def _post(
        self, channel: str, text: str, blocks: list[dict[str, Any]], request: WriteRequest
    ) -> str:
        payload: dict[str, Any] = {
            "channel": channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
            "metadata": {
                "event_type": METADATA_EVENT,
                "event_payload": {
                    "effect_key": request.effect_key,
                    "source_id": request.source_id,
                },
            },
        }
        if blocks:
            payload["blocks"] = blocks
        # No dedupe handle: an unanswered post is OutcomeUnknown, settled by look_up.
        body = self._call("POST", "chat.postMessage", idempotent=False, json=payload)
        ts = body.get("ts")
        if not ts:
            raise OutcomeUnknown(VENDOR, "no_ts", "chat.postMessage")
        return str(ts)

    def _update_card(self, request: WriteRequest, content: Mapping[str, Any]) -> WriteResult:
        target = parse_target(request.target_id or "")
        if target is None:
            return rejected(request, "update_card needs the target_id of a Slack card")
        channel, ts = target
        text, blocks = _card(request.source_id, content)
        self._call(
            "POST",
            "chat.update",
            idempotent=True,  # the same update again changes nothing
            json={"channel": channel, "ts": ts, "text": text, "blocks": blocks},
        )
        return WriteResult(request.effect_key, WriteStatus.DONE, request.target_id)

    def _expect_messages(self, stream: str) -> None:
        if stream != MESSAGES:
            raise self._no_stream(stream)

    def _no_stream(self, stream: str) -> ConfigError:
        return ConfigError(
            "flows",
            [(stream, f"expected stream {MESSAGES!r} (write only) for Slack {self.config.name}")],
        )


# -- messages ----------------------------------------------------------------------------------
def _card(source_id: str, content: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(notification text, Block Kit blocks) of a card: a header, the text and the status as
    mrkdwn (escaped), then the Open link and, while a decision is wanted, Approve / Reject."""
    title = PLAIN.fit(content.get("title") or "Notification", TITLE_CHARS, one_line=True)
    text = SLACK_MRKDWN.fit(content.get("text") or "", TEXT_CHARS)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}}
    ]
    section: dict[str, Any] = {"type": "section"}
    if text:
        section["text"] = {"type": "mrkdwn", "text": text}
    label = content.get("status_label")
    if label not in (None, ""):
        shown = SLACK_MRKDWN.fit(label, FIELD_CHARS - 12, one_line=True)
        section["fields"] = [{"type": "mrkdwn", "text": f"*Status*\n{shown}"}]
    if len(section) > 1:
        blocks.append(section)
    elements: list[dict[str, Any]] = []
    url = link(content.get("url"))
    if url:
        elements.append(
            {
                "type": "button",
                "action_id": "open_link",
                "text": {"type": "plain_text", "text": "Open"},
                "url": url,
            }
        )
    if wants_decision(content):
        elements += [slack_buttons.encode(value, lbl) for value, lbl in decision_values(source_id)]
    if elements:
        blocks.append({"type": "actions", "block_id": "sync_decision", "elements": elements})
    fallback = SLACK_MRKDWN.fit(content.get("title") or content.get("text") or "", TITLE_CHARS)
    return fallback or "Notification", blocks


def _effect_key_of(message: Mapping[str, Any]) -> str | None:
    metadata = message.get("metadata")
    if not isinstance(metadata, Mapping) or metadata.get("event_type") != METADATA_EVENT:
        return None
    payload = metadata.get("event_payload")
    return str(payload.get("effect_key")) if isinstance(payload, Mapping) else None


def _is_person(member: Mapping[str, Any]) -> bool:
    return not (member.get("deleted") or member.get("is_bot") or member.get("id") == SLACKBOT)


def _directory_user(member: Mapping[str, Any]) -> DirectoryUser:
    profile = member.get("profile")
    profile = profile if isinstance(profile, Mapping) else {}
    name = member.get("real_name") or profile.get("real_name")
    return DirectoryUser(
        user_id=str(member["id"]),
        employee_no=None,  # Slack keeps no employee number: people match by email
        email=str(profile["email"]) if profile.get("email") else None,
        mobile=str(profile["phone"]) if profile.get("phone") else None,
        name=str(name) if name else None,
    )
