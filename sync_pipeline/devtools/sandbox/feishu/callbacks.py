"""The simulated users and Feishu's callbacks: card actions, messages, approval decisions
and their events, quick approval, URL verification; encrypted and signed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sync_pipeline.devtools.sandbox.core import deliver_callback, now_ms
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.feishu.base import PLATFORM, _hex
from sync_pipeline.devtools.sandbox.feishu.longconn import LongConnection

CARD_TOKEN_TTL_MS = 30 * 60 * 1000  # delayed card update token: 30 minutes ...


def encrypt_event(encrypt_key: str, plaintext: bytes, iv: bytes | None = None) -> str:
    """Feishu event encryption: AES-256-CBC, key sha256(encrypt_key), random IV, PKCS#7/16.

    `iv` is for tests only: with the IV of Feishu's published sample the output must be that
    sample byte for byte.
    """
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = secrets.token_bytes(16) if iv is None else iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode()


def sign_event(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """X-Lark-Signature: sha256_hex(timestamp + nonce + encrypt_key + raw body)."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


class Callbacks(LongConnection):
    """Acts as Feishu users and sends the callbacks Feishu would send."""

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a Feishu user. `kind`: card_action, message, approve, reject,
        approval_instance, approval_task, url_verification or quick_approval."""
        kind = str(action.get("kind", ""))
        presses: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "card_action": self._press_card_action,
            "message": self._press_message,
            "approve": self._press_decision,
            "reject": self._press_decision,
            "approval_instance": self._press_approval_event,
            "approval_task": self._press_approval_event,
            "url_verification": self._press_url_verification,
            "quick_approval": self._press_quick_approval,
            "ws_drop": self.ws_fault,
            "ws_silence": self.ws_fault,
        }
        if kind not in presses:
            raise PressError(f"feishu press kind must be one of {', '.join(presses)}, not {kind!r}")
        return presses[kind](action)

    def _user_ids_of(self, user: Mapping[str, Any]) -> dict[str, str]:
        return {
            "union_id": user["union_id"],
            "user_id": user["user_id"],
            "open_id": user["open_id"],
        }

    def _callback_url(self) -> str:
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("set the feishu callback_url setting before pressing")
        return url

    def _deliver(self, envelope: Mapping[str, Any]) -> tuple[list[int], list[tuple[int, bytes]]]:
        """POST one event the way Feishu does: encrypted and signed when an encrypt key is set;
        with events_mode long_connection, push it to a long-connection client instead."""
        if self.long_connected():
            return self.ws_push(envelope)
        plain = json.dumps(envelope, ensure_ascii=False).encode()
        encrypt_key = self.credentials()["encrypt_key"]
        headers = {"Content-Type": "application/json; charset=utf-8"}
        body = plain
        if encrypt_key:
            body = json.dumps({"encrypt": encrypt_event(encrypt_key, plain)}).encode()
            timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
            headers["X-Lark-Request-Timestamp"] = timestamp
            headers["X-Lark-Request-Nonce"] = nonce
            headers["X-Lark-Signature"] = sign_event(timestamp, nonce, encrypt_key, body)
        answers: list[tuple[int, bytes]] = []
        statuses = deliver_callback(
            self.store,
            PLATFORM,
            self._callback_url(),
            body=body,
            headers=headers,
            on_answer=lambda status, content: answers.append((status, content)),
        )
        return statuses, answers

    def _v2(self, event_type: str, event: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        header = {
            "event_id": uuid.uuid4().hex,
            "event_type": event_type,
            "create_time": str(now_ms()),
            "token": creds["verification_token"],
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
        }
        return {"schema": "2.0", "header": header, "event": dict(event)}

    def _v1(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "uuid": uuid.uuid4().hex,
            "token": self.credentials()["verification_token"],
            "ts": f"{time.time():.3f}",
            "type": "event_callback",
            "event": dict(event),
        }

    # -- presses ------------------------------------------------------------------------------
    def _operator(self, action: Mapping[str, Any], key: str = "user") -> dict[str, Any]:
        who = str(action.get(key, ""))
        user = (
            self._user_by("open_id", who)
            if who.startswith("ou_")
            else self._user_by("employee_no", who)
        )
        if user is None:
            raise PressError(f"no feishu user {who!r} (give an open_id or an employee_no)")
        return user

    def _press_card_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        message = self.store.get(PLATFORM, "message", str(action.get("message_id", "")))
        if message is None or message["msg_type"] != "interactive":
            raise PressError("card_action needs the message_id of an interactive message")
        user = self._operator(action)
        card_token = "c-" + secrets.token_hex(20)
        self.store.put(
            PLATFORM,
            "card_token",
            card_token,
            {
                "message_id": message["message_id"],
                "expires_ms": now_ms() + CARD_TOKEN_TTL_MS,
                "uses": 0,
            },
        )
        act: dict[str, Any] = {"value": action.get("value", {}), "tag": action.get("tag", "button")}
        for optional in (
            "option",
            "timezone",
            "name",
            "form_value",
            "input_value",
            "options",
            "checked",
        ):
            if optional in action:
                act[optional] = action[optional]
        event = {
            "operator": {**self._user_ids_of(user), "tenant_key": self.credentials()["tenant_key"]},
            "token": card_token,
            "action": act,
            "host": "im_message",
            "delivery_type": "url_preview" if action.get("url_preview") else "",
            "context": {
                "open_message_id": message["message_id"],
                "open_chat_id": message["chat_id"],
            },
        }
        envelope = self._v2("card.action.trigger", event)
        statuses, answers = self._deliver(envelope)
        answer = _first_json(answers)
        updated = False
        card = answer.get("card") if isinstance(answer, dict) else None
        if isinstance(card, dict) and isinstance(card.get("data"), dict):
            data = card["data"]
            content = json.dumps(
                data if card.get("type", "raw") == "raw" else card, ensure_ascii=False
            )
            self._update_card(message, content)
            self.store.record(
                PLATFORM,
                "card.action.trigger answer",
                self.credentials()["app_id"],
                {"message_id": message["message_id"], "card": card},
            )
            updated = True
        return {
            "event_id": envelope["header"]["event_id"],
            "token": card_token,
            "delivered": statuses,
            "answer": answer,
            "toast": answer.get("toast") if isinstance(answer, dict) else None,
            "card_updated": updated,
        }

    def _press_message(self, action: Mapping[str, Any]) -> dict[str, Any]:
        user = self._operator(action)
        chat_id = str(action.get("chat_id") or self._p2p_chat(user))
        chat = self.store.get(PLATFORM, "chat", chat_id)
        if chat is None:
            raise PressError(f"no feishu chat {chat_id!r}")
        tenant = self.credentials()["tenant_key"]
        mentions: list[dict[str, Any]] = []
        for i, who in enumerate(action.get("mentions", []), start=1):
            if who == "bot":
                ids = {
                    "union_id": "",
                    "user_id": "",
                    "open_id": "ou_" + _hex("bot", self.credentials()["app_id"]),
                }
                name = "Sandbox bot"
            else:
                mentioned = self._operator({"user": who})
                ids, name = self._user_ids_of(mentioned), mentioned["name"]
            mentions.append({"key": f"@_user_{i}", "id": ids, "name": name, "tenant_key": tenant})
        text = str(action.get("text", ""))
        keys = " ".join(m["key"] for m in mentions if m["key"] not in text)
        content = json.dumps({"text": f"{keys} {text}".strip()}, ensure_ascii=False)
        sender = {
            "id": user["open_id"],
            "id_type": "open_id",
            "sender_type": "user",
            "tenant_key": tenant,
        }
        stored_mentions = [
            {
                "key": m["key"],
                "id": m["id"]["open_id"],
                "id_type": "open_id",
                "name": m["name"],
                "tenant_key": tenant,
            }
            for m in mentions
        ]
        message = self._new_message(chat_id, "text", content, sender, mentions=stored_mentions)
        self.store.put(
            PLATFORM,
            "message",
            message["message_id"],
            message,
            created_ms=int(message["create_time"]),
        )
        event = {
            "sender": {
                "sender_id": self._user_ids_of(user),
                "sender_type": "user",
                "tenant_key": tenant,
            },
            "message": {
                "message_id": message["message_id"],
                "root_id": "",
                "parent_id": "",
                "create_time": message["create_time"],
                "update_time": message["update_time"],
                "chat_id": chat_id,
                "chat_type": "p2p" if chat.get("chat_mode") == "p2p" else "group",
                "message_type": "text",
                "content": content,
                "mentions": mentions,
                "user_agent": "Mozilla/5.0 (sandbox) Feishu/7.0",
            },
        }
        envelope = self._v2("im.message.receive_v1", event)
        statuses, _ = self._deliver(envelope)
        return {
            "event_id": envelope["header"]["event_id"],
            "message_id": message["message_id"],
            "delivered": statuses,
        }

    def _press_decision(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance = self._instance(str(action.get("instance_code", "")))
        if instance is None:
            raise PressError("approve/reject needs the instance_code of a feishu approval instance")
        task = next((t for t in instance["task_list"] if t["status"] == "PENDING"), None)
        if task is None or instance["status"] != "PENDING":
            raise PressError(f"instance {instance['instance_code']} has no pending task")
        user = (
            self._operator(action)
            if action.get("user")
            else self.store.get(PLATFORM, "user", task["open_id"])
        )
        if user is None or user["open_id"] != task["open_id"]:
            raise PressError("only the pending task's approver can decide")
        updated = self._apply_decision(
            instance, task, user, action.get("kind") == "approve", str(action.get("comment", ""))
        )
        result: dict[str, Any] = {
            "instance_code": updated["instance_code"],
            "status": updated["status"],
        }
        if self._subscribed(updated["approval_code"]):
            result["delivered"] = self._send_approval_events(updated, task["id"])
        else:
            result["delivered"], result["subscribed"] = [], False
        return result

    def _send_approval_events(self, instance: Mapping[str, Any], task_id: str) -> list[int]:
        """The approval_task event for the decided task, then the instance's own event."""
        if not (self.store.setting(PLATFORM, "callback_url") or self.long_connected()):
            return []
        task = next(t for t in instance["task_list"] if t["id"] == task_id)
        statuses, _ = self._deliver(self._v1(self._task_event(instance, task)))
        more, _ = self._deliver(self._v1(self._instance_event(instance)))
        return statuses + more

    def _instance_event(self, instance: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        at = str(now_ms())
        return {
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
            "type": "approval_instance",
            "approval_code": instance["approval_code"],
            "instance_code": instance["instance_code"],
            "status": instance["status"],
            "operate_time": at,
            "instance_operate_time": at,
            "uuid": instance.get("uuid", ""),
        }

    def _task_event(self, instance: Mapping[str, Any], task: Mapping[str, Any]) -> dict[str, Any]:
        creds = self.credentials()
        return {
            "app_id": creds["app_id"],
            "tenant_key": creds["tenant_key"],
            "type": "approval_task",
            "approval_code": instance["approval_code"],
            "instance_code": instance["instance_code"],
            "task_id": task["id"],
            "user_id": task["user_id"],
            "open_id": task["open_id"],
            "status": task["status"],
            "operate_time": task.get("end_time") or str(now_ms()),
            "custom_key": task.get("custom_node_id", ""),
            "def_key": task["node_id"],
            "extra": "",
        }

    def _press_approval_event(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance = self._instance(str(action.get("instance_code", "")))
        if instance is None:
            raise PressError("approval events need the instance_code of a feishu approval instance")
        if not self._subscribed(instance["approval_code"]):
            return {"delivered": [], "subscribed": False}
        if action.get("kind") == "approval_instance":
            envelope = self._v1(self._instance_event(instance))
        else:
            wanted = action.get("task_id")
            task = next((t for t in instance["task_list"] if wanted in (None, t["id"])), None)
            if task is None:
                raise PressError(f"instance has no task {wanted!r}")
            envelope = self._v1(self._task_event(instance, task))
        statuses, _ = self._deliver(envelope)
        return {"uuid": envelope["uuid"], "delivered": statuses}

    def _press_quick_approval(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """An approver presses Approve or Reject on a task in the approval center: Feishu POSTs
        the quick-approval callback to the definition's action_callback_url, encrypted with its
        action_callback_key when it has one. {instance_id, [task_id], [user], action:
        approve | reject (or action_type), [reason]}."""
        instance = self.store.get(PLATFORM, "external_instance", str(action.get("instance_id", "")))
        if instance is None:
            raise PressError("quick_approval needs the instance_id of a synced external instance")
        wanted = action.get("task_id")
        task = next(
            (
                t
                for t in instance["task_list"]
                if t["status"] == "PENDING" and wanted in (None, t["task_id"])
            ),
            None,
        )
        if task is None:
            raise PressError(f"instance {instance['instance_id']} has no pending task {wanted!r}")
        user = (
            self._operator(action)
            if action.get("user")
            else self._user_by("open_id", task["open_id"])
        )
        if user is None or user["open_id"] != task["open_id"]:
            raise PressError("only the task's approver can act on it")
        action_type = str(action.get("action_type") or str(action.get("action", "")).upper())
        if action_type not in {str(c["action_type"]) for c in task.get("action_configs") or []}:
            raise PressError(f"task {task['task_id']} offers no quick {action_type!r}")
        definition = self.store.get(PLATFORM, "external_approval", instance["approval_code"])
        external = (definition or {}).get("external") or {}
        url = external.get("action_callback_url")
        if not url:
            raise PressError("the definition has no action_callback_url")
        callback = {
            "action_type": action_type,
            "action_context": task.get("action_context", ""),
            "user_id": user["user_id"],
            "approval_code": instance["approval_code"],
            "instance_id": instance["instance_id"],
            "task_id": task["task_id"],
            "reason": str(action.get("reason", "")),
            "token": str(external.get("action_callback_token", "")),
        }
        plain = json.dumps(callback, ensure_ascii=False).encode()
        key = external.get("action_callback_key")
        body = json.dumps({"encrypt": encrypt_event(str(key), plain)}).encode() if key else plain
        answers: list[tuple[int, bytes]] = []
        statuses = deliver_callback(
            self.store,
            PLATFORM,
            str(url),
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            timeout_s=10.0,
            on_answer=lambda status, content: answers.append((status, content)),
        )
        answer = _first_json(answers)
        accepted = isinstance(answer, dict) and answer.get("code") == 0
        return {"delivered": statuses, "answer": answer, "accepted": accepted}

    def _press_url_verification(self, action: Mapping[str, Any]) -> dict[str, Any]:
        challenge = secrets.token_urlsafe(16)
        envelope = {
            "challenge": challenge,
            "token": self.credentials()["verification_token"],
            "type": "url_verification",
        }
        statuses, answers = self._deliver(envelope)
        answer = _first_json(answers)
        verified = isinstance(answer, dict) and answer.get("challenge") == challenge
        return {"delivered": statuses, "answer": answer, "verified": verified}


def _first_json(answers: Sequence[tuple[int, bytes]]) -> Any:
    """The receiver's first HTTP 200 answer, parsed; None if there was none or not JSON."""
    for status, content in answers:
        if status == 200:
            try:
                return json.loads(content or b"{}")
            except ValueError:
                return None
    return None
