"""What every Slack Web API family shares: ids, the `ok:false` error shape, the token and
tier checks around each call, argument parsing (JSON, form or query), and the emulator's state.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.core import SandboxStore, SlidingWindow, scaled_limit
from sync_pipeline.devtools.sandbox.emulator import Emulator

PLATFORM = "slack"

# Web API rate-limit tiers (docs.slack.dev "Rate limits"): calls per minute per method per
# workspace. chat.postMessage is "special": about one message per second per channel, with
# short bursts allowed (here: 5 in any 5 s), checked per channel.
TIER_1, TIER_2, TIER_3, TIER_4 = (1, 60.0), (20, 60.0), (50, 60.0), (100, 60.0)
POST_PER_CHANNEL = (5, 5.0)
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_TEXT = 40_000


class SlackError(Exception):
    """A Web API error answer: HTTP 200 with `{"ok": false, "error": ...}` (429 for limits)."""

    def __init__(self, error: str, status: int = 200, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.error, self.status, self.retry_after = error, status, retry_after


Handler = Callable[[Mapping[str, Any]], dict[str, Any]]


def slack_ts() -> str:
    """A message timestamp as Slack writes it: Unix seconds with six digits of micros."""
    return f"{time.time():.6f}"


def cursor_for(value: str) -> str:
    """An opaque cursor, as Slack's look (base64 of `next_ts:...` or `dXNlcjpV...`)."""
    return base64.b64encode(value.encode()).decode()


def cursor_value(cursor: str, prefix: str) -> str:
    try:
        text = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    if not text.startswith(prefix):
        raise SlackError("invalid_cursor")
    return text.removeprefix(prefix)


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def slack_id(prefix: str, *parts: object) -> str:
    """A Slack-looking id ("U", "D", "T", "B" + 10 upper-case alphanumerics)."""
    return prefix + _hex(*parts)[:10].upper()


class SlackBase(Emulator):
    """The Slack emulator's state and the plumbing its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = SlidingWindow()
        self._lock = threading.Lock()
        self._sequence = itertools.count()

    def credentials(self) -> dict[str, str]:
        team = self._secret("team_id", lambda: slack_id("T", secrets.token_hex(4)))
        return {
            "api_url": self.base_url + "/api/",  # the connector's base_url
            "team_id": team,
            "bot_token": self._secret(
                "bot_token", lambda: f"xoxb-{team[1:]}-{secrets.token_hex(12)}"
            ),
            "app_token": self._secret("app_token", lambda: f"xapp-1-{secrets.token_hex(16)}"),
            "signing_secret": self._secret("signing_secret", lambda: secrets.token_hex(16)),
            "bot_user_id": self._secret("bot_user_id", lambda: slack_id("U", team, "bot")),
            "bot_id": self._secret("bot_id", lambda: slack_id("B", team, "bot")),
            "app_id": self._secret("app_id", lambda: slack_id("A", team, "app")),
        }

    def throttle_response(self) -> Response:
        return _error(SlackError("ratelimited", 429, 1))

    # -- plumbing -----------------------------------------------------------------------------
    def _secret(self, key: str, make: Callable[[], str]) -> str:
        value = self.store.setting(PLATFORM, key)
        if value is None:
            with self._lock:
                value = self.store.setting(PLATFORM, key)
                if value is None:
                    value = make()
                    self.store.set_setting(PLATFORM, key, value)
        return value

    def _check_rate(self, key: tuple[str, ...], limit: tuple[int, float]) -> None:
        documented, window_s = limit
        scaled = scaled_limit(self.store, PLATFORM, documented)
        if scaled is not None and not self._windows.allow(key, scaled, window_s):
            raise SlackError("ratelimited", 429, max(1, round(window_s)))

    def _method(
        self,
        name: str,
        handler: Handler,
        tier: tuple[int, float] | None,
        *,
        token: str = "bot",  # noqa: S107 - a token kind
    ) -> Callable[[Request], Any]:
        """Parse the arguments, check the token and the method's tier, run `handler`."""

        async def endpoint(request: Request) -> Response:
            try:
                args = await _arguments(request)
                self._authenticate(request, args, token)
                if tier is not None:
                    self._check_rate((name,), tier)
                result = handler(args)
            except SlackError as exc:
                return _error(exc)
            return JSONResponse({"ok": True, **result})

        return endpoint

    def _authenticate(self, request: Request, args: Mapping[str, Any], kind: str) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header else str(args.get("token", ""))
        if not token:
            raise SlackError("not_authed")
        creds = self.credentials()
        expected = creds["app_token"] if kind == "app" else creds["bot_token"]
        if token != expected:
            if kind == "app" and token.startswith("xoxb-"):
                raise SlackError("not_allowed_token_type")
            raise SlackError("invalid_auth")
        if kind == "bot" and self.store.setting(PLATFORM, "revoked") == "1":
            raise SlackError("token_revoked")

    def _next_seq(self) -> int:
        return next(self._sequence)

    # -- what one family asks of another ------------------------------------------------------
    @abstractmethod
    def _user(self, user_id: str) -> dict[str, Any] | None:
        """A seeded member by id (users.py)."""

    @abstractmethod
    def _dm_channel(self, user_id: str) -> str:
        """The id of the app's DM with `user_id`, made on first use (conversations.py)."""

    @abstractmethod
    def _connected(self) -> bool:
        """Whether a Socket Mode connection is open (socket_mode.py)."""

    @abstractmethod
    def _send_envelope(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send `payload` over Socket Mode until it is acked (socket_mode.py)."""

    @abstractmethod
    def _press_disconnect(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Send every connection a `disconnect` frame and close it (socket_mode.py)."""


def _error(exc: SlackError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"ok": False, "error": exc.error}, status_code=exc.status, headers=headers)


JSON_ARGS = ("blocks", "attachments", "metadata")  # form-encoded as JSON strings


async def _arguments(request: Request) -> dict[str, Any]:
    """A method's arguments: query string, then the body (JSON or form-encoded)."""
    args: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        raw = await request.body()
        kind = request.headers.get("content-type", "")
        if "application/json" in kind:
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise SlackError("invalid_json") from None
            if not isinstance(body, dict):
                raise SlackError("invalid_json")
            args.update(body)
        elif raw:
            try:
                args.update(parse_qsl(raw.decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                raise SlackError("invalid_form_data") from None
            for name in JSON_ARGS:
                if isinstance(args.get(name), str) and args[name]:
                    try:
                        args[name] = json.loads(args[name])
                    except ValueError:
                        raise SlackError(
                            "invalid_blocks_format" if name == "blocks" else "invalid_arguments"
                        ) from None
    return args


def int_arg(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_arguments") from None


def true_arg(args: Mapping[str, Any], name: str) -> bool:
    return str(args.get(name, "")).lower() in ("1", "true")
