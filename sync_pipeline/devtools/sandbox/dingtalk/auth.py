"""DingTalk auth: the new API's `/v1.0/oauth2/accessToken` and the old API's `/gettoken`;
one token serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.dingtalk.base import (
    PLATFORM,
    DingTalkBase,
    api_error,
    oapi_error,
)
from sync_pipeline.devtools.sandbox.wxcrypto import random_text

TOKEN_TTL_S = 7200


class Auth(DingTalkBase):
    """Hands out access tokens."""

    def _token_ttl_s(self) -> int:
        return int(self.store.setting(PLATFORM, "token_ttl_s", str(TOKEN_TTL_S)) or TOKEN_TTL_S)

    def _token_for(self, app: str) -> str:
        """Within its lifetime the same token comes back, extended, as DingTalk documents."""
        token = self.store.valid_token_for(PLATFORM, app) or random_text(32).lower()
        return self.store.issue_token(PLATFORM, app, self._token_ttl_s(), token=token)

    # -- auth --------------------------------------------------------------------------------
    async def _access_token(self, request: Request) -> Response:
        args = await self._args(request)
        if args is None:
            return api_error(400, "InvalidParameter", "request body is not a JSON object")
        return await run_in_threadpool(self._new_token, args)

    def _new_token(self, args: Mapping[str, Any]) -> Response:
        creds = self.credentials()
        if not args.get("appKey"):
            return api_error(400, "MissingappKey", "appKey is mandatory for this action.")
        if not args.get("appSecret"):
            return api_error(400, "MissingappSecret", "appSecret is mandatory for this action.")
        if args["appKey"] != creds["appKey"] or args["appSecret"] != creds["appSecret"]:
            # The code DingTalk uses for a wrong key or secret is unconfirmed.
            return api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        token = self._token_for(creds["appKey"])
        return JSONResponse({"accessToken": token, "expireIn": self._token_ttl_s()})

    async def _gettoken(self, request: Request) -> Response:
        return await run_in_threadpool(self._old_token, dict(request.query_params))

    def _old_token(self, query: Mapping[str, str]) -> Response:
        creds = self.credentials()
        if query.get("appkey") != creds["appKey"]:
            return oapi_error(40089, "不合法的appkey")  # the code for an unknown key: unconfirmed
        if query.get("appsecret") != creds["appSecret"]:
            return oapi_error(40001, "不合法的appsecret")
        token = self._token_for(creds["appKey"])
        body = {"errcode": 0, "errmsg": "ok", "access_token": token}
        return JSONResponse({**body, "expires_in": self._token_ttl_s()})
