"""Agora Chat (声网 IM) REST emulator: app tokens, users, messages, groups, history, callbacks.

Written from the vendor's contract (shared/platform-apis.md §6, the AgoraIO/Docs-Source REST
pages and AgoraIO/Tools' token builder), never from our connector. Paths live under
`/{org_name}/{app_name}/`; answers carry the Easemob-style envelope (`action`, `application`,
`uri`, `path`, `entities`/`data`, `timestamp`, `duration`, `organization`, `applicationName`)
and errors the Easemob-style body `{error, exception, timestamp, duration, error_description}`.

Tokens are not issued here: clients build AccessToken2 app tokens locally from the App ID and
App Certificate (`build_app_token` below does it the way ChatTokenBuilder2 does). The emulator
parses and verifies them: signature, expiry, chat service with the app privilege.

Cards: Agora Chat has no interactive card and no edit API. Cards travel as custom messages
(`type: "custom"`, `customEvent` + `customExts`). The sandbox's "card update" is what a client
must do against the real service: recall the old message (`messages/msg_recall`, within the
recall window) and send a new custom message; both land in the ledger. A user pressing a card
button is the user sending a custom message back, which reaches the app through the
post-delivery callback (`press({"kind": "message", "type": "custom", ...})`).

Settings (platform "agora"): `callback_url`, `rate_limit_scale` (1 = the vendor's limits, 0 =
off), `recall_window_s` (default 120), `history_retention_s` (default 3 days) and
`history_url_ttl_s` (default 1800).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import itertools
import json
import re
import secrets
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode, urlparse

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.core import (
    SandboxStore,
    SlidingWindow,
    TokenState,
    deliver_callback,
    now_ms,
    scaled_limit,
)
from sync_pipeline.devtools.sandbox.emulator import Emulator, PressError
from sync_pipeline.devtools.sandbox.world import EPOCH_MS, World

PLATFORM = "agora"
AT2_VERSION = "007"
SERVICE_CHAT = 5
PRIVILEGE_USER = 1
PRIVILEGE_APP = 2
# Trailing fields after the privilege map, per AccessToken2 service type, so a token that also
# carries other services can be walked: (strings, int16s).
SERVICE_TAILS = {1: (2, 0), 2: (1, 0), 4: (0, 0), 5: (1, 0), 7: (2, 1)}

USERNAME = re.compile(r"^[a-z0-9_.-]{1,64}$")
CUSTOM_EVENT = re.compile(r"^[a-zA-Z0-9\-_/.]{1,32}$")
HOUR = re.compile(r"^\d{10}$")
MSG_TYPES = ("txt", "img", "audio", "video", "file", "loc", "cmd", "custom")
MAX_USER_RECIPIENTS = 600
MAX_GROUP_RECIPIENTS = 3
MAX_BODY_EXT_BYTES = 5 * 1024
RECALL_WINDOW_S = 120  # default; the console can extend it to 7 days
HISTORY_RETENTION_S = 3 * 86_400  # default plan retention
HISTORY_URL_TTL_S = 1800  # the doc's example link expires 30 min after it is issued
HOUR_MS = 3_600_000

# (calls, window seconds) per App Key and method, as the REST pages state them.
LIMITS: dict[str, tuple[int, float]] = {
    "users": (100, 1.0),
    "messages": (100, 1.0),
    "recall": (100, 1.0),
    "chatgroups": (100, 1.0),
    "history": (10, 60.0),
}
PER_GROUP_MSGS_PER_S = 20

# The `exception` class names follow Easemob's REST answers (unconfirmed for Agora Chat).
EXCEPTIONS = {
    "unauthorized": "EasemobUnauthorizedException",
    "auth_bad_access_token": "EasemobSecurityException",
    "illegal_argument": "java.lang.IllegalArgumentException",
    "json_parse": "com.fasterxml.jackson.core.JsonParseException",
    "duplicate_unique_property_exists": "DuplicateUniquePropertyExistsException",
    "service_resource_not_found": "EasemobServiceResourceNotFoundException",
    "resource_not_found": "EasemobResourceNotFoundException",
    "organization_application_not_found": "OrganizationApplicationNotFoundException",
    "storage_object_not_found": "EasemobStorageObjectNotFoundException",
    "invalid_parameter": "EasemobInvalidParameterException",
    "reach_limit": "EasemobRateLimitException",
    "web_application": "javax.ws.rs.WebApplicationException",
}
MSG_EXPIRED = "Unable to authenticate due to expired access token."
MSG_CORRUPT = "Unable to authenticate due to corrupt access token."
MSG_FOREIGN = "Unable to authenticate."
MSG_REGISTRATION_CLOSED = "Registration is not open, please contact the app admin."


# -- AccessToken2 ----------------------------------------------------------------------------
def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _pack_string(value: bytes) -> bytes:
    return _u16(len(value)) + value


def _signature(app_certificate: str, issue_ts: int, salt: int, info: bytes) -> bytes:
    """HMAC-SHA256 chain: key u32(issue_ts) over the certificate, then u32(salt), then info."""
    signing = hmac.new(_u32(issue_ts), app_certificate.encode(), hashlib.sha256).digest()
    signing = hmac.new(_u32(salt), signing, hashlib.sha256).digest()
    return hmac.new(signing, info, hashlib.sha256).digest()


def _build(
    app_id: str,
    app_certificate: str,
    expire_s: int,
    privilege: int,
    user_id: str,
    issue_ts: int | None,
    salt: int | None,
) -> str:
    issue = int(time.time()) if issue_ts is None else issue_ts
    salt = secrets.randbelow(99_999_999) + 1 if salt is None else salt
    chat = _u16(SERVICE_CHAT) + _u16(1) + _u16(privilege) + _u32(expire_s)
    chat += _pack_string(user_id.encode())
    info = _pack_string(app_id.encode()) + _u32(issue) + _u32(expire_s) + _u32(salt) + _u16(1)
    info += chat
    signature = _signature(app_certificate, issue, salt, info)
    packed = zlib.compress(_pack_string(signature) + info)
    return AT2_VERSION + base64.b64encode(packed).decode()


def build_app_token(
    app_id: str,
    app_certificate: str,
    expire_s: int,
    *,
    issue_ts: int | None = None,
    salt: int | None = None,
) -> str:
    """An Agora Chat app token (AccessToken2, chat service, app privilege), as
    ChatTokenBuilder2.build_app_token makes it; REST calls take only these.

    `expire_s` counts from issue time (at most 24 h). For curl dry-runs:
    `python -c "from sync_pipeline.devtools.sandbox.agora import build_app_token as b;
    print(b(APP_ID, APP_CERT, 3600))"`.
    """
    return _build(app_id, app_certificate, expire_s, PRIVILEGE_APP, "", issue_ts, salt)


def build_user_token(
    app_id: str, app_certificate: str, user_id: str, expire_s: int, *, issue_ts: int | None = None
) -> str:
    """A user token (privilege 1): what the client SDKs log in with; REST refuses it."""
    return _build(app_id, app_certificate, expire_s, PRIVILEGE_USER, user_id, issue_ts, None)


@dataclass(frozen=True)
class AccessToken2:
    """The parts of a parsed AccessToken2 that validation needs."""

    app_id: str
    issue_ts: int
    expire: int  # seconds after issue_ts
    salt: int
    services: dict[int, dict[int, int]]  # service type -> privilege -> expire (s after issue)
    chat_user_id: str | None
    signature: bytes
    signed_info: bytes

    def verifies(self, app_certificate: str) -> bool:
        expected = _signature(app_certificate, self.issue_ts, self.salt, self.signed_info)
        return hmac.compare_digest(expected, self.signature)

    def expires_at(self, privilege: int) -> int:
        """Unix seconds when the token, or the given chat privilege, stops working."""
        chat = self.services.get(SERVICE_CHAT, {})
        return self.issue_ts + min(self.expire, chat.get(privilege, 0))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError("token is truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return int(value)

    def string(self) -> bytes:
        size = self.take("<H")
        if self.at + size > len(self.data):
            raise ValueError("token is truncated")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value


def parse_access_token(token: str) -> AccessToken2:
    """Parse "007" + b64(zlib(pack_string(signature) + info)); ValueError if malformed."""
    if not token.startswith(AT2_VERSION):
        raise ValueError("not an AccessToken2")
    try:
        raw = zlib.decompress(base64.b64decode(token[len(AT2_VERSION) :], validate=True))
    except (ValueError, zlib.error):
        raise ValueError("token is not base64 of zlib data") from None
    reader = _Reader(raw)
    signature = reader.string()
    info_start = reader.at
    app_id = reader.string().decode(errors="replace")
    issue_ts, expire, salt = reader.take("<I"), reader.take("<I"), reader.take("<I")
    services: dict[int, dict[int, int]] = {}
    chat_user: str | None = None
    for _ in range(reader.take("<H")):
        service = reader.take("<H")
        if service not in SERVICE_TAILS:
            raise ValueError(f"unknown service type {service}")
        privileges = {reader.take("<H"): reader.take("<I") for _ in range(reader.take("<H"))}
        strings, shorts = SERVICE_TAILS[service]
        tail = [reader.string() for _ in range(strings)]
        for _ in range(shorts):
            reader.take("<h")
        services[service] = privileges
        if service == SERVICE_CHAT:
            chat_user = tail[0].decode(errors="replace")
    if reader.at != len(raw):
        raise ValueError("trailing bytes after the services")
    return AccessToken2(
        app_id, issue_ts, expire, salt, services, chat_user, signature, raw[info_start:]
    )


def callback_security(call_id: str, secret: str, timestamp: int) -> str:
    """The post-delivery callback's `security`: md5_hex(callId + secret + timestamp)."""
    return hashlib.md5((call_id + secret + str(timestamp)).encode()).hexdigest()  # noqa: S324


