"""The Matrix connector: cards and messages in a homeserver's rooms, decisions read back by /sync.

Written from the client-server API (shared/platform-apis.md section 5, spec.matrix.org), and
tested against a real Synapse. The bot is one user whose access token the config names
(`{env: ...}`); every call carries it as a bearer token.

Sending: `PUT /rooms/{roomId}/send/m.room.message/{txnId}` with the effect key as the txnId.
The spec makes a send idempotent per access token and txnId: a resend returns the first send's
event id and sends nothing. How long the server remembers a txnId is not specified; Synapse
keeps it at least 30 minutes (its transaction cache), which `dedupe_window_s` states. Each
message has a plain `body` and an HTML `formatted_body`, outside text escaped for each
(connectors/markup.py `MATRIX_HTML`).

Rooms: one configured room for everyone (option `room`), or one direct room per person, made
by the bot on first use under a room alias derived from the person's user id
(`#sync-dm-<hash>:<bot's server>`), so a retry or another worker finds the same room instead of
making a second one (createRoom itself is not idempotent; the alias is claimed once).

Decisions: Matrix has no buttons. A card asks for a reaction (✅ / ❌) or a reply ("approve" /
"reject"), buttons/matrix.py. `read_events` reads the bot's rooms incrementally with `/sync`
since-tokens (the caller keeps the token as a cursor, pipeline/matrix_sync.py) and turns each
reaction or reply on one of our cards into a card_action event, which the pipeline's card
handling judges (pipeline/events/cards.py: the sender must map to a current approver). Our own
events and anything else are skipped.

`M_LIMIT_EXCEEDED` (429) is RateLimited with the server's wait (`Retry-After`, else
`retry_after_ms`); a refused token is VendorRejected (a static token has nothing to refresh).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import quote

from marshmallow import validate

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import ConnectorOptions, OptionsSchema, Text, Texts
from sync_pipeline.connectors.base import (
    ConnectorContext,
    DirectoryUser,
    StreamCapabilities,
    build_client,
    options_of,
)
from sync_pipeline.connectors.buttons import matrix as matrix_buttons
from sync_pipeline.connectors.markup import MATRIX_HTML, PLAIN, link
from sync_pipeline.connectors.notify import rejected, wants_decision
from sync_pipeline.errors import (
    ConfigError,
    OutcomeUnknown,
    RateLimited,
    SyncError,
    VendorRejected,
    VendorUnavailable,
)
from sync_pipeline.http import TokenProvider, bearer
from sync_pipeline.records import (
    Page,
    ReadWindow,
    Record,
    WriteRequest,
    WriteResult,
    WriteStatus,
)

VENDOR = "matrix"
MESSAGES = "messages"
API = "_matrix/client/v3"
TXN_WINDOW_S = 1800.0  # Synapse's transaction cache: 30 minutes (the spec names no window)
SYNC_LIMIT = 100  # timeline events per room per /sync
TITLE_CHARS, TEXT_CHARS = 256, 4000
ALIAS_PREFIX = "sync-dm-"
EMPLOYEE_NO_FROM_LOCALPART = ("upper", "same")


def classify(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> SyncError | None:
    """A homeserver's answer as an error, or None: `{errcode, error}` with a matching status."""
    errcode = str(body.get("errcode") or "")
    error = str(body.get("error") or "")
    if status == 429 or errcode == "M_LIMIT_EXCEEDED":
        return RateLimited(VENDOR, errcode or "http_429", error, retry_after=_wait_s(body, headers))
    if status >= 500:
        return VendorUnavailable(VENDOR, errcode or f"http_{status}")
    if status >= 400 or errcode:
        return VendorRejected(VENDOR, errcode or f"http_{status}", error)
    return None


