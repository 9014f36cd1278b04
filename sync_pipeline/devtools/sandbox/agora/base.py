"""What every Agora Chat API family shares: errors in the Easemob-style body, the
envelope, the org/app, token and rate checks around each call, stored messages, and
the emulator's state.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import uuid
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.core import SandboxStore, SlidingWindow, now_ms, scaled_limit
from sync_pipeline.devtools.sandbox.emulator import Emulator

PLATFORM = "agora"

# (calls, window seconds) per App Key and method, as the REST pages state them.
LIMITS: dict[str, tuple[int, float]] = {
    "users": (100, 1.0),
    "messages": (100, 1.0),
    "recall": (100, 1.0),
    "chatgroups": (100, 1.0),
    "history": (10, 60.0),
}

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


class AgoraError(Exception):
    """A vendor error answer, raised in a handler and rendered by `_endpoint`."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, error, description)
        self.status, self.error, self.description = status, error, description


def _bad(description: str) -> AgoraError:
    return AgoraError(400, "illegal_argument", description)


Handler = Callable[[Request, Any], Any]


class AgoraBase(Emulator):
    """The Agora Chat emulator's state and the plumbing its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = SlidingWindow()
        self._verified: dict[str, int] = {}  # token -> unix expiry, once its signature checked
        self._sequence = itertools.count()
        self._lock = threading.Lock()

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

    # -- what one family asks of another ------------------------------------------------------
    @abstractmethod
    def _authenticate(self, header: str, registration: bool) -> None:
        """Accept only an unexpired app token signed with this app's certificate (auth.py)."""


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
