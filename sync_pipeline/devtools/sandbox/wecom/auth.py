"""WeCom auth: `gettoken` (corpid + corpsecret -> access_token, the same one within its
lifetime).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.wecom.base import PLATFORM, TOKEN_TTL_S, WeComBase, answer_error
from sync_pipeline.devtools.sandbox.wxcrypto import random_text


class Auth(WeComBase):
    """Hands out access tokens."""

    def _token_ttl_s(self) -> int:
        return int(self.store.setting(PLATFORM, "token_ttl_s", str(TOKEN_TTL_S)) or TOKEN_TTL_S)

    # -- auth --------------------------------------------------------------------------------
    async def _gettoken(self, request: Request) -> Response:
        return await run_in_threadpool(self._issue, dict(request.query_params))

    def _issue(self, query: Mapping[str, str]) -> Response:
        """Within its lifetime the same token comes back, as WeCom documents; then a new one."""
        creds = self.credentials()
        corpid, secret = query.get("corpid"), query.get("corpsecret")
        if not corpid:
            return answer_error(41002, "corpid missing")
        if corpid != creds["corpid"]:
            return answer_error(40013, "invalid corpid")
        if not secret:
            return answer_error(41004, "corpsecret missing")
        if secret != creds["corpsecret"]:
            return answer_error(40001, "invalid credential")
        ttl = self._token_ttl_s()
        app = creds["agentid"]
        token = self.store.valid_token_for(PLATFORM, app) or self.store.issue_token(
            PLATFORM, app, ttl, token=random_text(64)
        )
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": ttl}
        )