def _wait_s(body: Mapping[str, Any], headers: Mapping[str, str]) -> float | None:
    """The server's wait: `Retry-After` (seconds) when sent, else `retry_after_ms`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return max(0.0, float(lowered["retry-after"]))
    except (KeyError, ValueError):
        pass
    millis = body.get("retry_after_ms")
    if isinstance(millis, int | float) and not isinstance(millis, bool):
        return max(0.0, float(millis) / 1000.0)
    return None


def card_target(room_id: str, event_id: str) -> str:
    """The target id of a message: its room and its event (an event id holds no '/')."""
    return f"{room_id}/{event_id}"


def parse_target(target_id: str) -> tuple[str, str] | None:
    room_id, sep, event_id = target_id.rpartition("/")
    return (room_id, event_id) if sep and room_id and event_id.startswith("$") else None


@dataclass(frozen=True)
class MatrixOptions(ConnectorOptions):
    room: str | None = None  # one room for every card and message; else a direct room each
    users: tuple[str, ...] = ()  # the people the directory lists (Matrix lists nobody)
    employee_no_from_localpart: str | None = None  # "@e00011:hs" -> "E00011" with "upper"


class MatrixOptionsSchema(OptionsSchema):
    BUILDS = MatrixOptions
    room = Text(validate=validate.Regexp(r"^!.+:.+$", error="expected a room id (!id:server)"))
    users = Texts(
        validate=validate.Length(min=1),
    )
    employee_no_from_localpart = Text(validate=validate.OneOf(EMPLOYEE_NO_FROM_LOCALPART))


class _StaticToken(TokenProvider):
    """The bot's access token as configured: nothing to refresh."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get(self) -> str:
        return self._token

    def invalidate(self, token: str) -> bool:
        return False


NO_READ_MESSAGES = (
    "Matrix documents a read of one event (GET /rooms/{roomId}/event/{eventId}), but reading a"
    " flow's cards and results back is not built yet: a record makes several messages, and the"
    " id map keys one target object per record"
)


