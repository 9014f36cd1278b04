"""The simulated user and Agora Chat's post-delivery callback, signed with
`security = md5_hex(callId + secret + timestamp)` and re-sent once after a failure.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase
from sync_pipeline.devtools.sandbox.core import deliver_callback, now_ms
from sync_pipeline.devtools.sandbox.emulator import PressError


def callback_security(call_id: str, secret: str, timestamp: int) -> str:
    """The post-delivery callback's `security`: md5_hex(callId + secret + timestamp)."""
    return hashlib.md5((call_id + secret + str(timestamp)).encode()).hexdigest()  # noqa: S324


class Callbacks(AgoraBase):
    """Acts as an Agora Chat user and sends the post-delivery callback."""

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """A user sends a message from a client SDK: it is stored and the post-delivery
        callback goes to the `callback_url` setting, re-sent once if it fails."""
        if action.get("kind") != "message":
            raise PressError("agora press kind must be 'message'")
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("set the agora callback_url setting before pressing")
        sender = str(action.get("from", ""))
        if self.store.get(PLATFORM, "user", sender) is None:
            raise PressError(f"no agora user {sender!r}")
        chat_type = str(action.get("chat_type", "chat"))
        target = str(action.get("to", ""))
        kind = "group" if chat_type == "groupchat" else "user"
        if chat_type not in ("chat", "groupchat") or self.store.get(PLATFORM, kind, target) is None:
            raise PressError(f"no agora {kind} {target!r} for chat_type {chat_type!r}")
        msg_type = str(action.get("type", "txt"))
        body = action.get("body") or {"msg": str(action.get("msg", ""))}
        ext = dict(action.get("ext") or {})
        message = self._store_message(sender, target, chat_type, msg_type, dict(body), ext)
        creds = self.credentials()
        call_id = f"{creds['app_key']}_{uuid.uuid4()}"
        stamp = now_ms()
        callback: dict[str, Any] = {
            "callId": call_id,
            "eventType": "chat",
            "timestamp": stamp,
            "chat_type": chat_type,
            "from": sender,
            "to": target,
            "msg_id": message["msg_id"],
            "payload": {"ext": ext, "bodies": message["payload"]["bodies"]},
            "securityVersion": "1.0.0",
            "security": callback_security(call_id, creds["callback_secret"], stamp),
            "appkey": creds["app_key"],
            "host": urlparse(self.base_url).netloc,
        }
        if chat_type == "groupchat":
            callback["group_id"] = target
        raw = json.dumps(callback, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        statuses = deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
        if statuses and 200 not in statuses:
            # Post-delivery callbacks are re-sent once after a failure, then dropped.
            statuses += deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
        return {"msg_id": message["msg_id"], "callId": call_id, "delivered": statuses}