# -- emulator --------------------------------------------------------------------------------
class AgoraError(Exception):
    """A vendor error answer, raised in a handler and rendered by `_endpoint`."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, error, description)
        self.status, self.error, self.description = status, error, description


def _bad(description: str) -> AgoraError:
    return AgoraError(400, "illegal_argument", description)


Handler = Callable[[Request, Any], Any]


USERS_BATCH_MAX = 100  # GET /users `limit`, per the user-management page


class AgoraEmulator(Emulator):
    """Agora Chat REST at `/{org_name}/{app_name}/`, with its tokens, limits and callbacks."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Agora Chat REST"
    port_offset: ClassVar[int] = 5

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = SlidingWindow()
        self._verified: dict[str, int] = {}  # token -> unix expiry, once its signature checked
        self._sequence = itertools.count()
        self._lock = threading.Lock()

    # -- seam ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        app = "/{org_name}/{app_name}"
        table: list[tuple[str, str, Handler, bool]] = [
            ("POST", "/users", self._register, True),
            ("GET", "/users", self._list_users, False),
            ("GET", "/users/{username}", self._get_user, False),
            ("POST", "/messages/users", self._send_to_users, False),
            ("POST", "/messages/chatgroups", self._send_to_groups, False),
            ("POST", "/messages/msg_recall", self._recall, False),
            ("POST", "/chatgroups", self._create_group, False),
            ("GET", "/chatgroups/{group_id}/users", self._group_members, False),
            ("GET", "/chatmessages/{hour}", self._history, False),
        ]
        routes: list[BaseRoute] = [
            Route(app + path, self._endpoint(fn, registration=reg), methods=[method])
            for method, path, fn, reg in table
        ]
        routes.append(
            Route(
                "/_oss/chatmessages/{org_name}/{app_name}/{hour}", self._download, methods=["GET"]
            )
        )
        # An invalid request URL is answered 500 web_application (HTTP status codes page).
        everything = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        routes.append(Route("/{path:path}", self._invalid_url, methods=everything))
        return routes

    def credentials(self) -> dict[str, str]:
        org = self._secret("org_name", lambda: str(10_000_000 + secrets.randbelow(89_999_999)))
        app = self._secret("app_name", lambda: str(100_000 + secrets.randbelow(899_999)))
        return {
            "host": self.base_url,
            "org_name": org,
            "app_name": app,
            "app_key": f"{org}#{app}",
            "app_id": self._secret("app_id", lambda: secrets.token_hex(16)),
            "app_certificate": self._secret("app_certificate", lambda: secrets.token_hex(16)),
            "callback_secret": self._secret("callback_secret", lambda: secrets.token_hex(16)),
            "application": self._secret("application", lambda: str(uuid.uuid4())),
        }

    def throttle_response(self) -> Response:
        return self._error(AgoraError(429, "reach_limit", "This request has reached API limit."))

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """Users (username from the employee number) and groups; Agora has no approvals."""
        users = self.store.put_many(
            PLATFORM,
            "user",
            (
                (
                    _username(p.employee_no),
                    _user(
                        _username(p.employee_no),
                        str(uuid.UUID(_hex(world.seed, p.employee_no))),
                        p.name,
                        created_ms=EPOCH_MS,  # from the world, so reseeding changes nothing
                    ),
                    p.index,
                    None,
                )
                for p in world.people
            ),
        )
        groups = self.store.put_many(
            PLATFORM,
            "group",
            (
                (
                    _group_id(world.seed, g.id),
                    {
                        "groupid": _group_id(world.seed, g.id),
                        "groupname": g.name,
                        "description": f"Project {g.project_id}" if g.project_id else g.name,
                        "public": False,
                        "maxusers": 200,
                        "allowinvites": False,
                        "membersonly": True,
                        "invite_need_confirm": False,
                        "owner": _username(g.owner_no),
                        "members": [_username(n) for n in g.member_nos if n != g.owner_no],
                        "custom": g.project_id or "",
                    },
                    i,
                    None,
                )
                for i, g in enumerate(world.groups, start=1)
            ),
        )
        return {"users": users, "groups": groups}

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """A user sends a message from a client SDK: it is stored and the post-delivery
        callback goes to the `callback_url` setting, re-sent once if it fails."""
        if action.get("kind") != "message":
            raise PressError("agora press kind must be 'message'")
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("set the agora callback_url setting before pressing")
        sender = str(action.get("from", ""))
        if self.store.get(PLATFORM, "user", sender) is None:
            raise PressError(f"no agora user {sender!r}")
        chat_type = str(action.get("chat_type", "chat"))
        target = str(action.get("to", ""))
        kind = "group" if chat_type == "groupchat" else "user"
        if chat_type not in ("chat", "groupchat") or self.store.get(PLATFORM, kind, target) is None:
            raise PressError(f"no agora {kind} {target!r} for chat_type {chat_type!r}")
        msg_type = str(action.get("type", "txt"))
        body = action.get("body") or {"msg": str(action.get("msg", ""))}
        ext = dict(action.get("ext") or {})
        message = self._store_message(sender, target, chat_type, msg_type, dict(body), ext)
        creds = self.credentials()
        call_id = f"{creds['app_key']}_{uuid.uuid4()}"
        stamp = now_ms()
        callback: dict[str, Any] = {
            "callId": call_id,
            "eventType": "chat",
            "timestamp": stamp,
            "chat_type": chat_type,
            "from": sender,
            "to": target,
            "msg_id": message["msg_id"],
            "payload": {"ext": ext, "bodies": message["payload"]["bodies"]},
            "securityVersion": "1.0.0",
            "security": callback_security(call_id, creds["callback_secret"], stamp),
            "appkey": creds["app_key"],
            "host": urlparse(self.base_url).netloc,
        }
        if chat_type == "groupchat":
            callback["group_id"] = target
        raw = json.dumps(callback, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        statuses = deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
        if statuses and 200 not in statuses:
            # Post-delivery callbacks are re-sent once after a failure, then dropped.
            statuses += deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
        return {"msg_id": message["msg_id"], "callId": call_id, "delivered": statuses}

    # -- plumbing -----------------------------------------------------------------------------
    def _secret(self, key: str, make: Callable[[], str]) -> str:
        value = self.store.setting(PLATFORM, key)
        if value is None:
            value = make()
            self.store.set_setting(PLATFORM, key, value)
        return value

    def _int_setting(self, key: str, default: int) -> int:
        return int(self.store.setting(PLATFORM, key) or default)

    @staticmethod
    def _error(exc: AgoraError) -> JSONResponse:
        body = {
            "error": exc.error,
            "exception": EXCEPTIONS.get(exc.error, "EasemobException"),
            "timestamp": now_ms(),
            "duration": 0,
            "error_description": exc.description,
        }
        return JSONResponse(body, status_code=exc.status)

    def _envelope(self, request: Request, **fields: Any) -> JSONResponse:
        creds = self.credentials()
        prefix = f"/{creds['org_name']}/{creds['app_name']}"
        path = request.url.path.removeprefix(prefix)
        body = {
            "path": re.sub(r"^(/[^/]+)(/.*)?$", r"\1", path),
            "uri": f"{self.base_url}{request.url.path}",
            "timestamp": now_ms(),
            "organization": creds["org_name"],
            "application": creds["application"],
            "action": request.method.lower(),
            **fields,
            "duration": 0,
            "applicationName": creds["app_name"],
        }
        return JSONResponse(body)

    def _check_rate(self, key: str, api: str, documented: int, window_s: float) -> None:
        limit = scaled_limit(self.store, PLATFORM, documented)
        if limit is not None and not self._windows.allow((key, api), limit, window_s):
            raise AgoraError(429, "reach_limit", "This request has reached API limit.")

    def _endpoint(self, handler: Handler, *, registration: bool) -> Callable[[Request], Any]:
        """Check org/app, the app token and the rate, then run `handler`."""

        async def endpoint(request: Request) -> Response:
            creds = self.credentials()
            org, app = request.path_params["org_name"], request.path_params["app_name"]
            try:
                _check_app(org, app, creds)
                self._authenticate(request.headers.get("authorization", ""), registration)
                api = _api_of(request.url.path.removeprefix(f"/{org}/{app}"))
                self._check_rate(creds["app_key"], api, *LIMITS[api])
                body: Any = {}
                if request.method == "POST":
                    body = await _json_body(request)
                result = handler(request, body)
            except AgoraError as exc:
                return self._error(exc)
            return result if isinstance(result, Response) else self._envelope(request, **result)

        return endpoint

    def _authenticate(self, header: str, registration: bool) -> None:
        """Accept only an unexpired app token signed with this app's certificate."""
        expired_msg = MSG_REGISTRATION_CLOSED if registration else MSG_EXPIRED
        token = header[7:].strip() if header.startswith("Bearer ") else ""
        if not token:
            raise AgoraError(401, "unauthorized", expired_msg)
        expires = self._verified.get(token)
        if expires is None:
            creds = self.credentials()
            try:
                parsed = parse_access_token(token)
            except ValueError:
                if registration:
                    raise AgoraError(401, "unauthorized", MSG_REGISTRATION_CLOSED) from None
                raise AgoraError(401, "auth_bad_access_token", MSG_CORRUPT) from None
            app_privilege = PRIVILEGE_APP in parsed.services.get(SERVICE_CHAT, {})
            genuine = parsed.app_id == creds["app_id"] and parsed.verifies(creds["app_certificate"])
            if not (genuine and app_privilege):
                if registration:
                    raise AgoraError(401, "unauthorized", MSG_REGISTRATION_CLOSED)
                raise AgoraError(401, "auth_bad_access_token", MSG_FOREIGN)
            expires = parsed.expires_at(PRIVILEGE_APP)
            self._verified[token] = expires
        left_s = expires - int(time.time())
        if left_s <= 0:
            raise AgoraError(401, "unauthorized", expired_msg)
        # Known to the store so that the token_expire fault (expire_tokens) reaches it too.
        state, _ = self.store.token_state(PLATFORM, token)
        if state == TokenState.INVALID:
            self.store.issue_token(PLATFORM, self.credentials()["app_key"], left_s, token=token)
        elif state == TokenState.EXPIRED:
            raise AgoraError(401, "unauthorized", expired_msg)

    async def _invalid_url(self, request: Request) -> Response:
        return self._error(
            AgoraError(500, "web_application", "javax.ws.rs.WebApplicationException")
        )

    def _new_msg_id(self) -> str:
        """Numeric, time-ordered ids like the vendor's (ms << 22 | sequence)."""
        return str((now_ms() << 22) | (next(self._sequence) & 0x3FFFFF))

    def _store_message(
        self,
        sender: str,
        to: str,
        chat_type: str,
        msg_type: str,
        body: dict[str, Any],
        ext: dict[str, Any],
    ) -> dict[str, Any]:
        """Keep a message in the shape of the history export (and callback payload)."""
        stamp, msg_id = now_ms(), self._new_msg_id()
        message: dict[str, Any] = {
            "msg_id": msg_id,
            "timestamp": stamp,
            "direction": "outgoing",
            "to": to,
            "from": sender,
            "chat_type": chat_type,
            "payload": {"bodies": [_body(msg_type, body)], "ext": ext, "from": sender, "to": to},
        }
        self.store.put(PLATFORM, "message", msg_id, message, created_ms=stamp)
        return message

    # -- users --------------------------------------------------------------------------------
    def _register(self, request: Request, body: Any) -> dict[str, Any]:
        batch = isinstance(body, list)
        wanted = body if batch else [body]
        if not wanted or (batch and len(wanted) > 60):  # 60 per batch (unconfirmed)
            raise _bad("This is an invalid request.")
        for entry in wanted:
            name = entry.get("username") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise _bad("Entity 'user' requires a property named username.")
            if not USERNAME.match(name):
                raise _bad(f"{name} is not legal.")
        created, failed = [], []
        with self._lock:
            for entry in wanted:
                name = str(entry["username"])
                if self.store.get(PLATFORM, "user", name) is not None:
                    if not batch:
                        raise AgoraError(
                            400,
                            "duplicate_unique_property_exists",
                            "Application null Entity user requires that property named "
                            f"username be unique, value of {name} exists.",
                        )
                    failed.append(
                        {"username": name, "registerUserFailReason": f"the {name} already exists"}
                    )
                    continue
                user = _user(name, str(uuid.uuid4()), str(entry.get("nickname", "")))
                self.store.put(PLATFORM, "user", name, user)
                created.append(user)
            if created:
                names = [u["username"] for u in created]
                self.store.record(PLATFORM, "POST /users", "app", {"usernames": names})
        answer: dict[str, Any] = {"entities": created}
        if failed:
            answer["data"] = failed
        return answer

    def _list_users(self, request: Request, body: Any) -> dict[str, Any]:
        """Query users in batches: `limit` 1..100 (default 10), an opaque `cursor` while more
        remain; the last page has no cursor."""
        try:
            limit = int(request.query_params.get("limit", "10"))
        except ValueError:
            raise _bad("limit must be a number.") from None
        if not 1 <= limit <= USERS_BATCH_MAX:
            raise _bad(f"limit must be 1 to {USERS_BATCH_MAX}.")
        cursor = request.query_params.get("cursor")
        try:
            offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        except (ValueError, UnicodeDecodeError):
            raise _bad("the cursor is invalid.") from None
        users = self.store.list(PLATFORM, "user", offset=offset, limit=limit + 1)
        answer: dict[str, Any] = {"entities": users[:limit], "count": min(limit, len(users))}
        if len(users) > limit:
            answer["cursor"] = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
        return answer

    def _get_user(self, request: Request, body: Any) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", request.path_params["username"])
        if user is None:
            raise AgoraError(404, "service_resource_not_found", "Service resource not found.")
        return {"entities": [user], "count": 1}

    # -- messages -----------------------------------------------------------------------------
    def _send_to_users(self, request: Request, body: Any) -> dict[str, Any]:
        return self._send(body, "chat", MAX_USER_RECIPIENTS, "POST /messages/users")

    def _send_to_groups(self, request: Request, body: Any) -> dict[str, Any]:
        return self._send(body, "groupchat", MAX_GROUP_RECIPIENTS, "POST /messages/chatgroups")

    def _send(self, body: Any, chat_type: str, most: int, endpoint: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        sender = body.get("from", "admin")
        if not isinstance(sender, str) or sender == "":
            raise _bad("'From' can't be empty.")
        to = body.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= most:
            raise _bad(f"'to' must list 1 to {most} recipients.")
        msg_type = body.get("type")
        if msg_type not in MSG_TYPES:
            raise _bad(f"message type {msg_type!r} is not supported.")
        content = body.get("body")
        if not isinstance(content, dict):
            raise _bad("message body is required.")
        ext = body.get("ext", {})
        if not isinstance(ext, dict):
            raise _bad("ext can't be null.")
        _check_body(msg_type, content)
        size = len(json.dumps(content, ensure_ascii=False).encode()) + len(
            json.dumps(ext, ensure_ascii=False).encode()
        )
        if size > MAX_BODY_EXT_BYTES:
            # The send page says 413; the status-code page lists 400 "message is too large".
            raise AgoraError(413, "illegal_argument", "message is too large")
        if chat_type == "groupchat":
            for group in to:
                if self.store.get(PLATFORM, "group", str(group)) is None:
                    raise AgoraError(
                        404, "service_resource_not_found", "Service resource not found."
                    )
                self._check_rate(str(group), "group-messages", PER_GROUP_MSGS_PER_S, 1.0)
        data = {
            str(target): self._store_message(
                sender, str(target), chat_type, msg_type, content, ext
            )["msg_id"]
            for target in to
        }
        self.store.record(PLATFORM, endpoint, sender, {**body, "msg_ids": data})
        return {"data": data}

    def _recall(self, request: Request, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        msg_id, to, chat_type = body.get("msg_id"), body.get("to"), body.get("chat_type")
        if not (isinstance(msg_id, str) and isinstance(to, str) and msg_id and to):
            raise _bad("msg_id and to are required.")
        if chat_type not in ("chat", "groupchat", "chatroom"):
            raise _bad("chat_type must be chat, groupchat or chatroom.")
        recaller = str(body.get("from", "admin"))
        answer = {
            "msg_id": msg_id,
            "chattype": {"groupchat": "group_chat"}.get(chat_type, chat_type),
            "from": recaller,
            "to": to,
        }
        message = self.store.get(PLATFORM, "message", msg_id)
        # The failure values of `recalled` are (unconfirmed); success is "yes" (REST page).
        if message is None or message.get("_recalled") or message["to"] != to:
            return {"data": {"recalled": "not_found msg", **answer}}
        window_ms = self._int_setting("recall_window_s", RECALL_WINDOW_S) * 1000
        if now_ms() - int(message["timestamp"]) > window_ms and body.get("force") is not True:
            return {"data": {"recalled": "exceed recall time limit", **answer}}
        message["_recalled"] = True
        self.store.put(PLATFORM, "message", msg_id, message)
        self.store.record(PLATFORM, "POST /messages/msg_recall", recaller, dict(body))
        return {"data": {"recalled": "yes", **answer}}

    # -- groups -------------------------------------------------------------------------------
    def _create_group(self, request: Request, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        name, owner = body.get("groupname"), body.get("owner")
        description = body.get("description", "")
        maxusers = body.get("maxusers", 200)
        members = body.get("members", [])
        valid = (
            isinstance(name, str)
            and 0 < len(name) <= 128
            and isinstance(description, str)
            and len(description) <= 512
            and isinstance(maxusers, int)
            and isinstance(body.get("public"), bool)
            and isinstance(members, list)
            and len(members) < maxusers
            and len(json.dumps(body.get("custom", ""))) <= 8192
        )
        if not valid or not isinstance(owner, str):
            raise AgoraError(
                400,
                "invalid_parameter",
                "Some of [groupname, description, maxusers, public, owner] are not valid fields.",
            )
        for username in [owner, *members]:
            if self.store.get(PLATFORM, "user", str(username)) is None:
                raise AgoraError(404, "resource_not_found", f"username {username} doesn't exist")
        group_id = str(10**14 + secrets.randbelow(9 * 10**14))
        group = {
            "groupid": group_id,
            "groupname": name,
            "description": description,
            "public": body["public"],
            "maxusers": maxusers,
            "allowinvites": bool(body.get("allowinvites", False)),
            "membersonly": bool(body.get("membersonly", False)),
            "invite_need_confirm": bool(body.get("invite_need_confirm", True)),
            "owner": owner,
            "members": [str(m) for m in members if m != owner],
            "custom": body.get("custom", ""),
        }
        self.store.put(PLATFORM, "group", group_id, group)
        self.store.record(PLATFORM, "POST /chatgroups", owner, {**body, "groupid": group_id})
        return {"entities": [], "data": {"groupid": group_id}}

    def _group_members(self, request: Request, body: Any) -> dict[str, Any]:
        group = self.store.get(PLATFORM, "group", request.path_params["group_id"])
        if group is None:
            raise AgoraError(404, "service_resource_not_found", "Service resource not found.")
        q = request.query_params
        try:
            num, size = int(q.get("pagenum", "1")), int(q.get("pagesize", "10"))
        except ValueError:
            raise _bad("pagenum and pagesize must be numbers.") from None
        if num < 1 or not 1 <= size <= 100:
            raise _bad("pagesize must be 1 to 100 and pagenum at least 1.")
        everyone = [{"owner": group["owner"]}] + [{"member": m} for m in group["members"]]
        page = everyone[(num - 1) * size : num * size]
        answer: dict[str, Any] = {"entities": [], "data": page, "count": len(page)}
        echoed = {key: [q[key]] for key in ("pagesize", "pagenum") if key in q}
        if echoed:
            answer["params"] = echoed
        return answer

    # -- history ------------------------------------------------------------------------------
    def _history(self, request: Request, body: Any) -> dict[str, Any]:
        hour = request.path_params["hour"]
        start_ms = _hour_start_ms(hour)
        app_key = self.credentials()["app_key"]
        retention_ms = self._int_setting("history_retention_s", HISTORY_RETENTION_S) * 1000
        # Simplification: an hour can be exported as soon as it has ended (the vendor asks
        # callers to allow at least an hour, up to 24 h).
        if start_ms + HOUR_MS > now_ms() or start_ms < now_ms() - retention_ms:
            raise _bad(
                f"Illegal arguments: appkey: {app_key}, time: {hour}, "
                "maybe chat message history is expired or unstored."
            )
        if not self._hour_messages(start_ms):
            raise AgoraError(
                404,
                "storage_object_not_found",
                "Failed to find chat message history download URL for appkey: "
                f"{app_key}, time: {hour}.",
            )
        expires = int(time.time()) + self._int_setting("history_url_ttl_s", HISTORY_URL_TTL_S)
        creds = self.credentials()
        path = f"/_oss/chatmessages/{creds['org_name']}/{creds['app_name']}/{hour}"
        query = {
            "Expires": str(expires),
            "OSSAccessKeyId": "sandbox",
            "Signature": self._sign_download(path, expires),
        }
        return {"data": [{"url": f"{self.base_url}{path}?{urlencode(query)}"}]}

    def _hour_messages(self, start_ms: int) -> list[dict[str, Any]]:
        rows = self.store.list(
            PLATFORM, "message", time_field="created_ms", from_ms=start_ms, to_ms=start_ms + HOUR_MS
        )
        return [m for m in rows if not m.get("_recalled")]

    def _sign_download(self, path: str, expires: int) -> str:
        key = self.credentials()["app_certificate"].encode()
        digest = hmac.new(key, f"GET\n{expires}\n{path}".encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    async def _download(self, request: Request) -> Response:
        """The signed, expiring link to one hour's gzipped JSON lines."""
        q = request.query_params
        try:
            expires = int(q.get("Expires", ""))
        except ValueError:
            return _oss_denied("AccessDenied", "Invalid argument.")
        if not hmac.compare_digest(
            q.get("Signature", ""), self._sign_download(request.url.path, expires)
        ):
            return _oss_denied(
                "SignatureDoesNotMatch", "The request signature we calculated does not match."
            )
        if time.time() > expires:
            return _oss_denied("AccessDenied", "Request has expired.")
        start_ms = _hour_start_ms(request.path_params["hour"])
        lines = [
            json.dumps({k: v for k, v in m.items() if not k.startswith("_")}, ensure_ascii=False)
            for m in self._hour_messages(start_ms)
        ]
        return Response(
            gzip.compress(("\n".join(lines) + "\n").encode()),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename={request.path_params['hour']}.gz"
            },
        )


async def _json_body(request: Request) -> Any:
    if "application/json" not in request.headers.get("content-type", ""):
        raise AgoraError(415, "web_application", "Unsupported Media Type.")
    try:
        return json.loads(await request.body())
    except ValueError:
        raise AgoraError(400, "json_parse", "Unexpected character.") from None


def _check_app(org: str, app: str, creds: Mapping[str, str]) -> None:
    if (org, app) != (creds["org_name"], creds["app_name"]):
        raise AgoraError(
            404,
            "organization_application_not_found",
            f"Could not find application for {org}/{app} from URI: {org}/{app}/token",
        )


def _api_of(path: str) -> str:
    """The rate-limit bucket of a request path below `/{org}/{app}`."""
    first = path.strip("/").split("/")
    if first[0] == "messages":
        return "recall" if first[-1] == "msg_recall" else "messages"
    return {"chatmessages": "history"}.get(first[0], first[0])


def _hour_start_ms(hour: str) -> int:
    if not HOUR.match(hour):
        raise _bad("This chatmessage request is not supported.")
    try:
        start = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC)
    except ValueError:
        raise _bad("This chatmessage request is not supported.") from None
    return int(start.timestamp() * 1000)


def _oss_denied(code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status_code=403, media_type="application/xml")


def _check_body(msg_type: str, content: Mapping[str, Any]) -> None:
    if msg_type == "txt" and not isinstance(content.get("msg"), str):
        raise _bad("txt messages need body.msg.")
    if msg_type == "cmd" and not isinstance(content.get("action"), str):
        raise _bad("cmd messages need body.action.")
    if msg_type == "custom":
        event = content.get("customEvent")
        if event is not None and not (isinstance(event, str) and CUSTOM_EVENT.match(event)):
            raise _bad("customEvent must match [a-zA-Z0-9-_/.]{1,32}.")
        exts = content.get("customExts", {})
        if not isinstance(exts, dict) or len(exts) > 16:
            raise _bad("customExts must be a map of at most 16 entries.")


def _body(msg_type: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """A message body as history and callbacks show it; custom maps appear in both forms."""
    if msg_type == "custom":
        exts = dict(content.get("customExts") or {})
        body: dict[str, Any] = {"type": "custom", "customExts": [{k: v} for k, v in exts.items()]}
        body["v2:customExts"] = exts
        if "customEvent" in content:
            body["customEvent"] = content["customEvent"]
        return body
    return {**content, "type": msg_type}


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _username(employee_no: str) -> str:
    return employee_no.lower()


def _group_id(seed: int, group: str) -> str:
    return str(10**14 + int(_hex(seed, "group", group), 16) % (9 * 10**14))


def _user(
    username: str, user_uuid: str, nickname: str, created_ms: int | None = None
) -> dict[str, Any]:
    stamp = now_ms() if created_ms is None else created_ms
    user: dict[str, Any] = {
        "uuid": user_uuid,
        "type": "user",
        "created": stamp,
        "modified": stamp,
        "username": username,
        "activated": True,
    }
    if nickname:
        user["nickname"] = nickname
    return user
