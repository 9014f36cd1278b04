"""Agora Chat auth: AccessToken2 app and user tokens, built the way ChatTokenBuilder2
builds them (clients build their own; the emulator issues none), parsed and verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
import zlib
from dataclasses import dataclass

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, AgoraError
from sync_pipeline.devtools.sandbox.core import TokenState

AT2_VERSION = "007"
SERVICE_CHAT = 5
PRIVILEGE_USER = 1
PRIVILEGE_APP = 2
# Trailing fields after the privilege map, per AccessToken2 service type, so a token that also
# carries other services can be walked: (strings, int16s).
SERVICE_TAILS = {1: (2, 0), 2: (1, 0), 4: (0, 0), 5: (1, 0), 7: (2, 1)}
MSG_EXPIRED = "Unable to authenticate due to expired access token."
MSG_CORRUPT = "Unable to authenticate due to corrupt access token."
MSG_FOREIGN = "Unable to authenticate."
MSG_REGISTRATION_CLOSED = "Registration is not open, please contact the app admin."


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


class Auth(AgoraBase):
    """Verifies the app token of every call."""

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
