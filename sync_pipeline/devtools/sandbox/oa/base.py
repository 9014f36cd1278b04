"""What every E9 API family shares: ids, times, answers, refusals, one business call, and the
emulator's state (credentials, settings, rate limit).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from abc import abstractmethod
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette import responses
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import Emulator

log = logging.getLogger(__name__)


PLATFORM = "oa"
ADMIN_USER_ID = "1"  # E9's built-in 系统管理员; sees every request, is not an HRM resource
OA_TZ = timezone(timedelta(hours=8))  # E9 answers in server local time; ours is China time
TIME_FMT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000  # larger pageSize is capped, as gateways do (unconfirmed for E9)
RATE_LIMIT_PER_S = 100  # sandbox-chosen, see the package docstring (oa/__init__.py)
PA = "/api/workflow/paService"


def oa_user_id(employee_no: str) -> str:
    """OA user ids are E9-style integers: E00001 -> "101", E00002 -> "102"..."""
    return str(100 + int(employee_no[1:]))


def fmt_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, OA_TZ).strftime(TIME_FMT)


def parse_time(text: str) -> int:
    """E9 time text (server time) -> epoch ms; a bare date means its midnight."""
    text = text.strip()
    pattern = TIME_FMT if " " in text else "%Y-%m-%d"
    return int(datetime.strptime(text, pattern).replace(tzinfo=OA_TZ).timestamp() * 1000)


def _floor_s(ms: int) -> int:
    return ms - ms % 1000  # E9 keeps times to the second


class JSONResponse(responses.JSONResponse):
    """E9's JSON answers. A lone surrogate (a Java string cut between the halves of a pair)
    travels in JSON as a \\ud800 escape, which UTF-8 cannot carry raw: such an answer is sent
    with every non-ASCII character escaped, as a Java JSON writer may."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


class Refused(Exception):
    """An E9 business refusal: `code` with its errMsg, answered with HTTP 200."""

    def __init__(
        self, code: str, message: str, err: Mapping[str, Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(code, message)
        self.code, self.message, self.err, self.extra = code, message, dict(err or {}), extra

    def response(self) -> JSONResponse:
        err_msg = {"msg": self.message, **self.err}
        return JSONResponse({"code": self.code, "errMsg": err_msg, **self.extra})


def _success(data: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": "SUCCESS", "errMsg": {}}
    if data is not None:
        body["data"] = data
    return JSONResponse(body)


class SlidingWindow:
    """Per-key call timestamps over the last second; thread-safe."""

    def __init__(self) -> None:
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, limit: int, window_s: float = 1.0) -> bool:
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - window_s:
                calls.popleft()
            if len(calls) >= limit:
                return False
            calls.append(now)
            return True


@dataclass(frozen=True)
class Call:
    """One authenticated business call."""

    appid: str
    user: str  # the decrypted `userid` header
    params: dict[str, str]
    path: str

    def int_param(self, name: str, default: int) -> int:
        raw = self.params.get(name, "")
        if raw.strip() == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise Refused("PARAM_ERROR", f"{name} must be an integer, not {raw!r}") from None

    def json_param(self, name: str) -> Any:
        raw = self.params.get(name, "")
        if raw.strip() == "":
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise Refused("PARAM_ERROR", f"{name} is not valid JSON") from None

    def required(self, name: str) -> str:
        value = self.params.get(name, "").strip()
        if not value:
            raise Refused("PARAM_ERROR", f"{name} is required")
        return value


class OABase(Emulator):
    """The E9 emulator's state and the helpers its API families share."""

    def __init__(self, store: SandboxStore, base_url: str) -> None:
        super().__init__(store, base_url)
        self._creds = self._credentials_once()
        self._private_key = serialization.load_pem_private_key(
            self._creds.pop("_private_pem").encode(), password=None
        )
        self._userids: dict[str, str | None] = {}  # encrypted userid header -> user id
        self._limiter = SlidingWindow()
        self._lock = threading.Lock()  # read-modify-write of one object at a time
        self._outbox: queue.Queue[tuple[str, bytes, dict[str, str]]] = queue.Queue()
        self._courier: threading.Thread | None = None

    # -- credentials -------------------------------------------------------------------------
    def _credentials_once(self) -> dict[str, str]:
        """Generated on first use and kept in the store; the first writer wins across processes."""
        kept = self.store.setting(PLATFORM, "credentials")
        if kept is not None:
            return dict(json.loads(kept))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fresh = {
            "appid": str(uuid.uuid4()).upper(),
            "secret": str(uuid.uuid4()),
            "_private_pem": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "spk": base64.b64encode(
                key.public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            ).decode(),
            "webhook_secret": secrets.token_hex(16),
            "ofs_syscode": "SYNC",
        }
        with self.store.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO settings (platform, key, value)"
                " VALUES (?, 'credentials', ?)",
                (PLATFORM, json.dumps(fresh)),
            )
            row = conn.execute(
                "SELECT value FROM settings WHERE platform = ? AND key = 'credentials'",
                (PLATFORM,),
            ).fetchone()
        return dict(json.loads(row[0]))

    def credentials(self) -> dict[str, str]:
        """appid, secret and spk (what regist would hand out), the user the sync acts as, the
        webhook signing secret and the unified-todo system code."""
        return {**self._creds, "userid": ADMIN_USER_ID}

    def throttle_response(self) -> Response:
        return JSONResponse(
            {
                "code": "REQUEST_FREQUENCY_LIMIT",
                "errMsg": {"msg": "request frequency limit exceeded, retry after 1 s"},
            },
            status_code=429,
            headers={"Retry-After": "1"},
        )

    def _number_setting(self, key: str, default: float) -> float:
        """A numeric setting; an unusable value falls back to the default and is logged."""
        raw = self.store.setting(PLATFORM, key)
        try:
            return default if raw is None else float(raw)
        except ValueError:
            log.warning("oa setting %s=%r is not a number; using %s", key, raw, default)
            return default

    def _rate_limited(self, key: str) -> bool:
        scale = self._number_setting("rate_limit_scale", 1.0)
        if scale <= 0:
            return False
        return not self._limiter.allow(key, max(1, round(RATE_LIMIT_PER_S * scale)))

    def _receiver(self, text: str) -> str | None:
        """Receivers are matched by workcode, then loginid, then OA user id."""
        for field in ("workcode", "loginid", "id"):
            found = self.store.list(PLATFORM, "user", equals={field: text}, limit=1)
            if found:
                return str(found[0]["id"])
        return None

    # -- what one family asks of another -----------------------------------------------------
    @abstractmethod
    def _notify(self, event: str, body: Mapping[str, Any]) -> None:
        """Post the change webhook for `body` (webhook.py)."""


def _ledger_params(call: Call) -> dict[str, Any]:
    return {"appid": call.appid, **call.params}
