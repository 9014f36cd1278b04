"""The admin API's door: a bearer token compared in constant time, 401 without it, and no
server at all without SYNC_ADMIN_TOKEN."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import requests

from sync_pipeline.admin import auth
from tests.admin.conftest import TOKEN
from tests.conftest import syncctl

ROUTES = [
    ("GET", "/flows"),
    ("GET", "/flows/approvals_to_wecom"),
    ("POST", "/flows/approvals_to_wecom/runs"),
    ("POST", "/flows/approvals_to_wecom/resyncs"),
    ("POST", "/flows/approvals_to_wecom/pause"),
    ("POST", "/flows/approvals_to_wecom/resume"),
    ("GET", "/flows/approvals_to_wecom/cursor"),
    ("PUT", "/flows/approvals_to_wecom/cursor"),
    ("GET", "/requests/1"),
    ("GET", "/resyncs/1"),
    ("GET", "/dead-letters"),
    ("POST", "/dead-letters/replay"),
    ("GET", "/effects"),
    ("POST", "/effects/1/settle"),
    ("GET", "/alerts"),
    ("GET", "/stats"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_token_every_route_answers_401_and_does_nothing(api, method, path) -> None:
    answer = api.request(method, path, headers={"Authorization": ""})

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/flows/approvals_to_wecom").json()["paused"] is None
    assert api.get("/dead-letters").json() == []


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        f"Bearer {TOKEN.upper()}",
    ],
)
def test_a_wrong_token_answers_401(api, authorization) -> None:
    assert api.get("/flows", headers={"Authorization": authorization}).status_code == 401


def test_the_right_token_is_admitted(api) -> None:
    assert api.get("/flows").status_code == 200


def test_healthz_needs_no_token_and_tells_nothing_of_the_state(api) -> None:
    answer = api.get("/healthz", headers={"Authorization": ""})

    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_tokens_are_compared_as_digests_in_constant_time(api, monkeypatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)

    api.get("/flows", headers={"Authorization": "Bearer short"})
    api.get("/flows")

    expected = hashlib.sha256(TOKEN.encode()).digest()
    assert [(len(a), b) for a, b in compared] == [(32, expected), (32, expected)]


def test_refusals_are_counted_by_route_and_status(api) -> None:
    api.get("/flows", headers={"Authorization": "Bearer wrong"})
    api.get("/flows/no_such_flow")

    counted = {(a["route"], a["status"]): a["count"] for a in api.get("/stats").json()}

    assert counted[("unauthorized", 401)] == 1
    assert counted[("/flows/{flow}", 404)] == 1


def test_serve_refuses_to_start_without_a_token(admin_env) -> None:
    env = {k: v for k, v in admin_env.items() if k != "SYNC_ADMIN_TOKEN"}

    result = syncctl("admin", "serve", "--port", "1", env=env, timeout=60)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "syncctl: SYNC_ADMIN_TOKEN is not set: the admin API does not start without a token"
    ]


def test_the_real_server_listens_on_loopback_and_wants_the_token(served) -> None:
    assert served.startswith("http://127.0.0.1:")
    assert requests.get(f"{served}/flows", timeout=5).status_code == 401
    answer = requests.get(
        f"{served}/flows", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert answer.status_code == 200
