"""Agora Chat messages (`/messages/users`, `/messages/chatgroups`, `messages/msg_recall`);
cards are custom messages, and a card update is a recall plus a new message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, AgoraError, _bad
from sync_pipeline.devtools.sandbox.core import now_ms

CUSTOM_EVENT = re.compile(r"^[a-zA-Z0-9\-_/.]{1,32}$")
MSG_TYPES = ("txt", "img", "audio", "video", "file", "loc", "cmd", "custom")
MAX_USER_RECIPIENTS = 600
MAX_GROUP_RECIPIENTS = 3
MAX_BODY_EXT_BYTES = 5 * 1024
RECALL_WINDOW_S = 120  # default; the console can extend it to 7 days
PER_GROUP_MSGS_PER_S = 20


class Messages(AgoraBase):
    """Sending and recalling messages."""

    def _send_to_users(self, request: Request, body: Any) -> dict[str, Any]:
        return self._send(body, "chat", MAX_USER_RECIPIENTS, "POST /messages/users")

    def _send_to_groups(self, request: Request, body: Any) -> dict[str, Any]:
        return self._send(body, "groupchat", MAX_GROUP_RECIPIENTS, "POST /messages/chatgroups")

    def _send(self, body: Any, chat_type: str, most: int, endpoint: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        sender = body.get("from", "admin")
        if not isinstance(sender, str) or sender == "":
            raise _bad("'From' can't be empty.")
        to = body.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= most:
            raise _bad(f"'to' must list 1 to {most} recipients.")
        msg_type = body.get("type")
        if msg_type not in MSG_TYPES:
            raise _bad(f"message type {msg_type!r} is not supported.")
        content = body.get("body")
        if not isinstance(content, dict):
            raise _bad("message body is required.")
        ext = body.get("ext", {})
        if not isinstance(ext, dict):
            raise _bad("ext can't be null.")
        _check_body(msg_type, content)
        size = len(json.dumps(content, ensure_ascii=False).encode()) + len(
            json.dumps(ext, ensure_ascii=False).encode()
        )
        if size > MAX_BODY_EXT_BYTES:
            # The send page says 413; the status-code page lists 400 "message is too large".
            raise AgoraError(413, "illegal_argument", "message is too large")
        if chat_type == "groupchat":
            for group in to:
                if self.store.get(PLATFORM, "group", str(group)) is None:
                    raise AgoraError(
                        404, "service_resource_not_found", "Service resource not found."
                    )
                self._check_rate(str(group), "group-messages", PER_GROUP_MSGS_PER_S, 1.0)
        data = {
            str(target): self._store_message(
                sender, str(target), chat_type, msg_type, content, ext
            )["msg_id"]
            for target in to
        }
        self.store.record(PLATFORM, endpoint, sender, {**body, "msg_ids": data})
        return {"data": data}

    def _recall(self, request: Request, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("This is an invalid request.")
        msg_id, to, chat_type = body.get("msg_id"), body.get("to"), body.get("chat_type")
        if not (isinstance(msg_id, str) and isinstance(to, str) and msg_id and to):
            raise _bad("msg_id and to are required.")
        if chat_type not in ("chat", "groupchat", "chatroom"):
            raise _bad("chat_type must be chat, groupchat or chatroom.")
        recaller = str(body.get("from", "admin"))
        answer = {
            "msg_id": msg_id,
            "chattype": {"groupchat": "group_chat"}.get(chat_type, chat_type),
            "from": recaller,
            "to": to,
        }
        message = self.store.get(PLATFORM, "message", msg_id)
        # The failure values of `recalled` are (unconfirmed); success is "yes" (REST page).
        if message is None or message.get("_recalled") or message["to"] != to:
            return {"data": {"recalled": "not_found msg", **answer}}
        window_ms = self._int_setting("recall_window_s", RECALL_WINDOW_S) * 1000
        if now_ms() - int(message["timestamp"]) > window_ms and body.get("force") is not True:
            return {"data": {"recalled": "exceed recall time limit", **answer}}
        message["_recalled"] = True
        self.store.put(PLATFORM, "message", msg_id, message)
        self.store.record(PLATFORM, "POST /messages/msg_recall", recaller, dict(body))
        return {"data": {"recalled": "yes", **answer}}


def _check_body(msg_type: str, content: Mapping[str, Any]) -> None:
    if msg_type == "txt" and not isinstance(content.get("msg"), str):
        raise _bad("txt messages need body.msg.")
    if msg_type == "cmd" and not isinstance(content.get("action"), str):
        raise _bad("cmd messages need body.action.")
    if msg_type == "custom":
        event = content.get("customEvent")
        if event is not None and not (isinstance(event, str) and CUSTOM_EVENT.match(event)):
            raise _bad("customEvent must match [a-zA-Z0-9-_/.]{1,32}.")
        exts = content.get("customExts", {})
        if not isinstance(exts, dict) or len(exts) > 16:
            raise _bad("customExts must be a map of at most 16 entries.")