class MatrixConnector:
    """One bot user on one homeserver: `base_url` is the homeserver, `access_token` the
    bot's; options as `MatrixOptions` declares them."""

    vendor = VENDOR
    STREAMS: ClassVar[Mapping[str, StreamCapabilities]] = MappingProxyType(
        {MESSAGES: StreamCapabilities(write=True, no_read_back=NO_READ_MESSAGES)}
    )
    OPTIONS: ClassVar[type[OptionsSchema]] = MatrixOptionsSchema

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.config = config
        token = config.credentials["access_token"].reveal()
        self.options = options_of(config, MatrixOptions)
        self._redis = ctx.redis
        self.client = build_client(config, ctx, classify, _StaticToken(token), app=config.name)
        self._me: str | None = None
        self.sync_limit = SYNC_LIMIT  # timeline events per room per /sync

    # -- the connector seam ------------------------------------------------------------------
    def classify(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> SyncError | None:
        return classify(status, body, headers)

    def dedupe_window_s(self, stream: str) -> float | None:
        return TXN_WINDOW_S

    def can_update_card(self, age_s: float, handles: Mapping[str, str]) -> bool:
        return True  # an edit (m.replace) has no time limit

    def read_page(
        self, stream: str, window: ReadWindow, page_token: str | None, limit: int
    ) -> Page:
        raise self._no_stream(stream)

    def hydrate(self, stream: str, records: Sequence[Record]) -> list[Record]:
        return list(records)

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        if stream != MESSAGES:
            raise self._no_stream(stream)
        note = request.notification
        kind, to, content = note.kind.value, note.to, note.content
        try:
            if kind == "update_card":
                return self._edit(request, content)
            if not to or not to.startswith("@") or ":" not in to:
                return rejected(request, f"expected a Matrix user id in 'to', got {to!r}")
            if kind not in ("card", "message"):
                return rejected(request, f"unknown notification kind {kind!r}")
            room_id = self.room_for(to)
            body = _card(request.source_id, content) if kind == "card" else _message(content)
            event_id = self._send(room_id, request.effect_key, body)
        except VendorRejected as exc:
            return rejected(request, str(exc))
        return WriteResult(request.effect_key, WriteStatus.DONE, card_target(room_id, event_id))

    def list_users(self) -> list[DirectoryUser]:
        """The people the `users` option names, each with the display name of their profile."""
        users = []
        for user_id in self.options.users:
            _, body, _ = self.client.request(
                "GET",
                f"{API}/profile/{quote(user_id, safe='')}",
                api="profile",
                idempotent=True,
                auth=bearer,
            )
            localpart = user_id[1:].partition(":")[0]
            employee_no = {"upper": localpart.upper(), "same": localpart}.get(
                str(self.options.employee_no_from_localpart)
            )
            name = body.get("displayname")
            users.append(
                DirectoryUser(user_id, employee_no, None, None, str(name) if name else None)
            )
        return users

    # -- reading decisions ---------------------------------------------------------------------
    def sync(self, since: str | None, timeout_ms: int = 0) -> Mapping[str, Any]:
        """One /sync of the bot's rooms from `since` (None: the first, which gives only the
        recent timeline). The caller keeps `next_batch` and decodes (`decisions`)."""
        params: dict[str, Any] = {
            "timeout": timeout_ms,
            "filter": json.dumps(
                {
                    "room": {"timeline": {"limit": self.sync_limit}},
                    "presence": {"not_types": ["*"]},
                }
            ),
        }
        if since:
            params["since"] = since
        _, body, _ = self.client.request(
            "GET", f"{API}/sync", api="sync", idempotent=True, params=params, auth=bearer
        )
        return body

    def timeline(self, room_id: str, room: Mapping[str, Any], since: str | None) -> list[Any]:
        """A room's timeline events since `since`, oldest first: as /sync gave them, with the
        gap before them filled from `/messages` when /sync cut it (`limited`), back to
        `since`. A first read (no `since`) takes only what /sync gave."""
        timeline = room.get("timeline") or {}
        events = list(timeline.get("events") or [])
        token = timeline.get("prev_batch")
        if not (timeline.get("limited") and token and since):
            return events
        older: list[Any] = []
        path = f"{API}/rooms/{quote(room_id, safe='')}/messages"
        while token:
            params = {"from": token, "to": since, "dir": "b", "limit": self.sync_limit}
            _, page, _ = self.client.request(
                "GET", path, api="messages", idempotent=True, params=params, auth=bearer
            )
            chunk = list(page.get("chunk") or [])
            older += chunk
            following = page.get("end")
            token = str(following) if chunk and following and following != token else None
        return [*reversed(older), *events]

    def joined_invites(self, synced: Mapping[str, Any]) -> None:
        """Join the rooms the bot was invited to (a configured room shared with it)."""
        for room_id in (synced.get("rooms") or {}).get("invite") or {}:
            self.client.request(
                "POST",
                f"{API}/join/{quote(room_id, safe='')}",
                api="join",
                idempotent=True,
                json={},
                auth=bearer,
            )

    def card_source(self, room_id: str, event_id: str) -> str | None:
        """The source id a card of ours carries, None when the event is not one."""
        try:
            _, body, _ = self.client.request(
                "GET",
                f"{API}/rooms/{quote(room_id, safe='')}/event/{quote(event_id, safe='')}",
                api="event",
                idempotent=True,
                auth=bearer,
            )
        except VendorRejected:  # not found, or out of the bot's sight
            return None
        content = body.get("content")
        if body.get("sender") != self.me() or not isinstance(content, Mapping):
            return None
        source_id = content.get(matrix_buttons.SOURCE_ID_KEY)
        return source_id if isinstance(source_id, str) and source_id else None

    def me(self) -> str:
        """The bot's own user id (whoami), cached for the connector's life."""
        if self._me is None:
            _, body, _ = self.client.request(
                "GET", f"{API}/account/whoami", api="whoami", idempotent=True, auth=bearer
            )
            self._me = str(body["user_id"])
        return self._me

    # -- rooms and sends -------------------------------------------------------------------------
    def room_for(self, user_id: str) -> str:
        """The configured room, or the person's direct room, made on first use."""
        if self.options.room:
            return self.options.room
        server = self.me().partition(":")[2]
        name = ALIAS_PREFIX + hashlib.sha256(user_id.encode()).hexdigest()[:24]
        alias = f"#{name}:{server}"
        found = self._room_of(alias)
        if found is not None:
            return found
        try:
            _, made, _ = self.client.request(
                "POST",
                f"{API}/createRoom",
                api="createRoom",
                idempotent=False,
                json={
                    "preset": "trusted_private_chat",
                    "is_direct": True,
                    "invite": [user_id],
                    "room_alias_name": name,
                    "name": "Approvals",
                },
                auth=bearer,
            )
        except VendorRejected as exc:
            if exc.code != "M_ROOM_IN_USE":  # another worker made it first: use theirs
                raise
            again = self._room_of(alias)
            if again is None:
                raise
            return again
        return str(made["room_id"])

    def _room_of(self, alias: str) -> str | None:
        try:
            _, body, _ = self.client.request(
                "GET",
                f"{API}/directory/room/{quote(alias, safe='')}",
                api="directory",
                idempotent=True,
                auth=bearer,
            )
        except VendorRejected as exc:
            if exc.code == "M_NOT_FOUND":
                return None
            raise
        return str(body["room_id"])

    def _send(self, room_id: str, txn_id: str, content: Mapping[str, Any]) -> str:
        """PUT with the effect key as txnId: a resend is the same event, not a second one."""
        path = f"{API}/rooms/{quote(room_id, safe='')}/send/m.room.message/{quote(txn_id, safe='')}"
        _, answer, _ = self.client.request(
            "PUT", path, api="send", idempotent=True, json=dict(content), auth=bearer
        )
        event_id = answer.get("event_id")
        if not event_id:
            raise OutcomeUnknown(VENDOR, "no_event_id", "send")
        return str(event_id)

    def _edit(self, request: WriteRequest, content: Mapping[str, Any]) -> WriteResult:
        """The card replaced by an edit (`m.replace`) showing the new content."""
        earlier = parse_target(request.target_id or "")
        if earlier is None:
            return rejected(request, "update_card needs the target_id of a Matrix card")
        room_id, event_id = earlier
        new = _card(request.source_id, content)
        edit = {
            "msgtype": "m.text",
            "body": "* " + str(new["body"]),
            "format": "org.matrix.custom.html",
            "formatted_body": "* " + str(new["formatted_body"]),
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        edit_id = self._send(room_id, request.effect_key, edit)
        return WriteResult(
            request.effect_key,
            WriteStatus.DONE,
            request.target_id,
            extra={"edit": edit_id},
        )

    def _no_stream(self, stream: str) -> ConfigError:
        return ConfigError(
            "flows",
            [(stream, f"expected stream {MESSAGES!r} (write only) for Matrix {self.config.name}")],
        )


# -- messages ----------------------------------------------------------------------------------


def _message(content: Mapping[str, Any]) -> dict[str, Any]:
    text = content.get("text") or content.get("title") or ""
    url = link(content.get("url"))
    plain = PLAIN.fit(text, TEXT_CHARS)
    html = MATRIX_HTML.fit(text, TEXT_CHARS).replace("\n", "<br>")
    if url:
        plain += f"\n{url}"
        html += f'<br><a href="{MATRIX_HTML.fit(url, 4 * len(url))}">Open in the OA</a>'
    return {
        "msgtype": "m.text",
        "body": plain,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    }


def _card(source_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """A card: bold title, status, text, the OA link, and how to decide while pending."""
    title = content.get("title") or ""
    label = content.get("status_label") or content.get("status") or ""
    text = content.get("text") or ""
    url = link(content.get("url"))
    plain = [PLAIN.fit(title, TITLE_CHARS, one_line=True)]
    html = [f"<b>{MATRIX_HTML.fit(title, TITLE_CHARS, one_line=True)}</b>"]
    if label:
        plain.append(PLAIN.fit(label, TITLE_CHARS, one_line=True))
        html.append(f"<i>{MATRIX_HTML.fit(label, TITLE_CHARS, one_line=True)}</i>")
    if text:
        plain.append(PLAIN.fit(text, TEXT_CHARS))
        html.append(MATRIX_HTML.fit(text, TEXT_CHARS).replace("\n", "<br>"))
    if url:
        plain.append(url)
        html.append(f'<a href="{MATRIX_HTML.fit(url, 4 * len(url))}">Open in the OA</a>')
    if wants_decision(content):
        plain.append(matrix_buttons.HOW_TO)
        html.append(MATRIX_HTML.fit(matrix_buttons.HOW_TO, 200))
    return {
        "msgtype": "m.text",
        "body": "\n".join(plain),
        "format": "org.matrix.custom.html",
        "formatted_body": "<br>".join(html),
        matrix_buttons.SOURCE_ID_KEY: source_id,
    }
