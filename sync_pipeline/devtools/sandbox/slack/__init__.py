"""Slack Web API emulator: auth.test, chat.postMessage / chat.update with Block Kit,
conversations.open / conversations.history with message metadata, users.list (cursor-paged)
and users.lookupByEmail, tier rate limits (HTTP 429 + Retry-After), signed interactivity and
Socket Mode.

Written from Slack's documented contract (shared/platform-apis.md §4 and §9, docs.slack.dev
method pages, the official `slack-sdk` as a cross-checking client), never from our connector.
Methods live at `/api/<method>` (POST JSON or form, or GET with a query string); every answer
is HTTP 200 with `ok`, and `error` when it is false, except a rate limit: HTTP 429, a
`Retry-After` header in seconds and `{"ok": false, "error": "ratelimited"}`.

Settings (platform "slack"): `interactivity_url` (the Request URL button presses are POSTed
to), `rate_limit_scale` (1 = Slack's tiers, 0 = off), `revoked` ("1": the bot token answers
`token_revoked`).

One module per API family, each a mixin of `SlackBase` (base.py); `SlackEmulator` combines
them and holds the one route table: users.py, conversations.py, chat.py, interactivity.py
(the simulated user, v0 signing), socket_mode.py, seeding.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.routing import BaseRoute, Route, WebSocketRoute

from sync_pipeline.devtools.sandbox.slack.base import (
    PLATFORM,
    TIER_2,
    TIER_3,
    TIER_4,
    Handler,
    SlackError,
)
from sync_pipeline.devtools.sandbox.slack.chat import Chat
from sync_pipeline.devtools.sandbox.slack.conversations import Conversations
from sync_pipeline.devtools.sandbox.slack.interactivity import Interactivity, sign_v0
from sync_pipeline.devtools.sandbox.slack.seeding import Seeding, member_id
from sync_pipeline.devtools.sandbox.slack.socket_mode import SocketMode
from sync_pipeline.devtools.sandbox.slack.users import Users

__all__ = ["SlackEmulator", "member_id", "sign_v0"]


class SlackEmulator(SocketMode, Interactivity, Chat, Conversations, Users, Seeding):
    """The Slack Web API at `/api/<method>`, its limits, interactivity and Socket Mode."""

    platform: ClassVar[str] = PLATFORM
    title: ClassVar[str] = "Slack Web API"
    port_offset: ClassVar[int] = 7

    def routes(self) -> list[BaseRoute]:
        # method -> (handler, tier, token kind); None: a special limit checked by the handler.
        table: dict[str, tuple[Handler, tuple[int, float] | None, str]] = {
            "auth.test": (self._auth_test, TIER_4, "bot"),
            "chat.postMessage": (self._post_message, None, "bot"),
            "chat.update": (self._update, TIER_3, "bot"),
            "conversations.open": (self._conversations_open, TIER_3, "bot"),
            "conversations.history": (self._history, TIER_3, "bot"),
            "users.list": (self._users_list, TIER_2, "bot"),
            "users.lookupByEmail": (self._lookup_by_email, TIER_3, "bot"),
            "apps.connections.open": (self._connections_open, TIER_4, "app"),
        }
        routes: list[BaseRoute] = [
            Route(
                f"/api/{name}",
                self._method(name, handler, tier, token=token),
                methods=["GET", "POST"],
            )
            for name, (handler, tier, token) in table.items()
        ]
        routes.append(WebSocketRoute("/link/", self._link))
        routes.append(
            Route("/api/{method}", self._method("unknown", _unknown, None), methods=["GET", "POST"])
        )
        return routes

    def _auth_test(self, args: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        return {
            "url": "https://sandbox.slack.com/",
            "team": "Sandbox",
            "user": "sync_pipeline",
            "team_id": creds["team_id"],
            "user_id": creds["bot_user_id"],
            "bot_id": creds["bot_id"],
            "is_enterprise_install": False,
        }


def _unknown(args: Mapping[str, Any]) -> dict[str, Any]:
    raise SlackError("unknown_method")
