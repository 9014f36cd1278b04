"""users.list (cursor-paged) and users.lookupByEmail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.slack.base import (
    PLATFORM,
    SlackBase,
    SlackError,
    cursor_for,
    cursor_value,
    int_arg,
)

MAX_LIMIT = 1000  # users.list: "no more than 1000"; 0 means every member at once (legacy)


class Users(SlackBase):
    def _user(self, user_id: str) -> dict[str, Any] | None:
        return self.store.get(PLATFORM, "user", user_id)

    def _users_list(self, args: Mapping[str, Any]) -> dict[str, Any]:
        limit = int_arg(args, "limit", 0)
        if limit < 0 or limit > MAX_LIMIT:
            raise SlackError("invalid_limit")
        offset = 0
        if args.get("cursor"):
            offset = int(cursor_value(str(args["cursor"]), "user:"))
        members = self.store.list(
            PLATFORM, "user", time_field="created_ms", offset=offset, limit=limit or None
        )
        more = bool(limit) and self.store.count(PLATFORM, "user") > offset + len(members)
        return {
            "members": [public(m) for m in members],
            "cache_ts": 0,
            "response_metadata": {
                "next_cursor": cursor_for(f"user:{offset + len(members)}") if more else ""
            },
        }

    def _lookup_by_email(self, args: Mapping[str, Any]) -> dict[str, Any]:
        email = str(args.get("email", "")).strip()
        if not email:
            raise SlackError("invalid_arguments")
        found = self.store.list(PLATFORM, "user", equals={"_email": email.lower()}, limit=1)
        if not found:
            raise SlackError("users_not_found")
        return {"user": public(found[0])}


def public(user: Mapping[str, Any]) -> dict[str, Any]:
    """A member as the API shows it (our own `_` fields left out)."""
    return {k: v for k, v in user.items() if not k.startswith("_")}
