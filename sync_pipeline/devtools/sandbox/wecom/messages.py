"""WeCom messages (消息推送): `message/send` (text, markdown, textcard, template cards,
duplicate check), `update_template_card`, and group chats (`appchat/...`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.wecom.base import PLATFORM, WeComBase, WeComError, as_int

RESPONSE_CODE_TTL_MS = 72 * 3_600_000  # update_template_card: each code valid 72 h, once
DUPLICATE_DEFAULT_S, DUPLICATE_MAX_S = 1800, 4 * 3600
TEXT_MAX_BYTES = 2048
INTERACTIVE_CARDS = ("button_interaction", "vote_interaction", "multiple_interaction")
CARD_TYPES = ("text_notice", "news_notice", *INTERACTIVE_CARDS)
CARD_LIST_MAX = 6  # horizontal_content_list, like button_list, holds at most 6 entries
MESSAGE_TYPES = ("text", "markdown", "textcard", "template_card")
APPCHAT_TYPES = ("text", "markdown", "textcard")


def chatid_for(group_id: str) -> str:
    return "wr" + hashlib.sha256(f"wecom-chat/{group_id}".encode()).hexdigest()[:30]


class Messages(WeComBase):
    """App messages, template cards and group chats."""

    def _recipients(self, args: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """Resolved userids, and the invalid ones WeCom reports back ("a|b")."""
        users = {u["userid"]: u for u in self.store.list(PLATFORM, "user")}
        touser = str(args.get("touser", "") or "")
        toparty = str(args.get("toparty", "") or "")
        totag = str(args.get("totag", "") or "")
        if not (touser or toparty or totag):
            raise WeComError(40035, "touser, toparty and totag are all empty")
        wanted: list[str] = []
        invalid_users: list[str] = []
        if touser == "@all":
            wanted = list(users)
        elif touser:
            for userid in touser.split("|"):
                (wanted if userid in users else invalid_users).append(userid)
        invalid_parties: list[str] = []
        for party in filter(None, toparty.split("|")):
            members = [
                u for u, row in users.items() if party.isdigit() and int(party) in row["department"]
            ]
            if not members and not any(
                str(d["id"]) == party for d in self.store.list(PLATFORM, "department")
            ):
                invalid_parties.append(party)
            wanted += members
        invalid = {
            "invaliduser": "|".join(invalid_users),
            "invalidparty": "|".join(invalid_parties),
            "invalidtag": totag,  # the sandbox's corp has no tags
        }
        recipients = list(dict.fromkeys(wanted))
        if not recipients:
            raise WeComError(81013, "user & party & tag all invalid")
        return recipients, invalid

    def _check_agent(self, args: Mapping[str, Any]) -> None:
        if "agentid" not in args or args["agentid"] in ("", None):
            raise WeComError(41011, "agentid missing")
        if str(args["agentid"]) != self.credentials()["agentid"]:
            raise WeComError(40056, "invalid agentid")

    @staticmethod
    def _check_content(msgtype: str, args: Mapping[str, Any]) -> None:
        content = args.get(msgtype)
        if not isinstance(content, dict):
            raise WeComError(40058, f"{msgtype} missing")
        if msgtype in ("text", "markdown"):
            text = str(content.get("content", ""))
            if not text:
                raise WeComError(44004, "content is empty")
            if len(text.encode("utf-8")) > TEXT_MAX_BYTES:
                raise WeComError(45002, "content size out of limit")
        if msgtype == "textcard":
            if not content.get("title"):
                raise WeComError(41016, "title missing")
            if not content.get("description"):
                raise WeComError(41033, "description missing")
            if not content.get("url"):
                raise WeComError(41010, "url missing")

    def _check_card(self, card: Mapping[str, Any]) -> None:
        card_type = card.get("card_type")
        if card_type not in CARD_TYPES:
            raise WeComError(40058, "invalid template_card.card_type")
        rows = card.get("horizontal_content_list", [])
        if not isinstance(rows, list) or len(rows) > CARD_LIST_MAX:
            raise WeComError(40058, "template_card.horizontal_content_list holds at most 6")
        if card_type not in INTERACTIVE_CARDS:
            return
        task_id = str(card.get("task_id", ""))
        if not task_id or len(task_id.encode()) > 128:
            raise WeComError(40058, "template_card.task_id must be 1 to 128 bytes")
        if self.store.setting(PLATFORM, "callback_url") is None:
            raise WeComError(43012, "callback url of the app is not set")
        if card_type == "button_interaction":
            buttons = card.get("button_list")
            if not isinstance(buttons, list) or not 0 < len(buttons) <= 6:
                raise WeComError(40058, "template_card.button_list must hold 1 to 6 buttons")
            for button in buttons:
                key = str(button.get("key", ""))
                if button.get("type", 0) == 0 and not 0 < len(key.encode()) <= 1024:
                    raise WeComError(40058, "button key must be 1 to 1024 bytes")
        # A task_id is unique per app for ever; reusing one is refused. The errcode WeCom uses
        # for it is unconfirmed; 40058 (invalid parameter) is the plausible one.
        if self.store.get(PLATFORM, "card", task_id) is not None:
            raise WeComError(40058, "template_card.task_id already used")

    def message_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Send to users, parties or @all; same content within the interval is a duplicate.

        With `enable_duplicate_check` a repeat of the same message inside
        `duplicate_check_interval` (default 1800 s, max 4 h) is not sent again. WeCom does not
        document its answer for that case; the sandbox answers as for the first send (same
        msgid), which is what makes a blind retry harmless. Only the first send is in the
        ledger.
        """
        self._check_agent(args)
        msgtype = str(args.get("msgtype", ""))
        if msgtype not in MESSAGE_TYPES:
            raise WeComError(40008, "invalid message type")
        self._check_content(msgtype, args)
        recipients, invalid = self._recipients(args)
        dedupe = str(args.get("enable_duplicate_check", 0)) == "1"
        interval = min(
            as_int(
                args.get("duplicate_check_interval", DUPLICATE_DEFAULT_S),
                "duplicate_check_interval",
                40058,
            ),
            DUPLICATE_MAX_S,
        )
        content = {
            k: v
            for k, v in args.items()
            if k not in ("access_token", "enable_duplicate_check", "duplicate_check_interval")
        }
        key = (
            "dup:"
            + hashlib.sha256(
                json.dumps(content, sort_keys=True, ensure_ascii=False).encode()
            ).hexdigest()
        )
        with self._write_lock:
            if dedupe:
                first = self.store.find_write(PLATFORM, key, interval)
                if first is not None:
                    again: dict[str, Any] = {
                        k: first.body[k] for k in ("msgid", "response_code") if k in first.body
                    }
                    return {**invalid, "unlicenseduser": "", **again}
            if msgtype == "template_card":
                self._check_card(args["template_card"])
            msgid = secrets.token_urlsafe(24)
            answer: dict[str, Any] = {"msgid": msgid}
            card = args.get("template_card") if msgtype == "template_card" else None
            if card is not None and card.get("card_type") in INTERACTIVE_CARDS:
                answer["response_code"] = self._new_response_code(str(card["task_id"]))
                self.store.put(
                    PLATFORM,
                    "card",
                    str(card["task_id"]),
                    {
                        "task_id": card["task_id"],
                        "msgid": msgid,
                        "touser": recipients,
                        "template_card": card,
                    },
                )
            self.store.record(
                PLATFORM,
                "message/send",
                app,
                {**content, **answer, "delivered_to": recipients},
                idem_key=key if dedupe else None,
            )
        return {**invalid, "unlicenseduser": "", **answer}

    def _new_response_code(self, task_id: str) -> str:
        code = secrets.token_urlsafe(48)
        body = {"task_id": task_id, "expires_ms": now_ms() + RESPONSE_CODE_TTL_MS, "used": False}
        self.store.put(PLATFORM, "response_code", code, body)
        return code

    def update_template_card(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Replace a card's buttons or the whole card; each response_code works once, for 72 h.

        WeCom's errcode for a used or expired response_code is unconfirmed; the sandbox answers
        40058 (invalid parameter).
        """
        self._check_agent(args)
        code = str(args.get("response_code", ""))
        if not code:
            raise WeComError(40058, "response_code missing")
        replace = args.get("button") if isinstance(args.get("button"), dict) else None
        new_card = (
            args.get("template_card") if isinstance(args.get("template_card"), dict) else None
        )
        if replace is None and new_card is None:
            raise WeComError(40058, "button or template_card missing")
        with self._write_lock:
            grant = self.store.get(PLATFORM, "response_code", code)
            if grant is None or grant["used"] or grant["expires_ms"] < now_ms():
                raise WeComError(40058, "invalid response_code")
            card = self.store.get(PLATFORM, "card", grant["task_id"])
            if card is None:
                raise WeComError(40058, "invalid response_code")
            if replace is not None:
                card["replace_name"] = str(replace.get("replace_name", ""))
            else:
                card["template_card"] = new_card
            self.store.put(PLATFORM, "response_code", code, {**grant, "used": True})
            self.store.put(PLATFORM, "card", grant["task_id"], card)
            body = {k: v for k, v in args.items() if k != "access_token"}
            self.store.record(PLATFORM, "message/update_template_card", app, body, idem_key=code)
        return {"invaliduser": []}

    # -- group chats -------------------------------------------------------------------------
    def appchat_create(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        userlist = args.get("userlist")
        if not isinstance(userlist, list) or not 2 <= len(userlist) <= 2000:
            raise WeComError(86006, "chat member count must be 2 to 2000")
        known = {
            u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": userlist})
        }
        if set(map(str, userlist)) - known:
            raise WeComError(86216, "invalid chat member")
        owner = str(args.get("owner") or userlist[0])
        if owner not in known:
            raise WeComError(86005, "invalid chat owner")
        chatid = str(args.get("chatid") or "wr" + secrets.token_hex(15))
        chat = {
            "chatid": chatid,
            "name": str(args.get("name", "")),
            "owner": owner,
            "userlist": [str(u) for u in userlist],
            "chat_type": 0,
        }
        with self._write_lock:
            if self.store.get(PLATFORM, "appchat", chatid) is not None:
                raise WeComError(86215, "chatid already exists")
            self.store.put(PLATFORM, "appchat", chatid, chat)
            self.store.record(PLATFORM, "appchat/create", app, chat, idem_key=None)
        return {"chatid": chatid}

    def appchat_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        chat = self.store.get(PLATFORM, "appchat", str(args.get("chatid", "")))
        if chat is None:
            raise WeComError(86003, "chatid not found")
        return {"chat_info": chat}

    def appchat_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        chatid = str(args.get("chatid", ""))
        if not chatid:
            raise WeComError(86201, "chatid missing")
        chat = self.store.get(PLATFORM, "appchat", chatid)
        if chat is None:
            raise WeComError(86003, "chatid not found")
        msgtype = str(args.get("msgtype", ""))
        if msgtype not in APPCHAT_TYPES:
            raise WeComError(40008, "invalid message type")
        self._check_content(msgtype, args)
        body = {k: v for k, v in args.items() if k != "access_token"}
        self.store.record(PLATFORM, "appchat/send", app, {**body, "delivered_to": chat["userlist"]})
        return {}
