"""E9 auth (`/api/ec/dev/auth/...`): regist, applytoken, and the header check around every
business call.
"""

from __future__ import annotations

import base64
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import TokenState
from sync_pipeline.devtools.sandbox.oa.base import (
    ADMIN_USER_ID,
    PLATFORM,
    Call,
    JSONResponse,
    OABase,
    Refused,
)

DEFAULT_TOKEN_TTL_S = 1800  # applytoken `time` default (unconfirmed)


def rsa_encrypt(spk: str, text: str) -> str:
    """b64(RSA_PKCS1v1_5(spk, text)): how E9 clients encrypt `secret` and `userid`."""
    public = serialization.load_der_public_key(base64.b64decode(spk))
    if not isinstance(public, rsa.RSAPublicKey):
        raise TypeError("spk is not an RSA public key")
    return base64.b64encode(public.encrypt(text.encode(), padding.PKCS1v15())).decode()


def _auth_failure(msg: str) -> JSONResponse:
    """E9's auth filter answer: HTTP 200, `status: false` (R-token when the token is stale)."""
    return JSONResponse({"msg": msg, "code": -1, "msgShowType": "none", "status": False})


async def _params(request: Request) -> dict[str, str]:
    """Query string plus body, form-urlencoded or JSON; JSON values that are not strings are
    kept as JSON text, the way E9 clients send JSON-valued fields."""
    params = dict(request.query_params)
    if request.method != "POST":
        return params
    raw = await request.body()
    if "json" in request.headers.get("content-type", ""):
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                params[str(key)] = value if isinstance(value, str) else json.dumps(value)
        return params
    params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return params


class Auth(OABase):
    """regist and applytoken, and the token/userid check every business call passes."""

    def encrypt(self, text: str) -> str:
        """What an E9 client sends in the `secret` and `userid` headers."""
        return rsa_encrypt(self._creds["spk"], text)

    def _decrypt(self, text: str) -> str | None:
        key = self._private_key
        assert isinstance(key, rsa.RSAPrivateKey)  # noqa: S101 - our own key
        try:
            return key.decrypt(base64.b64decode(text), padding.PKCS1v15()).decode()
        except ValueError:  # not base64, wrong key, bad padding, not UTF-8
            return None

    # -- auth --------------------------------------------------------------------------------
    async def _regist(self, request: Request) -> Response:
        appid = request.headers.get("appid", "")
        if self._rate_limited(appid):
            return self.throttle_response()
        if appid != self._creds["appid"]:
            return _auth_failure(f"appid {appid or '(none)'} is not registered in ECOLOGY_BIZ_EC")
        if not request.headers.get("cpk"):
            return _auth_failure("cpk (client public key) is required")
        # Builds differ in spelling the secret's key ("secret" / "secrit"); clients must accept
        # both, so the sandbox lets a test pick with setting `regist_secret_key`.
        secret_key = self.store.setting(PLATFORM, "regist_secret_key", "secret") or "secret"
        return JSONResponse(
            {
                "msg": "ok",
                "code": 0,
                "msgShowType": "none",
                "status": True,
                secret_key: self._creds["secret"],
                "spk": self._creds["spk"],
            }
        )

    async def _applytoken(self, request: Request) -> Response:
        appid = request.headers.get("appid", "")
        if self._rate_limited(appid):
            return self.throttle_response()
        if appid != self._creds["appid"]:
            return _auth_failure(f"appid {appid or '(none)'} is not registered in ECOLOGY_BIZ_EC")
        secret = self._decrypt(request.headers.get("secret", ""))
        if secret is None:
            return _auth_failure("secret解密失败,请检查加密内容.")
        if not hmac.compare_digest(secret, self._creds["secret"]):
            return _auth_failure("认证信息错误！")
        try:
            asked = int(request.headers.get("time") or DEFAULT_TOKEN_TTL_S)
        except ValueError:
            asked = DEFAULT_TOKEN_TTL_S
        ttl = int(self._number_setting("token_ttl_s", asked))
        token = self.store.issue_token(PLATFORM, appid, ttl, token=str(uuid.uuid4()))
        return JSONResponse(
            {"msg": "获取成功!", "code": 0, "msgShowType": "none", "status": True, "token": token}
        )

    def _authenticate(self, request: Request) -> str | Response:
        """The acting OA user id, or E9's auth-filter answer."""
        appid = request.headers.get("appid", "")
        token = request.headers.get("token", "")
        state, owner = self.store.token_state(PLATFORM, token)
        if state != TokenState.OK or owner != appid:
            return _auth_failure(f"token不存在或者超时：{token}")
        encrypted = request.headers.get("userid", "")
        if encrypted not in self._userids:
            if len(self._userids) > 4096:
                self._userids.clear()
            self._userids[encrypted] = self._decrypt(encrypted) if encrypted else None
        user = self._userids[encrypted]
        if user is None:
            return _auth_failure("userid解密失败,请检查加密内容.")  # wording unconfirmed
        return user

    def _business(self, fn: Callable[[Call], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            params = await _params(request)
            appid = request.headers.get("appid", "")
            if self._rate_limited(appid):
                return self.throttle_response()
            user = self._authenticate(request)
            if isinstance(user, Response):
                return user
            if user != ADMIN_USER_ID and self.store.get(PLATFORM, "user", user) is None:
                return JSONResponse(
                    {"code": "USER_EXCEPTION", "errMsg": {"msg": f"user {user} does not exist"}}
                )
            call = Call(appid, user, params, request.url.path)
            try:
                return await run_in_threadpool(fn, call)
            except Refused as refused:
                return refused.response()

        return endpoint
