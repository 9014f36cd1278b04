"""Feishu auth: `auth/v3/tenant_access_token/internal`."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.feishu.base import PLATFORM, FeishuBase, FeishuError

TOKEN_TTL_S = 7200  # tenant_access_token lifetime
SAME_TOKEN_MIN_LEFT_S = 1800  # >=30 min left: the same token is handed back


class Auth(FeishuBase):
    """Hands out tenant access tokens."""

    async def _tenant_access_token(self, request: Request) -> Response:
        try:
            body = await self._json(request)
        except FeishuError as exc:
            return self._error(exc.code, exc.msg)
        creds = self.credentials()
        if body.get("app_id") != creds["app_id"] or body.get("app_secret") != creds["app_secret"]:
            # Observed: bad credentials are HTTP 200 with code 10003 (a wrong secret may also
            # come back as 10014 "app secret invalid" (unconfirmed)).
            return JSONResponse({"code": 10003, "msg": "invalid param"})
        token = self.store.valid_token_for(PLATFORM, creds["app_id"], SAME_TOKEN_MIN_LEFT_S)
        if token is None:
            ttl = self._int_setting("token_ttl_s", TOKEN_TTL_S)
            token = self.store.issue_token(
                PLATFORM, creds["app_id"], ttl, token="t-" + secrets.token_hex(20)
            )
            expire = ttl
        else:
            expire = self._seconds_left(token)
        return JSONResponse(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": expire}
        )

    def _seconds_left(self, token: str) -> int:
        row = (
            self.store.conn()
            .execute(
                "SELECT expires_ms FROM tokens WHERE platform = ? AND token = ?", (PLATFORM, token)
            )
            .fetchone()
        )
        return max(0, (int(row[0]) - now_ms()) // 1000) if row else 0
