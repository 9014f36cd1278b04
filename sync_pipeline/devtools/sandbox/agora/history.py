"""Agora Chat message history (`/chatmessages/{hour}`): a signed, expiring link to an
hour's gzipped export.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, AgoraError, _bad
from sync_pipeline.devtools.sandbox.core import now_ms

HOUR = re.compile(r"^\d{10}$")
HISTORY_RETENTION_S = 3 * 86_400  # default plan retention
HISTORY_URL_TTL_S = 1800  # the doc's example link expires 30 min after it is issued
HOUR_MS = 3_600_000


class History(AgoraBase):
    """Hourly history exports and their downloads."""

    def _history(self, request: Request, body: Any) -> dict[str, Any]:
        hour = request.path_params["hour"]
        start_ms = _hour_start_ms(hour)
        app_key = self.credentials()["app_key"]
        retention_ms = self._int_setting("history_retention_s", HISTORY_RETENTION_S) * 1000
        # Simplification: an hour can be exported as soon as it has ended (the vendor asks
        # callers to allow at least an hour, up to 24 h).
        if start_ms + HOUR_MS > now_ms() or start_ms < now_ms() - retention_ms:
            raise _bad(
                f"Illegal arguments: appkey: {app_key}, time: {hour}, "
                "maybe chat message history is expired or unstored."
            )
        if not self._hour_messages(start_ms):
            raise AgoraError(
                404,
                "storage_object_not_found",
                "Failed to find chat message history download URL for appkey: "
                f"{app_key}, time: {hour}.",
            )
        expires = int(time.time()) + self._int_setting("history_url_ttl_s", HISTORY_URL_TTL_S)
        creds = self.credentials()
        path = f"/_oss/chatmessages/{creds['org_name']}/{creds['app_name']}/{hour}"
        query = {
            "Expires": str(expires),
            "OSSAccessKeyId": "sandbox",
            "Signature": self._sign_download(path, expires),
        }
        return {"data": [{"url": f"{self.base_url}{path}?{urlencode(query)}"}]}

    def _hour_messages(self, start_ms: int) -> list[dict[str, Any]]:
        rows = self.store.list(
            PLATFORM, "message", time_field="created_ms", from_ms=start_ms, to_ms=start_ms + HOUR_MS
        )
        return [m for m in rows if not m.get("_recalled")]

    def _sign_download(self, path: str, expires: int) -> str:
        key = self.credentials()["app_certificate"].encode()
        digest = hmac.new(key, f"GET\n{expires}\n{path}".encode(), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    async def _download(self, request: Request) -> Response:
        """The signed, expiring link to one hour's gzipped JSON lines."""
        q = request.query_params
        try:
            expires = int(q.get("Expires", ""))
        except ValueError:
            return _oss_denied("AccessDenied", "Invalid argument.")
        if not hmac.compare_digest(
            q.get("Signature", ""), self._sign_download(request.url.path, expires)
        ):
            return _oss_denied(
                "SignatureDoesNotMatch", "The request signature we calculated does not match."
            )
        if time.time() > expires:
            return _oss_denied("AccessDenied", "Request has expired.")
        start_ms = _hour_start_ms(request.path_params["hour"])
        lines = [
            json.dumps({k: v for k, v in m.items() if not k.startswith("_")}, ensure_ascii=False)
            for m in self._hour_messages(start_ms)
        ]
        return Response(
            gzip.compress(("\n".join(lines) + "\n").encode()),
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename={request.path_params['hour']}.gz"
            },
        )


def _hour_start_ms(hour: str) -> int:
    if not HOUR.match(hour):
        raise _bad("This chatmessage request is not supported.")
    try:
        start = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC)
    except ValueError:
        raise _bad("This chatmessage request is not supported.") from None
    return int(start.timestamp() * 1000)


def _oss_denied(code: str, message: str) -> Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(xml, status_code=403, media_type="application/xml")
