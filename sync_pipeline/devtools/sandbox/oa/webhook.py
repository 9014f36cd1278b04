"""The sandbox-documented outbound change webhook: every approval change, signed with
HMAC-SHA256 and delivered in order by one courier thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import deliver_callback
from sync_pipeline.devtools.sandbox.oa.base import PLATFORM, OABase, fmt_time
from sync_pipeline.devtools.sandbox.oa.workflow import _node

log = logging.getLogger(__name__)


class ChangeWebhook(OABase):
    """The signed change webhook, posted to setting `webhook_url`."""

    def _notify(self, event: str, body: Mapping[str, Any]) -> None:
        url = self.store.setting(PLATFORM, "webhook_url")
        if not url:
            return
        payload = {
            "event": f"request.{event}",
            "eventId": str(uuid.uuid4()),
            "requestId": body["requestId"],
            "workflowId": body["workflowId"],
            "status": body["state"],
            "nodeName": _node(body).name,
            "operatorId": body["lastOperatorId"],
            "currentOperatorIds": [body["currentOperatorId"]] if body["currentOperatorId"] else [],
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
        }
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **self.sign_webhook(raw)}
        self._outbox.put((url, raw, headers))
        with self._lock:  # exactly one courier, or two would reorder the queue
            if self._courier is None or not self._courier.is_alive():
                self._courier = threading.Thread(
                    target=self._deliver, name="oa-webhook", daemon=True
                )
                self._courier.start()

    def sign_webhook(self, raw: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        key = self._creds["webhook_secret"].encode()
        digest = hmac.new(key, ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
        return {"X-OA-Timestamp": ts, "X-OA-Signature": digest}

    def _deliver(self) -> None:
        """One courier thread keeps webhooks in the order the changes happened."""
        while True:
            url, raw, headers = self._outbox.get()
            statuses = deliver_callback(self.store, PLATFORM, url, body=raw, headers=headers)
            if any(s == 0 or s >= 400 for s in statuses):
                log.warning("OA webhook to %s answered %s", url, statuses)
