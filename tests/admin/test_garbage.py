"""Garbage at the real server: each request a client can make is answered with a 4xx naming
why, and counted; never a 500, never a traceback."""

from __future__ import annotations

import pytest
import requests

from tests.admin.conftest import BEARER

FLOW = "approvals_to_wecom"

GARBAGE = [
    ("POST", f"/flows/{FLOW}/runs", b"{not json", 400),
    ("POST", f"/flows/{FLOW}/runs", b"\xff\xfe\x00garbage", 400),
    ("POST", f"/flows/{FLOW}/runs", b"[1, 2, 3]", 400),
    ("POST", f"/flows/{FLOW}/runs", b"[" * 50_000 + b"]" * 50_000, 413),
    ("POST", f"/flows/{FLOW}/runs", b"[" * 30_000 + b"]" * 30_000, 400),
    ("POST", f"/flows/{FLOW}/runs", b'{"even_if_disabled": "yes"}', 422),
    ("POST", f"/flows/{FLOW}/runs", b'{"even_if_disabled": 1}', 422),
    ("POST", f"/flows/{FLOW}/runs", b'{"surprise": true}', 422),
    ("POST", f"/flows/{FLOW}/resyncs", b'{"since": "2026-13-45"}', 422),
    ("POST", f"/flows/{FLOW}/resyncs", b'{"by": "\\u0000\\ud800"}', 202),
    ("POST", f"/flows/{FLOW}/pause", b'{"by": ""}', 422),
    ("POST", f"/flows/{FLOW}/pause", b'{"reason": 5}', 422),
    ("PUT", f"/flows/{FLOW}/cursor", b"{}", 422),
    ("PUT", f"/flows/{FLOW}/cursor", b'{"value": "\\u00b2"}', 422),
    ("POST", "/dead-letters/replay", b'{"ids": [0]}', 422),
    ("POST", "/dead-letters/replay", b'{"ids": [99999999999999999999]}', 422),
    ("POST", "/dead-letters/replay", b'{"ids": "all"}', 422),
    ("POST", "/dead-letters/replay", b'{"flow": "no_such_flow"}', 404),
    ("POST", "/effects/1/settle", b'{"verdict": "maybe"}', 422),
    ("POST", "/effects/99999999999999999999/settle", b'{"verdict": "done"}', 404),
    ("GET", "/requests/99999999999999999999", b"", 404),
    ("GET", "/resyncs/%00", b"", 404),
    ("GET", "/flows/%00%ff", b"", 404),
    ("GET", "/dead-letters?limit=-1", b"", 422),
    ("GET", "/dead-letters?limit=abc", b"", 422),
    ("GET", "/dead-letters?all=perhaps", b"", 422),
    ("GET", "/dead-letters?flow=%00", b"", 404),
    ("GET", "/effects?status=lost", b"", 422),
    ("GET", "/alerts?surprise=1", b"", 422),
    ("DELETE", "/flows", b"", 405),
    ("GET", "/no/such/route", b"", 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), GARBAGE)
def test_garbage_is_answered_with_a_counted_4xx_naming_why(
    served, method, path, body, status
) -> None:
    answer = requests.request(method, f"{served}{path}", data=body, headers=BEARER, timeout=10)

    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    if status >= 400:
        assert answer.json()["error"]
        counted = requests.get(f"{served}/stats", headers=BEARER, timeout=5).json()
        assert any(a["status"] == status and a["count"] == 1 for a in counted)
