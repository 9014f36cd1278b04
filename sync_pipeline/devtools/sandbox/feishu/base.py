"""What every Feishu API family shares: ids, errors, page tokens, the gateway's token and
rate-limit check around each call, and the emulator's state.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import json
import math
import secrets
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from sync_pipeline.devtools.sandbox.core import SandboxStore, TokenState, scaled_limit
from sync_pipeline.devtools.sandbox.emulator import Emulator

PLATFORM = "feishu"
API = "/open-apis"

# Per (app, API) limits the contract states: (calls, window seconds), each enforced.
LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "im.message.create": ((50, 1.0), (1000, 60.0)),
    "im.message.patch": ((50, 1.0), (1000, 60.0)),
    "approval.instance.get": ((50, 1.0), (1000, 60.0)),
    "attendance.user_task.query": ((50, 1.0),),
}
MISSING_AUTH_MSG = (
    "Missing access token for authorization. Please make a request with token attached."
)
INVALID_AUTH_MSG = (
    "Invalid access token for authorization. Please make a request with token attached."
)


class FeishuError(Exception):
    """A vendor error answer, raised inside a handler and rendered by `_endpoint`."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(code, msg, status)
        self.code, self.msg, self.status = code, msg, status


def _param_error(detail: str) -> FeishuError:
    # Generic gateway field validation error; the exact code per API is (unconfirmed).
    return FeishuError(99992402, f"field validation failed: {detail}")


def _approval_param_error(detail: str) -> FeishuError:
    return FeishuError(1390001, f"param is invalid: {detail}")


def _hex(*parts: object, n: int = 32) -> str:
    """A deterministic hex id, so the same world gives the same ids in every sandbox."""
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:n]


def _digits(*parts: object, n: int = 19) -> str:
    value = int(_hex(*parts, n=24), 16)
    return str(10 ** (n - 1) + value % (9 * 10 ** (n - 1)))


