"""chat.postMessage and chat.update: text, Block Kit blocks (buttons), message metadata.

A channel given as a member's id (`U...`) posts to the app's DM with them, as Slack does.
Every accepted post and update is recorded in the ledger; the message's metadata is kept
and shown by conversations.history with `include_all_metadata`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.slack.base import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    MAX_TEXT,
    PLATFORM,
    POST_PER_CHANNEL,
    SlackBase,
    SlackError,
    slack_ts,
)


class Chat(SlackBase):
    def _channel_of(self, args: Mapping[str, Any]) -> str:
        channel = str(args.get("channel", ""))
        if not channel:
            raise SlackError("channel_not_found")
        if channel.startswith("U"):
            user = self._user(channel)
            if user is None or user.get("deleted"):
                raise SlackError("channel_not_found")
            return self._dm_channel(channel)
        if self.store.get(PLATFORM, "channel", channel) is None:
            raise SlackError("channel_not_found")
        return channel

    def _post_message(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._channel_of(args)
        text, blocks = _content(args)
        metadata = _metadata(args.get("metadata"))
        self._check_rate(("chat.postMessage", channel), POST_PER_CHANNEL)
        creds = self.credentials()
        with self._lock:  # two posts in the same microsecond would share a ts
            ts = slack_ts()
            while self.store.get(PLATFORM, "message", f"{channel}/{ts}") is not None:
                ts = f"{float(ts) + 0.000001:.6f}"
            message: dict[str, Any] = {
                "type": "message",
                "subtype": "bot_message",
                "text": text[:MAX_TEXT],
                "user": creds["bot_user_id"],
                "bot_id": creds["bot_id"],
                "app_id": creds["app_id"],
                "team": creds["team_id"],
                "ts": ts,
                "blocks": blocks,
                "_channel": channel,
            }
            if metadata is not None:
                message["metadata"] = metadata
            self.store.put(PLATFORM, "message", f"{channel}/{ts}", message, created_ms=now_ms())
        self.store.record(
            PLATFORM,
            "chat.postMessage",
            creds["app_id"],
            {"channel": channel, "ts": ts, "text": text, "blocks": blocks, "metadata": metadata},
        )
        shown = {k: v for k, v in message.items() if not k.startswith("_")}
        return {"channel": channel, "ts": ts, "message": shown}

    def _update(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._channel_of(args)
        ts = str(args.get("ts", ""))
        message = self.store.get(PLATFORM, "message", f"{channel}/{ts}")
        if message is None:
            raise SlackError("message_not_found")
        if message.get("bot_id") != self.credentials()["bot_id"]:
            raise SlackError("cant_update_message")
        text, blocks = _content(args, updating=message)
        message.update({"text": text, "blocks": blocks, "edited": {"ts": slack_ts()}})
        if "metadata" in args:
            message["metadata"] = _metadata(args.get("metadata"))
        self.store.put(PLATFORM, "message", f"{channel}/{ts}", message)
        self.store.record(
            PLATFORM,
            "chat.update",
            self.credentials()["app_id"],
            {"channel": channel, "ts": ts, "text": text, "blocks": blocks},
        )
        return {"channel": channel, "ts": ts, "text": text, "message": {"text": text}}


def _content(
    args: Mapping[str, Any], updating: Mapping[str, Any] | None = None
) -> tuple[str, list[Any]]:
    text = args.get("text")
    blocks = args.get("blocks")
    if blocks in (None, "") and updating is not None:
        blocks = updating.get("blocks") or []
    if blocks in (None, ""):
        blocks = []
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SlackError("invalid_blocks")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        if block.get("type") not in {"section", "actions", "context", "divider", "header"}:
            raise SlackError("invalid_blocks")
        section = block.get("text")
        if isinstance(section, dict) and len(str(section.get("text", ""))) > MAX_SECTION_TEXT:
            raise SlackError("msg_blocks_too_long")
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                if not isinstance(element, dict) or not element.get("action_id"):
                    raise SlackError("invalid_blocks")
    if not isinstance(text, str) or not text:
        if not blocks:
            raise SlackError("no_text")
        text = "" if text is None else str(text)
    return text, blocks


def _metadata(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("event_type"), str)
        or not isinstance(value.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": value["event_type"], "event_payload": value["event_payload"]}
