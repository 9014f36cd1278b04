"""Seeyon REST auth: a token from the REST user's name and password, optionally bound to a
member by `loginName` (the member later calls act as).

* `GET  /seeyon/rest/token/{restusername}/{password}?loginName=...`
* `POST /seeyon/rest/token` with JSON `{"userName", "password", "loginName"?}`

Both answer `{"id": "<token>", "userName": ..., "bindingUser": <member or null>}`. The token
goes in the `token` header or query parameter; it carries no expiry in the answer and stops
working after setting `token_ttl_s` (default 900 s).
"""

from __future__ import annotations

import hmac
import json
import uuid

from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.seeyon.base import (
    DEFAULT_TOKEN_TTL_S,
    PLATFORM,
    JSONResponse,
    SeeyonBase,
    auth_failure,
)
from sync_pipeline.devtools.sandbox.seeyon.org import member_out

UNBOUND = "rest"  # the tokens table's owner of a token bound to no member


class Auth(SeeyonBase):
    """The token endpoints."""

    async def _token_by_path(self, request: Request) -> Response:
        return self._issue(
            request,
            str(request.path_params.get("user", "")),
            str(request.path_params.get("password", "")),
            request.query_params.get("loginName", ""),
        )

    async def _token_by_body(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse(
                {"code": "1001", "message": "the body must be a JSON object"}, status_code=400
            )
        login = body.get("loginName") or request.query_params.get("loginName", "")
        return self._issue(
            request, str(body.get("userName", "")), str(body.get("password", "")), str(login)
        )

    def _issue(self, request: Request, user: str, password: str, login_name: str) -> Response:
        if self.rate_limited(f"token:{user}"):
            return self.throttle_response()
        good_user = hmac.compare_digest(user.encode(), self._creds["restUser"].encode())
        good_password = hmac.compare_digest(password.encode(), self._creds["restPassword"].encode())
        if not (good_user and good_password):
            return auth_failure("REST用户名或密码错误")  # wording unconfirmed
        bound = None
        if login_name:
            bound = self.member_by("loginName", login_name)
            if bound is None or not bound.get("enabled", True):
                return auth_failure(f"loginName {login_name} 不存在")  # wording unconfirmed
        ttl = int(self.number_setting("token_ttl_s", DEFAULT_TOKEN_TTL_S))
        token = self.store.issue_token(
            PLATFORM, str(bound["id"]) if bound else UNBOUND, ttl, token=str(uuid.uuid4())
        )
        return JSONResponse(
            {
                "id": token,
                "userName": user,
                "bindingUser": member_out(bound) if bound else None,
            }
        )
