"""Feishu IM (`/im/v1/messages`, `/im/v1/chats`) and cards: send (uuid dedupe for 1 h),
list, patch a card, delayed card update by token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.feishu.base import (
    API,
    LIMITS,
    PLATFORM,
    FeishuBase,
    FeishuError,
    _Caller,
    _encode_token,
    _hex,
    _public,
)
from sync_pipeline.devtools.sandbox.world import DAY_MS

UUID_WINDOW_S = 3600  # one message per `uuid` per hour
CARD_TOKEN_USES = 2  # ... and 2 uses (an older doc says 3)
PATCH_MAX_AGE_MS = 14 * DAY_MS  # cards can be updated for 14 days after sending
TEXT_MAX_BYTES = 150 * 1024
CARD_MAX_BYTES = 30 * 1024
PER_MESSAGE_PATCH_QPS = 5  # answered with 230020 in the body, not by the gateway

RECEIVE_ID_TYPES = ("open_id", "user_id", "union_id", "email", "chat_id")
MSG_TYPES = (
    "text",
    "post",
    "image",
    "file",
    "audio",
    "media",
    "sticker",
    "interactive",
    "share_chat",
    "share_user",
)


class Messages(FeishuBase):
    """Messages, chats and card updates."""

    async def _create_message(self, request: Request, caller: _Caller) -> Response | dict[str, Any]:
        self._check_rate(caller.app_id, "im.message.create")
        id_type = request.query_params.get("receive_id_type", "")
        if id_type not in RECEIVE_ID_TYPES:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. receive_id_type"
            )
        body = await self._json(request)
        msg_type, content = body.get("msg_type"), body.get("content")
        receive_id = str(body.get("receive_id", ""))
        if msg_type not in MSG_TYPES or not isinstance(content, str) or not receive_id:
            raise FeishuError(230001, "Your request contains an invalid request parameter.")
        _check_content(msg_type, content)
        dedupe = body.get("uuid")
        if dedupe is not None and (not isinstance(dedupe, str) or len(dedupe) > 50):
            raise FeishuError(230001, "Your request contains an invalid request parameter. uuid")
        with self._dedupe_lock:
            if dedupe:
                first = self.store.find_write(PLATFORM, f"im.message.uuid:{dedupe}", UUID_WINDOW_S)
                if first is not None:
                    # The vendor answers the first message again; nothing is sent twice.
                    earlier = self.store.get(PLATFORM, "message", first.body["message_id"])
                    if earlier is not None:
                        return _public(earlier)
            chat_id = self._chat_for(id_type, receive_id)
            message = self._new_message(chat_id, msg_type, content, self._app_sender())
            self.store.put(
                PLATFORM,
                "message",
                message["message_id"],
                message,
                created_ms=int(message["create_time"]),
            )
            self.store.record(
                PLATFORM,
                f"POST {API}/im/v1/messages",
                caller.app_id,
                {**body, "receive_id_type": id_type, "message_id": message["message_id"]},
                idem_key=f"im.message.uuid:{dedupe}" if dedupe else None,
            )
        return _public(message)

    def _app_sender(self) -> dict[str, str]:
        creds = self.credentials()
        return {
            "id": creds["app_id"],
            "id_type": "app_id",
            "sender_type": "app",
            "tenant_key": creds["tenant_key"],
        }

    @staticmethod
    def _new_message(
        chat_id: str, msg_type: str, content: str, sender: Mapping[str, str], **extra: Any
    ) -> dict[str, Any]:
        at = str(now_ms())
        return {
            "message_id": "om_" + uuid.uuid4().hex,
            "root_id": "",
            "parent_id": "",
            "msg_type": msg_type,
            "create_time": at,
            "update_time": at,
            "deleted": False,
            "updated": False,
            "chat_id": chat_id,
            "sender": dict(sender),
            "body": {"content": content},
            **extra,
        }

    def _chat_for(self, id_type: str, receive_id: str) -> str:
        """The chat a message lands in: the group itself, or the bot's p2p chat with the user."""
        if id_type == "chat_id":
            chat = self.store.get(PLATFORM, "chat", receive_id)
            if chat is None:
                raise FeishuError(230002, "The bot can not be outside the group.")
            return receive_id
        user = self._user_by(id_type, receive_id)
        if user is None:
            # Unknown or out-of-scope user; code per the send doc's error table (unconfirmed).
            raise FeishuError(230013, "Bot has NO availability to this user.")
        return self._p2p_chat(user)

    def _p2p_chat(self, user: Mapping[str, Any]) -> str:
        chat_id = "oc_" + _hex("p2p", user["open_id"])
        if self.store.get(PLATFORM, "chat", chat_id) is None:
            self.store.put(
                PLATFORM,
                "chat",
                chat_id,
                {"chat_id": chat_id, "chat_mode": "p2p", "_members": [user["open_id"]]},
            )
        return chat_id

    def _list_messages(self, request: Request, caller: _Caller) -> dict[str, Any]:
        q = request.query_params
        if q.get("container_id_type") != "chat":
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. container_id_type"
            )
        chat_id = q.get("container_id", "")
        if self.store.get(PLATFORM, "chat", chat_id) is None:
            raise FeishuError(230002, "The bot can not be outside the group.")
        try:
            start = int(q.get("start_time") or 0) * 1000  # seconds on this API
            end = int(q["end_time"]) * 1000 + 1000 if q.get("end_time") else 2**62
        except ValueError:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. time"
            ) from None
        sort = q.get("sort_type", "ByCreateTimeAsc")
        if sort not in ("ByCreateTimeAsc", "ByCreateTimeDesc"):
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. sort_type"
            )
        size = self._page_size(
            request, 20, 50, lambda d: FeishuError(230001, f"invalid page_size: {d}")
        )
        after = self._cursor(
            q.get("page_token"),
            lambda d: FeishuError(
                230001, f"Your request contains an invalid request parameter. {d}"
            ),
        )
        rows = self._keyset(
            "message",
            "chat_id",
            chat_id,
            from_ms=start,
            to_ms=end,
            after=after,
            limit=size + 1,
            desc=sort == "ByCreateTimeDesc",
        )
        data: dict[str, Any] = {
            "has_more": len(rows) > size,
            "items": [_public(json.loads(b)) for _, _, b in rows[:size]],
        }
        if data["has_more"]:
            data["page_token"] = _encode_token(rows[size - 1][:2])
        return data

    async def _patch_message(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "im.message.patch")
        message_id = request.path_params["message_id"]
        limits = self._limits("im.message.patch")
        if limits is not None:
            per_message = max(
                1, round(PER_MESSAGE_PATCH_QPS * limits[0][0] / LIMITS["im.message.patch"][0][0])
            )
            if (
                self._windows.hit((message_id, "im.message.patch"), [(per_message, 1.0)])
                is not None
            ):
                raise FeishuError(230020, "This operation triggers the frequency limit.")
        body = await self._json(request)
        content = body.get("content")
        if not isinstance(content, str):
            raise FeishuError(230001, "Your request contains an invalid request parameter. content")
        message = self.store.get(PLATFORM, "message", message_id)
        if message is None:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. message_id"
            )
        if message["deleted"]:
            raise FeishuError(230011, "The message is recalled.")
        if message["msg_type"] != "interactive" or message["sender"].get("sender_type") != "app":
            # Only the app's own interactive cards can be patched; the exact code is (unconfirmed).
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. msg_type"
            )
        if now_ms() - int(message["create_time"]) > PATCH_MAX_AGE_MS:
            raise FeishuError(230031, "Message can only be modified within 14 days after sending.")
        _check_content("interactive", content)
        if not (_update_multi(message["body"]["content"]) and _update_multi(content)):
            # "update_multi": true is required before and after; the exact code is (unconfirmed).
            raise FeishuError(230099, "Failed to create card content. update_multi must be true")
        self._update_card(message, content)
        self.store.record(
            PLATFORM,
            f"PATCH {API}/im/v1/messages/:message_id",
            caller.app_id,
            {"message_id": message_id, "content": content},
        )
        return {}

    def _update_card(self, message: dict[str, Any], content: str) -> None:
        message["body"]["content"] = content
        message["update_time"] = str(now_ms())
        message["updated"] = True
        self.store.put(PLATFORM, "message", message["message_id"], message)

    async def _delayed_card_update(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        token, card = body.get("token"), body.get("card")
        if not isinstance(token, str) or not isinstance(card, dict):
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. token/card"
            )
        grant = self.store.get(PLATFORM, "card_token", token)
        # Expired, used-up and unknown tokens: the vendor's exact code is (unconfirmed).
        if grant is None or now_ms() > grant["expires_ms"]:
            raise FeishuError(
                230001,
                "Your request contains an invalid request parameter. token is invalid or expired",
            )
        if grant["uses"] >= CARD_TOKEN_USES:
            raise FeishuError(
                230001, "Your request contains an invalid request parameter. token used up"
            )
        message = self.store.get(PLATFORM, "message", grant["message_id"])
        if message is None or message["deleted"]:
            raise FeishuError(230011, "The message is recalled.")
        content = json.dumps({k: v for k, v in card.items() if k != "open_ids"}, ensure_ascii=False)
        _check_content("interactive", content)
        grant["uses"] += 1
        self.store.put(PLATFORM, "card_token", token, grant)
        self._update_card(message, content)
        self.store.record(
            PLATFORM,
            f"POST {API}/interactive/v1/card/update",
            caller.app_id,
            {"message_id": message["message_id"], "card": card},
        )
        return {}

    def _list_chats(self, request: Request, caller: _Caller) -> dict[str, Any]:
        rows, meta = self._offset_page(request, "chat", {"chat_mode": "group"}, 20, 100)
        return {"items": [_public(c) for c in rows], **meta}


def _check_content(msg_type: str, content: str) -> None:
    """`content` is a JSON string of an object, within the vendor's size limits."""
    try:
        parsed = json.loads(content)
    except ValueError:
        raise FeishuError(
            230001, "Your request contains an invalid request parameter. content is not JSON"
        ) from None
    if not isinstance(parsed, dict):
        raise FeishuError(230001, "Your request contains an invalid request parameter. content")
    limit = TEXT_MAX_BYTES if msg_type == "text" else CARD_MAX_BYTES
    if len(content.encode()) > limit:
        raise FeishuError(230025, "The length of the message content reaches its limit.")


def _update_multi(content: str) -> bool:
    """A shared card: config.update_multi, which card JSON 2.0 turns on by default."""
    try:
        card = json.loads(content)
    except ValueError:
        return False
    if not isinstance(card, dict):
        return False
    config = card.get("config")
    default = card.get("schema") == "2.0"
    return bool(config.get("update_multi", default)) if isinstance(config, dict) else default
