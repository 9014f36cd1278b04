"""The simulated user pressing a Block Kit button, and how Slack tells the app: over HTTP to
the Request URL (form-encoded `payload=`, signed with the v0 signing secret), or over a Socket
Mode connection as an envelope the app must ack with its `envelope_id` within 3 s, else it is
sent again (`retry_attempt`, `retry_reason: "timeout"`).

v0 signing (docs.slack.dev "Verifying requests from Slack"): `X-Slack-Request-Timestamp` is
the Unix time in seconds, `X-Slack-Signature` is `v0=` + hex HMAC-SHA256 of
`v0:<timestamp>:<raw body>` keyed with the signing secret. Receivers refuse a timestamp more
than five minutes away. A press may ask for a stale timestamp (`stale_s`) or a forged
signature (`forge`), to prove a receiver refuses them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from sync_pipeline.devtools.sandbox.core import deliver_callback
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.slack.base import PLATFORM, SlackBase, slack_ts


def sign_v0(signing_secret: str, timestamp: str, body: bytes) -> str:
    """`X-Slack-Signature` for `body` sent at `timestamp`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class Interactivity(SlackBase):
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """Act as a Slack member. `kind`: block_actions ({channel, ts, action_id, user,
        [via: http | socket], [stale_s], [forge]}) or disconnect ({[reason]}: every Socket
        Mode connection is sent a `disconnect` frame and closed)."""
        kind = str(action.get("kind", ""))
        presses: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "block_actions": self._press_button,
            "disconnect": self._press_disconnect,
        }
        if kind not in presses:
            raise PressError(f"slack press kind must be one of {', '.join(presses)}, not {kind!r}")
        return presses[kind](action)

    def block_actions_payload(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """The `block_actions` payload of a member pressing the button `action_id` on the
        message at (`channel`, `ts`)."""
        channel, ts = str(action.get("channel", "")), str(action.get("ts", ""))
        message = self.store.get(PLATFORM, "message", f"{channel}/{ts}")
        if message is None:
            raise PressError(f"no slack message {ts!r} in channel {channel!r}")
        button, block_id = _button(message, str(action.get("action_id", "")))
        user = self._presser(str(action.get("user", "")))
        creds = self.credentials()
        shown = {k: v for k, v in message.items() if not k.startswith("_")}
        return {
            "type": "block_actions",
            "user": {
                "id": user["id"],
                "username": user["name"],
                "name": user["name"],
                "team_id": creds["team_id"],
            },
            "api_app_id": creds["app_id"],
            "token": "deprecated-verification-token",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**12)}.{uuid.uuid4().hex}",
            "team": {"id": creds["team_id"], "domain": "sandbox"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage"},
            "message": shown,
            "state": {"values": {}},
            "response_url": f"{self.base_url}/actions/{creds['team_id']}/{uuid.uuid4().hex}",
            "actions": [
                {
                    "action_id": button["action_id"],
                    "block_id": block_id,
                    "text": button.get("text", {}),
                    "value": button.get("value", ""),
                    "style": button.get("style", ""),
                    "type": "button",
                    "action_ts": slack_ts(),
                }
            ],
        }

    def _presser(self, who: str) -> dict[str, Any]:
        if who.startswith("U"):
            user = self._user(who)
        else:
            found = self.store.list(PLATFORM, "user", equals={"_employee_no": who}, limit=1)
            user = found[0] if found else None
        if user is None:
            raise PressError(f"no slack member {who!r} (give a U... id or an employee number)")
        return user

    def _press_button(self, action: Mapping[str, Any]) -> dict[str, Any]:
        payload = self.block_actions_payload(action)
        via = str(action.get("via") or ("socket" if self._connected() else "http"))
        if via == "socket":
            return {"trigger_id": payload["trigger_id"], **self._send_envelope(payload)}
        if via != "http":
            raise PressError("via must be http or socket")
        url = self.store.setting(PLATFORM, "interactivity_url")
        if not url:
            raise PressError("set the slack interactivity_url setting before pressing")
        body = urlencode({"payload": json.dumps(payload, ensure_ascii=False)}).encode()
        timestamp = str(int(time.time()) - int(action.get("stale_s", 0) or 0))
        secret = self.credentials()["signing_secret"]
        if action.get("forge"):
            secret = secrets.token_hex(16)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign_v0(secret, timestamp, body),
        }
        statuses = deliver_callback(self.store, PLATFORM, url, body=body, headers=headers)
        return {"trigger_id": payload["trigger_id"], "delivered": statuses}


def _button(message: Mapping[str, Any], action_id: str) -> tuple[dict[str, Any], str]:
    for block in message.get("blocks") or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return element, str(block.get("block_id", ""))
    raise PressError(f"the message has no button with action_id {action_id!r}")
