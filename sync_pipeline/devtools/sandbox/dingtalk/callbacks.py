"""The simulated user and DingTalk's callbacks: approval events and card actions, sent
encrypted through the HTTP event subscription; the receiver must answer the encrypted
"success".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import deliver_callback, now_ms
from sync_pipeline.devtools.sandbox.dingtalk.base import PLATFORM, ApiError
from sync_pipeline.devtools.sandbox.dingtalk.stream import CARD_TOPIC, Stream
from sync_pipeline.devtools.sandbox.dingtalk.workflow import decide, terminate
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.wxcrypto import CryptoError, WXBizMsgCrypt

STREAM_FAULTS = ("stream_drop", "stream_silence", "stream_disconnect")


class Callbacks(Stream):
    """Acts as a DingTalk user and sends the event DingTalk would send."""

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a DingTalk user and send the event DingTalk would send.

        kinds:
          check_url             the subscription check every receiver must answer
          bpms_task_change      {process_instance_id, [decision: agree|refuse, user_id, remark]}:
                                the assignee decides (or, without a decision, the current task
                                is announced as started)
          bpms_instance_change  {process_instance_id, type: start|finish|terminate}; terminate
                                withdraws a running instance, as its originator would
          card_action           {out_track_id, user_id, [action_id, params]}: a card button
          stream_drop, stream_silence {for_s}, stream_disconnect: Stream mode's faults
        With the setting events_mode "stream", the events go to Stream clients (stream.py).
        """
        kind = action.get("kind")
        if kind in STREAM_FAULTS:
            return self.stream_fault(action)
        if kind == "check_url":
            return self._send_event({"EventType": "check_url"})
        if kind == "bpms_task_change":
            return self._task_change(action)
        if kind == "bpms_instance_change":
            return self._instance_change(action)
        if kind == "card_action":
            return self._card_action(action)
        raise PressError(
            "dingtalk press kind must be check_url, bpms_task_change, bpms_instance_change"
            f" or card_action, not {kind!r}"
        )

    def _crypto(self) -> WXBizMsgCrypt:
        creds = self.credentials()
        return WXBizMsgCrypt(creds["token"], creds["aes_key"], creds["appKey"])

    def _send_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Encrypt one event, POST it, and check that each answer is the encrypted "success";
        in Stream mode, push it instead."""
        if self.streaming():
            return self.stream_push(event)
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("dingtalk has no callback_url setting: set it before pressing")
        crypto = self._crypto()
        sealed = crypto.seal(json.dumps(event, ensure_ascii=False), timestamp=str(now_ms()))
        answers: list[dict[str, Any]] = []

        def check(status: int, body: bytes) -> None:
            answer = {"event": event.get("EventType"), "status": status, "acknowledged": False}
            try:
                reply = json.loads(body)
                plain = crypto.verify(
                    str(reply["msg_signature"]),
                    str(reply["timeStamp"]),
                    str(reply["nonce"]),
                    str(reply["encrypt"]),
                )
                answer["acknowledged"] = status == 200 and plain == "success"
            except (ValueError, KeyError, TypeError, CryptoError) as exc:
                answer["error"] = type(exc).__name__
            answers.append(answer)
            self.callback_answers.append(answer)

        statuses = deliver_callback(
            self.store,
            PLATFORM,
            url,
            body=json.dumps({"encrypt": sealed.encrypt}).encode(),
            headers={"Content-Type": "application/json"},
            params={
                "msg_signature": sealed.msg_signature,
                "timestamp": sealed.timestamp,
                "nonce": sealed.nonce,
            },
            on_answer=check,
        )
        return {
            "delivered": statuses,
            "acknowledged": [a["acknowledged"] for a in answers],
            "event": dict(event),
        }

    def _instance(self, action: Mapping[str, Any]) -> dict[str, Any]:
        instance_id = str(action.get("process_instance_id", ""))
        row = self._load_instance(instance_id)
        if row is None:
            raise PressError(f"no dingtalk process instance {instance_id!r}")
        return row

    def _event_base(self, row: Mapping[str, Any], event_type: str) -> dict[str, Any]:
        result = row["result"]
        return {
            "EventType": event_type,
            "processInstanceId": row["processInstanceId"],
            "corpId": self.credentials()["corpId"],
            "createTime": row["createTimeMs"],
            "title": result["title"],
            "processCode": row["processCode"],
            "bizCategoryId": "",
            "businessId": result["businessId"],
        }

    def _task_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        decision = action.get("decision")
        with self._write_lock:
            row = self._instance(action)
            running = [t for t in row["result"]["tasks"] if t["status"] == "RUNNING"]
            if not running:
                raise PressError(f"instance {row['processInstanceId']} has no running task")
            task = running[0]
            if decision is not None:
                user = str(action.get("user_id") or task["userId"])
                try:
                    decide(row, task["taskId"], user, str(decision), str(action.get("remark", "")))
                except ApiError as exc:
                    raise PressError(exc.message) from None
                self._save_instance(row)
        event = {**self._event_base(row, "bpms_task_change"), "staffId": task["userId"]}
        event["taskId"] = task["taskId"]
        if decision is None:
            event["type"] = "start"
        else:
            event.update(type="finish", result=str(decision), remark=str(action.get("remark", "")))
            event["finishTime"] = now_ms()
        sent = self._send_event(event)
        if decision is not None and row["result"]["status"] != "RUNNING":
            finished = self._instance_event(row, "finish")
            sent["instance_event"] = self._send_event(finished)
        return sent

    def _instance_event(self, row: Mapping[str, Any], event_type: str) -> dict[str, Any]:
        result = row["result"]
        event = {**self._event_base(row, "bpms_instance_change"), "type": event_type}
        event["staffId"] = result["originatorUserId"]
        event["url"] = (
            "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?corpid="
            f"{self.credentials()['corpId']}&procInstId={row['processInstanceId']}#approval"
        )
        if event_type == "finish":
            event["result"] = result["result"]
        if event_type in ("finish", "terminate"):
            event["finishTime"] = now_ms()
        return event

    def _instance_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        event_type = str(action.get("type", "start"))
        if event_type not in ("start", "finish", "terminate"):
            raise PressError(f"type must be start, finish or terminate, not {event_type!r}")
        with self._write_lock:
            row = self._instance(action)
            if event_type == "terminate":
                if row["result"]["status"] != "RUNNING":
                    raise PressError(f"instance {row['processInstanceId']} is not running")
                terminate(row)
                self._save_instance(row)
        return self._send_event(self._instance_event(row, event_type))

    def _card_action(self, action: Mapping[str, Any]) -> dict[str, Any]:
        track = str(action.get("out_track_id", ""))
        card = self.store.get(PLATFORM, "card", track)
        if card is None:
            raise PressError(f"no dingtalk card with outTrackId {track!r}")
        user = str(action.get("user_id") or (card["recipients"] or [""])[0])
        if user not in card["recipients"]:
            raise PressError(f"{user} did not receive card {track}")
        private = {
            "actionIds": [str(action.get("action_id", "action"))],
            "params": dict(action.get("params") or {}),
        }
        event = {
            # Not a DingTalk EventType: the Stream topic of card callbacks names this payload,
            # which DingTalk sends over Stream mode (stream.py); without events_mode "stream"
            # the sandbox sends it through the HTTP subscription instead.
            "EventType": CARD_TOPIC,
            "outTrackId": track,
            "corpId": self.credentials()["corpId"],
            "userId": user,
            "type": "actionCallback",
            "content": json.dumps({"cardPrivateData": private}, ensure_ascii=False),
            "extension": "{}",
        }
        return self._send_event(event)