def _uuid_like(*parts: object) -> str:
    h = _hex(*parts).upper()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _ymd(ms: int) -> int:
    return int(datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d"))


def _public(body: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the emulator's own bookkeeping fields (leading underscore) from an answer."""
    return {k: v for k, v in body.items() if not k.startswith("_")}


def _encode_token(value: Sequence[Any]) -> str:
    raw = json.dumps(list(value), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, shape: tuple[type, ...]) -> list[Any]:
    """Decode an opaque page token of the given element types, or raise ValueError."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError(token) from None
    if not isinstance(value, list) or len(value) != len(shape):
        raise ValueError(token)
    if not all(isinstance(v, t) for v, t in zip(value, shape, strict=True)):
        raise ValueError(token)
    return value


class _Windows:
    """Sliding windows of recent calls per key, counted the way the Feishu gateway limits."""

    def __init__(self) -> None:
        self._calls: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def hit(
        self, key: tuple[str, str], limits: Iterable[tuple[int, float]]
    ) -> tuple[int, int] | None:
        """Count one call; None if allowed, else (limit, seconds until reset) of a full window."""
        limits = list(limits)
        at = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, [])
            longest = max(window for _, window in limits)
            drop = 0
            while drop < len(calls) and calls[drop] <= at - longest:
                drop += 1
            del calls[:drop]
            for limit, window in limits:
                inside = [c for c in calls if c > at - window]
                if len(inside) >= limit:
                    return limit, max(1, math.ceil(inside[0] + window - at))
            calls.append(at)
            return None


@dataclass(frozen=True)
class _Caller:
    app_id: str
    token: str


Handler = Callable[[Request, _Caller], Any]


class FeishuBase(Emulator):
    """The Feishu emulator's state and the plumbing its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._windows = _Windows()
        self._dedupe_lock = threading.Lock()

    def credentials(self) -> dict[str, str]:
        return {
            "app_id": self._secret("app_id", lambda: "cli_" + secrets.token_hex(8)),
            "app_secret": self._secret("app_secret", lambda: secrets.token_urlsafe(24)),
            "verification_token": self._secret("verification_token", lambda: secrets.token_hex(16)),
            "encrypt_key": self._secret("encrypt_key", lambda: secrets.token_urlsafe(24)),
            "tenant_key": self._secret("tenant_key", lambda: secrets.token_hex(8)),
            "domain": self.base_url,
        }

    def throttle_response(self) -> Response:
        return self._throttled(50, 1)

    # -- plumbing -----------------------------------------------------------------------------
    def _secret(self, key: str, make: Callable[[], str]) -> str:
        value = self.store.setting(PLATFORM, key)
        if value is None:
            value = make()
            self.store.set_setting(PLATFORM, key, value)
        return value

    def _int_setting(self, key: str, default: int) -> int:
        return int(self.store.setting(PLATFORM, key) or default)

    def _limits(self, api: str) -> list[tuple[int, float]] | None:
        """The API's limits scaled by the `rate_limit_scale` setting; None when switched off."""
        scaled = [(scaled_limit(self.store, PLATFORM, n), window) for n, window in LIMITS[api]]
        return [(n, window) for n, window in scaled if n is not None] or None

    def _check_rate(self, app_id: str, api: str) -> None:
        limits = self._limits(api)
        full = None if limits is None else self._windows.hit((app_id, api), limits)
        if full is not None:
            raise _Throttled(*full)

    @staticmethod
    def _log_id() -> str:
        return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()

    def _error(self, code: int, msg: str, status: int = 400) -> JSONResponse:
        log_id = self._log_id()
        body = {
            "code": code,
            "msg": msg,
            "error": {
                "log_id": log_id,
                "troubleshooter": "排查建议查看(Troubleshooting suggestions): "
                f"https://open.feishu.cn/search?code={code}&log_id={log_id}",
            },
        }
        return JSONResponse(body, status_code=status, headers={"X-Tt-Logid": log_id})

    def _throttled(self, limit: int, reset_s: int) -> Response:
        return JSONResponse(
            {"code": 99991400, "msg": "request trigger frequency limit"},
            status_code=429,
            headers={"x-ogw-ratelimit-limit": str(limit), "x-ogw-ratelimit-reset": str(reset_s)},
        )

    @staticmethod
    def _ok(data: Any = None, msg: str = "success") -> JSONResponse:
        body: dict[str, Any] = {"code": 0, "msg": msg}
        if data is not None:
            body["data"] = data
        return JSONResponse(body)

    def _endpoint(self, handler: Handler) -> Callable[[Request], Any]:
        """Check the bearer token, then run `handler`, turning FeishuError into the answer."""

        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not header.startswith("Bearer ") or not header[7:].strip():
                return self._error(99991661, MISSING_AUTH_MSG)
            token = header[7:].strip()
            state, app = self.store.token_state(PLATFORM, token)
            if state != TokenState.OK or app is None:
                return self._error(99991663, INVALID_AUTH_MSG)
            try:
                result = handler(request, _Caller(app, token))
                if inspect.isawaitable(result):
                    result = await result
            except FeishuError as exc:
                return self._error(exc.code, exc.msg, exc.status)
            except _Throttled as exc:
                return self._throttled(exc.limit, exc.reset_s)
            return result if isinstance(result, Response) else self._ok(result)

        return endpoint

    async def _not_found(self, request: Request) -> Response:
        return PlainTextResponse("404 page not found", status_code=404)

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            raise FeishuError(99992402, "field validation failed: body is not JSON") from None
        if not isinstance(body, dict):
            raise FeishuError(99992402, "field validation failed: body must be a JSON object")
        return body

    @staticmethod
    def _page_size(
        request: Request, default: int, maximum: int, error: Callable[[str], FeishuError]
    ) -> int:
        raw = request.query_params.get("page_size")
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise error(f"page_size must be 1..{maximum}")
        return int(raw)

    def _keyset(
        self,
        kind: str,
        field: str,
        value: str,
        *,
        from_ms: int,
        to_ms: int,
        after: tuple[int, str] | None,
        limit: int,
        desc: bool = False,
        with_body: bool = True,
    ) -> list[tuple[int, str, str]]:
        """One page of (created_ms, id, body) after a (created_ms, id) cursor, in one query.

        Keyset paging keeps deep pages as cheap as the first, and a repeated cursor gives the
        same page, as the vendor promises.
        """
        order = "DESC" if desc else "ASC"
        cmp = "<" if desc else ">"
        column = "body" if with_body else "''"
        sql = (
            f"SELECT created_ms, id, {column} FROM objects"  # noqa: S608
            " WHERE platform = ? AND kind = ? AND json_extract(body, ?) = ?"
            " AND created_ms >= ? AND created_ms < ?"
        )
        args: list[Any] = [PLATFORM, kind, f"$.{field}", value, from_ms, to_ms]
        if after is not None:
            sql += f" AND (created_ms, id) {cmp} (?, ?)"
            args += list(after)
        sql += f" ORDER BY created_ms {order}, id {order} LIMIT ?"
        args.append(limit)
        return [(int(c), str(i), str(b)) for c, i, b in self.store.conn().execute(sql, args)]

    def _user_by(self, id_type: str, value: str) -> dict[str, Any] | None:
        if id_type == "open_id":
            return self.store.get(PLATFORM, "user", value)
        found = self.store.list(PLATFORM, "user", equals={id_type: value}, limit=1)
        return found[0] if found else None

    @staticmethod
    def _cursor(token: str | None, error: Callable[[str], FeishuError]) -> tuple[int, str] | None:
        if not token:
            return None
        try:
            created, obj_id = _decode_token(token, (int, str))
        except ValueError:
            raise error("page_token is invalid") from None
        return int(created), str(obj_id)

    def _offset_page(
        self,
        request: Request,
        kind: str,
        equals: Mapping[str, Any] | None,
        default: int,
        maximum: int,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A page of a small collection; the page token carries the offset."""
        size = self._page_size(request, default, maximum, _param_error)
        offset = self._offset(request)
        rows = self.store.list(
            PLATFORM, kind, time_field="created_ms", equals=equals, offset=offset, limit=size + 1
        )
        meta: dict[str, Any] = {"has_more": len(rows) > size}
        if meta["has_more"]:
            meta["page_token"] = _encode_token([offset + size])
        return rows[:size], meta

    def _slice(
        self, request: Request, rows: list[dict[str, Any]], default: int, maximum: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """A page of a list already in memory; the page token carries the offset."""
        size = self._page_size(request, default, maximum, _param_error)
        start = self._offset(request)
        meta: dict[str, Any] = {"has_more": start + size < len(rows)}
        if meta["has_more"]:
            meta["page_token"] = _encode_token([start + size])
        return rows[start : start + size], meta

    @staticmethod
    def _offset(request: Request) -> int:
        token = request.query_params.get("page_token")
        if not token:
            return 0
        try:
            (offset,) = _decode_token(token, (int,))
        except ValueError:
            raise _param_error("page_token is invalid") from None
        return int(offset)

    # -- what one family asks of another ------------------------------------------------------
    @abstractmethod
    def _instance(self, instance_code: str) -> dict[str, Any] | None:
        """An approval instance as the API shows it (approvals.py)."""

    @abstractmethod
    def _apply_decision(
        self,
        instance: dict[str, Any],
        task: dict[str, Any],
        user: Mapping[str, Any],
        approve: bool,
        comment: str,
    ) -> dict[str, Any]:
        """Decide one approval task and store the instance (approvals.py)."""

    @abstractmethod
    def _subscribed(self, approval_code: str) -> bool:
        """Whether the app subscribed to an approval definition's events (approvals.py)."""

    @abstractmethod
    def _send_approval_events(self, instance: Mapping[str, Any], task_id: str) -> list[int]:
        """The events of one decided task (callbacks.py)."""

    @staticmethod
    @abstractmethod
    def _new_message(
        chat_id: str, msg_type: str, content: str, sender: Mapping[str, str], **extra: Any
    ) -> dict[str, Any]:
        """A new stored message (messages.py)."""

    @abstractmethod
    def _p2p_chat(self, user: Mapping[str, Any]) -> str:
        """The app's one-to-one chat with a user, created on first use (messages.py)."""

    @abstractmethod
    def _update_card(self, message: dict[str, Any], content: str) -> None:
        """Replace a card message's content (messages.py)."""


class _Throttled(Exception):
    def __init__(self, limit: int, reset_s: int) -> None:
        super().__init__(limit, reset_s)
        self.limit, self.reset_s = limit, reset_s
