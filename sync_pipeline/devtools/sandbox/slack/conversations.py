"""conversations.open (the app's DM with a member) and conversations.history (newest first,
cursor-paged, message metadata with `include_all_metadata`)."""

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
    slack_id,
    true_arg,
)

MAX_HISTORY_LIMIT = 999


class Conversations(SlackBase):
    def _dm_channel(self, user_id: str) -> str:
        channel_id = slack_id("D", self.credentials()["team_id"], user_id)
        if self.store.get(PLATFORM, "channel", channel_id) is None:
            self.store.put(
                PLATFORM,
                "channel",
                channel_id,
                {"id": channel_id, "is_im": True, "user": user_id, "created": 0},
            )
        return channel_id

    def _conversations_open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if args.get("channel"):
            channel = self.store.get(PLATFORM, "channel", str(args["channel"]))
            if channel is None:
                raise SlackError("channel_not_found")
            return {"channel": {"id": channel["id"]}, "already_open": True}
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_enough_users")  # multi-person DMs are not emulated
        user = self._user(users[0])
        if user is None or user.get("deleted"):
            raise SlackError("user_not_found")
        channel_id = slack_id("D", self.credentials()["team_id"], users[0])
        opened = self.store.get(PLATFORM, "channel", channel_id) is not None
        self._dm_channel(users[0])
        return {"no_op": opened, "already_open": opened, "channel": {"id": channel_id}}

    def _history(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel_id = str(args.get("channel", ""))
        if not channel_id:
            raise SlackError("channel_not_found")
        if self.store.get(PLATFORM, "channel", channel_id) is None:
            raise SlackError("channel_not_found")
        limit = min(int_arg(args, "limit", 100) or 100, MAX_HISTORY_LIMIT)
        latest = str(args.get("latest") or "")
        if args.get("cursor"):
            latest = cursor_value(str(args["cursor"]), "next_ts:")
        oldest = str(args.get("oldest") or "0")
        inclusive = true_arg(args, "inclusive")
        rows = [
            m
            for m in self.store.list(PLATFORM, "message", equals={"_channel": channel_id})
            if _after(m["ts"], oldest, inclusive) and (not latest or float(m["ts"]) < float(latest))
        ]
        rows.sort(key=lambda m: float(m["ts"]), reverse=True)
        page, more = rows[:limit], len(rows) > limit
        with_metadata = true_arg(args, "include_all_metadata")
        messages = [_shown(m, with_metadata) for m in page]
        answer: dict[str, Any] = {
            "messages": messages,
            "has_more": more,
            "pin_count": 0,
            "response_metadata": {
                "next_cursor": cursor_for(f"next_ts:{page[-1]['ts']}") if more else ""
            },
        }
        return answer


def _after(ts: str, oldest: str, inclusive: bool) -> bool:
    return float(ts) >= float(oldest) if inclusive else float(ts) > float(oldest)


def _shown(message: Mapping[str, Any], with_metadata: bool) -> dict[str, Any]:
    shown = {k: v for k, v in message.items() if not k.startswith("_")}
    if not with_metadata:
        shown.pop("metadata", None)
    return shown
