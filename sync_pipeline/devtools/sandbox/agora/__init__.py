"""Agora Chat (声网 IM) REST emulator: app tokens, users, messages, groups, history, callbacks.

Written from the vendor's contract (shared/platform-apis.md §6, the AgoraIO/Docs-Source REST
pages and AgoraIO/Tools' token builder), never from our connector. Paths live under
`/{org_name}/{app_name}/`; answers carry the Easemob-style envelope (`action`, `application`,
`uri`, `path`, `entities`/`data`, `timestamp`, `duration`, `organization`, `applicationName`)
and errors the Easemob-style body `{error, exception, timestamp, duration, error_description}`.

Tokens are not issued here: clients build AccessToken2 app tokens locally from the App ID and
App Certificate (`build_app_token` in auth.py does it the way ChatTokenBuilder2 does).
The emulator parses and verifies them: signature, expiry, chat service with the app
privilege.

Cards: Agora Chat has no interactive card and no edit API. Cards travel as custom messages
(`type: "custom"`, `customEvent` + `customExts`). The sandbox's "card update" is what a client
must do against the real service: recall the old message (`messages/msg_recall`, within the
recall window) and send a new custom message; both land in the ledger. A user pressing a card
button is the user sending a custom message back, which reaches the app through the
post-delivery callback (`press({"kind": "message", "type": "custom", ...})`).

Settings (platform "agora"): `callback_url`, `rate_limit_scale` (1 = the vendor's limits, 0 =
off), `recall_window_s` (default 120), `history_retention_s` (default 3 days) and
`history_url_ttl_s` (default 1800).

One module per API family, each a mixin of `AgoraBase` (base.py); `AgoraEmulator` below
combines them and holds the one route table: auth.py (AccessToken2), users.py, messages.py,
groups.py, history.py, callbacks.py (the simulated user), seeding.py.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.agora.auth import (
    Auth,
    build_app_token,
    build_user_token,
    parse_access_token,
)
from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, Handler
from sync_pipeline.devtools.sandbox.agora.callbacks import Callbacks, callback_security
from sync_pipeline.devtools.sandbox.agora.groups import Groups, _group_id
from sync_pipeline.devtools.sandbox.agora.history import History
from sync_pipeline.devtools.sandbox.agora.messages import Messages
from sync_pipeline.devtools.sandbox.agora.seeding import Seeding
from sync_pipeline.devtools.sandbox.agora.users import Users

__all__ = [
    "AgoraEmulator",
    "_group_id",
    "build_app_token",
    "build_user_token",
    "callback_security",
    "parse_access_token",
]


class AgoraEmulator(Auth, Users, Messages, Groups, History, Callbacks, Seeding):
    """Agora Chat REST at `/{org_name}/{app_name}/`, with its tokens, limits and callbacks."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Agora Chat REST"
    port_offset: ClassVar[int] = 5

    # -- seam ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        app = "/{org_name}/{app_name}"
        table: list[tuple[str, str, Handler, bool]] = [
            ("POST", "/users", self._register, True),
            ("GET", "/users", self._list_users, False),
            ("GET", "/users/{username}", self._get_user, False),
            ("POST", "/messages/users", self._send_to_users, False),
            ("POST", "/messages/chatgroups", self._send_to_groups, False),
            ("POST", "/messages/msg_recall", self._recall, False),
            ("POST", "/chatgroups", self._create_group, False),
            ("GET", "/chatgroups/{group_id}/users", self._group_members, False),
            ("GET", "/chatmessages/{hour}", self._history, False),
        ]
        routes: list[BaseRoute] = [
            Route(app + path, self._endpoint(fn, registration=reg), methods=[method])
            for method, path, fn, reg in table
        ]
        routes.append(
            Route(
                "/_oss/chatmessages/{org_name}/{app_name}/{hour}", self._download, methods=["GET"]
            )
        )
        # An invalid request URL is answered 500 web_application (HTTP status codes page).
        everything = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        routes.append(Route("/{path:path}", self._invalid_url, methods=everything))
        return routes
