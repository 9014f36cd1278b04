"""DingTalk messages: work notifications (`/topapi/message/corpconversation/...`) and
robot messages to groups and to people (`/v1.0/robot/...`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sync_pipeline.devtools.sandbox.dingtalk.base import (
    CHINA,
    PLATFORM,
    DingTalkBase,
    OapiError,
    invalid,
    missing,
)


class Messages(DingTalkBase):
    """Work notifications and robot messages."""

    def asyncsend(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """A work notification: accepted at once, delivered later, the excess dropped silently.

        The same content reaches a user at most once a day per app; a repeat still "succeeds"
        and the user shows up in getsendresult's forbidden list (platform-apis.md §2.1).
        """
        creds = self.credentials()
        if str(args.get("agent_id", "")) != creds["agentId"]:
            raise OapiError(40056, "不合法的agent_id")  # the errcode is unconfirmed
        msg = args.get("msg")
        if isinstance(msg, str):
            try:
                msg = json.loads(msg)
            except ValueError:
                msg = None
        if not isinstance(msg, dict) or not msg.get("msgtype"):
            raise OapiError(40035, "msg must hold a msgtype")
        if len(json.dumps(msg, ensure_ascii=False).encode()) > 2048:
            raise OapiError(40035, "msg must be at most 2048 bytes")
        users = {u["userid"] for u in self.store.list(PLATFORM, "user")}
        wanted = [u for u in str(args.get("userid_list", "") or "").split(",") if u]
        if len(wanted) > 100:
            raise OapiError(40035, "userid_list must hold at most 100 userids")
        if str(args.get("to_all_user", "false")).lower() == "true":
            wanted = sorted(users)
        invalid_users = [u for u in wanted if u not in users]
        targets = list(dict.fromkeys(u for u in wanted if u in users))
        digest = hashlib.sha256(json.dumps(msg, sort_keys=True).encode()).hexdigest()[:24]
        day = datetime.now(CHINA).strftime("%Y%m%d")
        task_id = secrets.randbelow(9 * 10**11) + 10**11
        with self._write_lock:
            seen = {
                row["userid"]
                for row in self.store.list(
                    PLATFORM,
                    "notified",
                    one_of={"key": [f"{day}:{u}:{digest}" for u in targets]},
                )
            }
            delivered = [u for u in targets if u not in seen]
            forbidden = [u for u in targets if u in seen]
            self.store.put_many(
                PLATFORM,
                "notified",
                [
                    (f"{day}:{u}:{digest}", {"key": f"{day}:{u}:{digest}", "userid": u}, None, None)
                    for u in delivered
                ],
            )
            task = {
                "task_id": task_id,
                "invalid_user_id_list": invalid_users,
                "forbidden_user_id_list": forbidden,
                "unread_user_id_list": delivered,
            }
            self.store.put(PLATFORM, "send_task", str(task_id), task)
            body = {**args, "task_id": task_id, "delivered_to": delivered}
            self.store.record(PLATFORM, "message/corpconversation/asyncsend_v2", app, body)
        return {"task_id": task_id}

    def getsendresult(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        task = self.store.get(PLATFORM, "send_task", str(args.get("task_id", "")))
        if task is None:
            raise OapiError(40035, "task_id不存在")
        return {
            "send_result": {
                "invalid_user_id_list": task["invalid_user_id_list"],
                "forbidden_user_id_list": task["forbidden_user_id_list"],
                "failed_user_id_list": [],
                "read_user_id_list": [],
                "unread_user_id_list": task["unread_user_id_list"],
                "invalid_dept_id_list": [],
                "forbidden_list": [],
            }
        }

    # -- robot messages ----------------------------------------------------------------------
    def _robot_message(self, args: Mapping[str, Any]) -> None:
        for name in ("robotCode", "msgKey", "msgParam"):
            if not args.get(name):
                raise missing(name)
        if args["robotCode"] != self.credentials()["robotCode"]:
            raise invalid("robotCode不存在")
        try:
            json.loads(str(args["msgParam"]))
        except ValueError:
            raise invalid("msgParam must be a JSON string") from None

    def group_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        self._robot_message(args)
        if not args.get("openConversationId"):
            raise missing("openConversationId")
        chat = self.store.get(PLATFORM, "chat", str(args["openConversationId"]))
        if chat is None:
            raise invalid("openConversationId不存在")
        key = secrets.token_urlsafe(24)
        body = {**args, "processQueryKey": key, "delivered_to": chat["useridlist"]}
        self.store.record(PLATFORM, "robot/groupMessages/send", app, body)
        return {"processQueryKey": key}

    def robot_batch_send(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        self._robot_message(args)
        user_ids = args.get("userIds")
        if not isinstance(user_ids, list) or not 0 < len(user_ids) <= 20:
            raise invalid("userIds must hold 1 to 20 userIds")
        known = {
            u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": user_ids})
        }
        delivered = [u for u in user_ids if u in known]
        key = secrets.token_urlsafe(24)
        body = {**args, "processQueryKey": key, "delivered_to": delivered}
        self.store.record(PLATFORM, "robot/oToMessages/batchSend", app, body)
        return {
            "processQueryKey": key,
            "invalidStaffIdList": [u for u in user_ids if u not in known],
            "flowControlledStaffIdList": [],
        }
