"""Feishu / Lark open platform emulator: tokens, approval v4, attendance, contact, IM and cards.

Written from the vendor's contract (shared/platform-apis.md §3) and cross-checked against the
official `lark-oapi` SDK, which must work pointed at it (`domain` = this emulator's base URL).
It must not share code with our Feishu connector: an emulator built from our code would agree
with our bugs.

Conventions kept from the vendor: every path lives under `/open-apis`; bodies are
`{code, msg, data}` with `code` 0 meaning success; business errors come with HTTP 400 and an
`error{log_id, troubleshooter}` object; int64 values (times in ms) are JSON strings; an
unknown path or method is the gateway's plain-text `404 page not found`; page tokens are opaque
and a page token is only returned while `has_more` is true.

Settings (platform "feishu"): `callback_url` (where events go; with `events_mode`
`long_connection` they go to long-connection clients instead, longconn.py), `encrypt_key`
(set it to "" for plaintext, unsigned events), `token_ttl_s` (default 7200),
`rate_limit_scale` (1 = the vendor's limits, 0 = off), `external_sync_min_interval_ms`
(default 0: off; see external_approvals.py).
Simulated users: `press({"kind": ...})` with card_action, message, approve, reject,
approval_instance, approval_task, url_verification, quick_approval, ws_drop or ws_silence.

Third-party ("external") approvals are described in external_approvals.py.

One module per API family, each a mixin of `FeishuBase` (base.py); `FeishuEmulator` below
combines them and holds the one route table: auth.py, approvals.py (approval v4),
external_approvals.py, attendance.py, contacts.py, messages.py (IM and cards), callbacks.py
(the simulated users), longconn.py (the long connection), seeding.py.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.routing import BaseRoute, Route, WebSocketRoute

from sync_pipeline.devtools.sandbox.feishu.approvals import Approvals, _approval_code
from sync_pipeline.devtools.sandbox.feishu.attendance import Attendance
from sync_pipeline.devtools.sandbox.feishu.auth import Auth
from sync_pipeline.devtools.sandbox.feishu.base import API, PLATFORM, Handler, _uuid_like
from sync_pipeline.devtools.sandbox.feishu.callbacks import Callbacks, encrypt_event, sign_event
from sync_pipeline.devtools.sandbox.feishu.contacts import Contacts
from sync_pipeline.devtools.sandbox.feishu.external_approvals import ExternalApprovals
from sync_pipeline.devtools.sandbox.feishu.messages import Messages
from sync_pipeline.devtools.sandbox.feishu.seeding import Seeding

__all__ = ["FeishuEmulator", "_approval_code", "_uuid_like", "encrypt_event", "sign_event"]


class FeishuEmulator(
    Auth, Approvals, ExternalApprovals, Attendance, Contacts, Messages, Callbacks, Seeding
):
    """Feishu open platform at its own paths, with its tokens, limits, errors and callbacks."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Feishu / Lark open platform"
    port_offset: ClassVar[int] = 4

    # -- seam ---------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        authed: list[tuple[str, str, Handler]] = [
            ("GET", "/approval/v4/instances", self._list_instances),
            ("GET", "/approval/v4/instances/{instance_id}", self._get_instance),
            ("POST", "/approval/v4/tasks/approve", self._approve_task),
            ("POST", "/approval/v4/tasks/reject", self._reject_task),
            ("POST", "/approval/v4/approvals/{approval_code}/subscribe", self._subscribe),
            ("POST", "/approval/v4/external_approvals", self._create_external_approval),
            ("GET", "/approval/v4/external_approvals/{approval_code}", self._get_external_approval),
            ("POST", "/approval/v4/external_instances", self._sync_external_instance),
            ("POST", "/approval/v4/external_instances/check", self._check_external_instances),
            ("GET", "/approval/v4/external_tasks", self._list_external_tasks),
            ("POST", "/attendance/v1/user_tasks/query", self._query_user_tasks),
            ("GET", "/contact/v3/users/find_by_department", self._find_users_by_department),
            ("GET", "/contact/v3/users", self._find_users_by_department),
            ("GET", "/contact/v3/departments/{department_id}/children", self._department_children),
            ("POST", "/im/v1/messages", self._create_message),
            ("GET", "/im/v1/messages", self._list_messages),
            ("PATCH", "/im/v1/messages/{message_id}", self._patch_message),
            ("POST", "/interactive/v1/card/update", self._delayed_card_update),
            ("GET", "/im/v1/chats", self._list_chats),
        ]
        routes: list[BaseRoute] = [
            Route(
                f"{API}/auth/v3/tenant_access_token/internal",
                self._tenant_access_token,
                methods=["POST"],
            ),
            # The long connection (longconn.py): outside /open-apis, as lark-oapi asks for it.
            Route("/callback/ws/endpoint", self._ws_endpoint, methods=["POST"]),
            WebSocketRoute("/ws", self._ws),
        ]
        routes += [Route(API + path, self._endpoint(fn), methods=[m]) for m, path, fn in authed]
        # The gateway answers any other path or method in plain text (observed).
        everything = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
        routes.append(Route("/{path:path}", self._not_found, methods=everything))
        return routes
