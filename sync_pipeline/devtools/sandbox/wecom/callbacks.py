"""The simulated user and WeCom's callbacks: card presses, approval changes and user
messages, as encrypted XML (WXBizMsgCrypt), and the URL verification handshake.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import requests

from sync_pipeline.devtools.sandbox.core import deliver_callback, now_ms
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.wecom.approvals import SP_STATUS
from sync_pipeline.devtools.sandbox.wecom.base import PLATFORM, WeComBase
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt

APPROVAL_AGENTID = "3010040"  # WeCom's built-in approval app sends sys_approval_change
# sys_approval_change StatuChangeEvent for each decision a simulated user can make.
STATUS_CHANGE_EVENT = {"submit": 1, "approve": 2, "reject": 3, "revoke": 6}


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_element(name: str, value: Any) -> str:
    """WeCom's callback XML: strings in CDATA, numbers bare, dicts and lists nested."""
    if isinstance(value, dict):
        return f"<{name}>" + "".join(xml_element(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list):
        return "".join(xml_element(name, item) for item in value)
    if isinstance(value, int):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{cdata(str(value))}</{name}>"


class Callbacks(WeComBase):
    """Acts as a WeCom user and sends the callback WeCom would send."""

    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a WeCom user and send the callback WeCom would send.

        kinds:
          button          {task_id, userid, key}: press a template card button
          approval_change {sp_no, [decision: approve|reject|revoke, userid, speech]}: act on
                          an approval (or, without a decision, re-announce its state)
          message         {userid, content}: a user writes to the app
          verify_url      the GET echostr handshake a callback URL must pass
        """
        kind = action.get("kind")
        if kind == "verify_url":
            return self._verify_url()
        if kind == "button":
            return self._press_button(action)
        if kind == "approval_change":
            return self._approval_change(action)
        if kind == "message":
            return self._user_message(action)
        raise PressError(
            f"wecom press kind must be button, approval_change, message or verify_url, not {kind!r}"
        )

    def _callback_url(self) -> str:
        url = self.store.setting(PLATFORM, "callback_url")
        if not url:
            raise PressError("wecom has no callback_url setting: set it before pressing")
        return url

    def _crypto(self) -> WXBizMsgCrypt:
        creds = self.credentials()
        return WXBizMsgCrypt(creds["token"], creds["encoding_aes_key"], creds["corpid"])

    def _send(self, inner: Mapping[str, Any], agentid: str) -> list[int]:
        """Encrypt one callback message and POST it, as WeCom does, through deliver_callback."""
        plain = xml_element("xml", dict(inner))
        sealed = self._crypto().seal(plain)
        corpid = self.credentials()["corpid"]
        envelope = (
            f"<xml><ToUserName>{cdata(corpid)}</ToUserName><AgentID>{cdata(agentid)}</AgentID>"
            f"<Encrypt>{cdata(sealed.encrypt)}</Encrypt></xml>"
        )
        params = {
            "msg_signature": sealed.msg_signature,
            "timestamp": sealed.timestamp,
            "nonce": sealed.nonce,
        }
        return deliver_callback(
            self.store,
            PLATFORM,
            self._callback_url(),
            body=envelope.encode("utf-8"),
            headers={"Content-Type": "text/xml"},
            params=params,
        )

    def _verify_url(self) -> dict[str, Any]:
        """WeCom's URL check: the receiver must answer the decrypted echostr, bare, within 1 s."""
        url = self._callback_url()
        plain = str(secrets.randbelow(10**19))
        sealed = self._crypto().seal(plain)
        params = {
            "msg_signature": sealed.msg_signature,
            "timestamp": sealed.timestamp,
            "nonce": sealed.nonce,
            "echostr": sealed.encrypt,
        }
        try:
            answer = requests.get(url, params=params, timeout=1.0)
        except requests.RequestException as exc:
            return {"ok": False, "status": 0, "error": type(exc).__name__}
        ok = answer.status_code == 200 and answer.content == plain.encode()
        return {"ok": ok, "status": answer.status_code, "answer": answer.text[:100]}

    def _press_button(self, action: Mapping[str, Any]) -> dict[str, Any]:
        task_id = str(action.get("task_id", ""))
        card = self.store.get(PLATFORM, "card", task_id)
        if card is None:
            raise PressError(f"no template card with task_id {task_id!r}")
        userid = str(action.get("userid") or card["touser"][0])
        if userid not in card["touser"]:
            raise PressError(f"{userid} did not receive card {task_id}")
        keys = [str(b.get("key")) for b in card["template_card"].get("button_list", [])]
        key = str(action.get("key") or (keys[0] if keys else ""))
        if keys and key not in keys:
            raise PressError(f"card {task_id} has no button {key!r}; it has {keys}")
        agentid = self.credentials()["agentid"]
        code = self._new_response_code(task_id)
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "template_card_event",
            "EventKey": key,
            "TaskId": task_id,
            "CardType": str(card["template_card"]["card_type"]),
            "ResponseCode": code,
            "AgentID": int(agentid),
        }
        return {"delivered": self._send(event, agentid), "response_code": code, "event": event}

    def _user_message(self, action: Mapping[str, Any]) -> dict[str, Any]:
        userid = str(action.get("userid", ""))
        if self.store.get(PLATFORM, "user", userid) is None:
            raise PressError(f"no wecom user {userid!r}")
        agentid = self.credentials()["agentid"]
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": userid,
            "CreateTime": int(time.time()),
            "MsgType": "text",
            "Content": str(action.get("content", "")),
            "MsgId": str(secrets.randbits(63)),
            "AgentID": int(agentid),
        }
        return {"delivered": self._send(event, agentid), "event": event}

    def _approval_change(self, action: Mapping[str, Any]) -> dict[str, Any]:
        sp_no = str(action.get("sp_no", ""))
        decision = action.get("decision")
        with self._write_lock:  # read, decide, write: one press at a time per emulator
            row = self.store.get(PLATFORM, "approval", sp_no)
            if row is None:
                raise PressError(f"no wecom approval {sp_no!r}")
            info = self._info(row)
            change = STATUS_CHANGE_EVENT["submit"]
            if decision is not None:
                change = self._decide(info, str(decision), action)
                written = {**row, "sp_status": info["sp_status"], "info": info}
                self.store.put(PLATFORM, "approval", sp_no, written, updated_ms=now_ms())
            elif info["sp_status"] != SP_STATUS["pending"]:
                change = {2: 2, 3: 3, 4: 6}[info["sp_status"]]
        event = {
            "ToUserName": self.credentials()["corpid"],
            "FromUserName": "sys",
            "CreateTime": int(time.time()),
            "MsgType": "event",
            "Event": "sys_approval_change",
            "AgentID": int(APPROVAL_AGENTID),
            "ApprovalInfo": approval_info_xml(info, change),
        }
        return {"delivered": self._send(event, APPROVAL_AGENTID), "event": event, "info": info}

    @staticmethod
    def _decide(info: dict[str, Any], decision: str, action: Mapping[str, Any]) -> int:
        """Apply an approver's (or the applicant's) decision to the approval, as WeCom would."""
        if info["sp_status"] != SP_STATUS["pending"]:
            raise PressError(f"approval {info['sp_no']} is not pending")
        userid = str(action.get("userid", ""))
        now_s = int(time.time())
        if decision == "revoke":
            if userid and userid != info["applyer"]["userid"]:
                raise PressError("only the applicant can revoke")
            info["sp_status"] = SP_STATUS["revoked"]
            return STATUS_CHANGE_EVENT["revoke"]
        if decision not in ("approve", "reject"):
            raise PressError(f"decision must be approve, reject or revoke, not {decision!r}")
        node = next(r for r in info["sp_record"] if r["sp_status"] == 1)
        detail = node["details"][0]
        if userid and userid != detail["approver"]["userid"]:
            raise PressError(f"{userid} is not the current approver of {info['sp_no']}")
        status = 2 if decision == "approve" else 3
        node["sp_status"] = detail["sp_status"] = status
        detail["sptime"] = now_s
        detail["speech"] = str(action.get("speech", ""))
        if status == 3 or all(r["sp_status"] == 2 for r in info["sp_record"]):
            info["sp_status"] = status
        return STATUS_CHANGE_EVENT[decision]


def approval_info_xml(info: Mapping[str, Any], change: int) -> dict[str, Any]:
    """The ApprovalInfo block of sys_approval_change: getapprovaldetail's info in PascalCase."""
    return {
        "SpNo": info["sp_no"],
        "SpName": info["sp_name"],
        "SpStatus": info["sp_status"],
        "TemplateId": info["template_id"],
        "ApplyTime": info["apply_time"],
        "Applyer": {"UserId": info["applyer"]["userid"], "Party": info["applyer"]["partyid"]},
        "SpRecord": [
            {
                "SpStatus": record["sp_status"],
                "ApproverAttr": record["approverattr"],
                "Details": [
                    {
                        "Approver": {"UserId": d["approver"]["userid"]},
                        "Speech": d["speech"],
                        "SpStatus": d["sp_status"],
                        "SpTime": d["sptime"],
                    }
                    for d in record["details"]
                ],
            }
            for record in info["sp_record"]
        ],
        "StatuChangeEvent": change,  # sic: WeCom's spelling
    }
