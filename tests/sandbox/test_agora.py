"""Contract tests of the Agora Chat emulator: real HTTP against a served emulator.

App tokens come from AgoraIO's own builder (`agoraiotools`, the PyPI build of AgoraIO/Tools)
as well as ours, so the parser is judged by an implementation we did not write.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from sync_pipeline.devtools.sandbox.agora import (
    AgoraEmulator,
    build_app_token,
    build_user_token,
    parse_access_token,
)
from sync_pipeline.devtools.sandbox.core import SandboxStore, now_ms
from sync_pipeline.devtools.sandbox.world import World

with warnings.catch_warnings():  # the package imports its own deprecated DynamicKey modules
    warnings.simplefilter("ignore", DeprecationWarning)
    from agoraiotools.AccessToken2 import AccessToken, ServiceChat  # type: ignore[import-untyped]
    from agoraiotools.ChatTokenBuilder2 import ChatTokenBuilder  # type: ignore[import-untyped]

ERROR_FIELDS = {"error", "exception", "timestamp", "duration", "error_description"}


@pytest.fixture
def agora(serve, store: SandboxStore) -> AgoraEmulator:
    emulator = serve(AgoraEmulator, store)
    emulator.seed(World(seed=11), approvals=0, checkin_days=0)
    assert isinstance(emulator, AgoraEmulator)
    return emulator


@pytest.fixture
def creds(agora: AgoraEmulator) -> dict[str, str]:
    return agora.credentials()


@pytest.fixture
def api(agora: AgoraEmulator, creds) -> Callable[..., requests.Response]:
    """Call `/{org}/{app}{path}` with an app token from AgoraIO's builder, or `token=`."""
    default = ChatTokenBuilder.build_app_token(creds["app_id"], creds["app_certificate"], 3600)

    def call(method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or default}", "Accept": "application/json"}
        url = f"{agora.base_url}/{creds['org_name']}/{creds['app_name']}{path}"
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    return call


class Receiver:
    """The customer's webhook: records each callback and answers with `status`."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/agora/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(agora, store: SandboxStore) -> Iterator[Receiver]:
    server = Receiver(200)
    store.set_setting("agora", "callback_url", server.url)
    yield server
    server.server.shutdown()


def text(to: list[str], msg: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"from": "e00001", "to": to, "type": "txt", "body": {"msg": msg}, **extra}


def hour_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d%H")


def a_group(agora: AgoraEmulator) -> dict[str, Any]:
    return agora.store.list("agora", "group", time_field="created_ms")[0]


# -- AccessToken2 ----------------------------------------------------------------------------
def test_our_app_token_is_byte_identical_to_agoraio_builder(creds) -> None:
    theirs = AccessToken(
        creds["app_id"], creds["app_certificate"], issue_ts=1_700_000_000, expire=600
    )
    theirs._AccessToken__salt = 4242  # the builder draws a random salt; pin it to compare
    chat = ServiceChat()
    chat.add_privilege(ServiceChat.kPrivilegeApp, 600)
    theirs.add_service(chat)

    ours = build_app_token(
        creds["app_id"], creds["app_certificate"], 600, issue_ts=1_700_000_000, salt=4242
    )

    assert ours == theirs.build()


def test_parser_reads_and_verifies_an_agoraio_app_token(creds) -> None:
    token = ChatTokenBuilder.build_app_token(creds["app_id"], creds["app_certificate"], 900)

    parsed = parse_access_token(token)

    assert parsed.app_id == creds["app_id"]
    assert parsed.services == {5: {2: 900}}
    assert parsed.chat_user_id == ""
    assert parsed.verifies(creds["app_certificate"])
    assert not parsed.verifies("0" * 32)


def test_parser_reads_an_agoraio_user_token(creds) -> None:
    token = ChatTokenBuilder.build_user_token(
        creds["app_id"], creds["app_certificate"], "e00001", 60
    )

    parsed = parse_access_token(token)

    assert parsed.services == {5: {1: 60}}
    assert parsed.chat_user_id == "e00001"


def test_agoraio_app_token_is_accepted(api) -> None:
    answer = api("GET", "/users/e00001")

    assert answer.status_code == 200
    assert answer.json()["entities"][0]["username"] == "e00001"
    assert answer.json()["count"] == 1


@pytest.mark.parametrize(
    ("make", "error", "description"),
    [
        (
            lambda c: build_app_token(
                c["app_id"], c["app_certificate"], 10, issue_ts=int(time.time()) - 60
            ),
            "unauthorized",
            "Unable to authenticate due to expired access token.",
        ),
        (
            lambda c: build_app_token(c["app_id"], "f" * 32, 600),
            "auth_bad_access_token",
            "Unable to authenticate.",
        ),
        (
            lambda c: build_user_token(c["app_id"], c["app_certificate"], "e00001", 600),
            "auth_bad_access_token",
            "Unable to authenticate.",
        ),
        (
            lambda c: "007eJxTYGBg",
            "auth_bad_access_token",
            "Unable to authenticate due to corrupt access token.",
        ),
    ],
    ids=["expired", "other-certificate", "user-token", "corrupt"],
)
def test_given_unusable_token_answers_401(api, creds, make, error, description) -> None:
    answer = api("GET", "/users/e00001", token=make(creds))

    assert answer.status_code == 401
    assert set(answer.json()) == ERROR_FIELDS
    assert answer.json()["error"] == error
    assert answer.json()["error_description"] == description


def test_given_no_token_answers_401_unauthorized(agora, creds) -> None:
    url = f"{agora.base_url}/{creds['org_name']}/{creds['app_name']}/users/e00001"

    answer = requests.get(url, timeout=5)

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_given_token_expire_fault_a_valid_token_stops_working(api, store) -> None:
    assert api("GET", "/users/e00001").status_code == 200
    store.expire_tokens("agora")

    answer = api("GET", "/users/e00001")

    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"


def test_given_bad_token_registration_answers_registration_not_open(api) -> None:
    answer = api("POST", "/users", token="garbage", json={"username": "newbie"})

    assert answer.status_code == 401
    assert (
        answer.json()["error_description"]
        == "Registration is not open, please contact the app admin."
    )


def test_given_wrong_org_answers_404_organization_application_not_found(agora, creds) -> None:
    token = build_app_token(creds["app_id"], creds["app_certificate"], 600)

    answer = requests.get(
        f"{agora.base_url}/nope/{creds['app_name']}/users/e00001",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )

    assert answer.status_code == 404
    assert answer.json()["error"] == "organization_application_not_found"


# -- users -----------------------------------------------------------------------------------
def test_registering_a_user_answers_the_entity_in_the_envelope(api, agora, creds) -> None:
    answer = api("POST", "/users", json={"username": "newbie", "password": "pw"})

    body = answer.json()
    assert answer.status_code == 200
    assert body["action"] == "post"
    assert body["path"] == "/users"
    assert body["organization"] == creds["org_name"]
    assert body["applicationName"] == creds["app_name"]
    [entity] = body["entities"]
    assert entity["username"] == "newbie"
    assert entity["activated"] is True
    assert [e.body for e in agora.store.ledger("agora")] == [{"usernames": ["newbie"]}]


def test_given_existing_username_registration_answers_duplicate(api) -> None:
    answer = api("POST", "/users", json={"username": "e00001"})

    assert answer.status_code == 400
    assert answer.json()["error"] == "duplicate_unique_property_exists"


def test_batch_registration_reports_existing_users_in_data(api) -> None:
    answer = api("POST", "/users", json=[{"username": "fresh"}, {"username": "e00001"}])

    assert [e["username"] for e in answer.json()["entities"]] == ["fresh"]
    assert answer.json()["data"] == [
        {"username": "e00001", "registerUserFailReason": "the e00001 already exists"}
    ]


def test_given_uppercase_username_registration_answers_illegal_argument(api) -> None:
    answer = api("POST", "/users", json={"username": "Alice"})

    assert answer.status_code == 400
    assert answer.json()["error"] == "illegal_argument"


def test_given_unknown_user_answers_404_service_resource_not_found(api) -> None:
    answer = api("GET", "/users/nobody")

    assert answer.status_code == 404
    assert answer.json()["error"] == "service_resource_not_found"


# -- messages --------------------------------------------------------------------------------
def test_message_to_users_answers_one_msg_id_per_recipient(api, agora) -> None:
    answer = api("POST", "/messages/users", json=text(["e00002", "e00003"]))

    data = answer.json()["data"]
    assert set(data) == {"e00002", "e00003"}
    assert all(msg_id.isdigit() for msg_id in data.values())
    [entry] = agora.store.ledger("agora")
    assert entry.endpoint == "POST /messages/users"
    assert entry.body["msg_ids"] == data


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (text(["e00002"], **{"from": ""}), 400, "illegal_argument"),
        (text([f"u{i}" for i in range(601)]), 400, "illegal_argument"),
        (text(["e00002"], "x" * 3000, ext={"k": "y" * 3000}), 413, "illegal_argument"),
        ({"to": ["e00002"], "type": "sms", "body": {"msg": "x"}}, 400, "illegal_argument"),
    ],
    ids=["empty-from", "601-recipients", "over-5KB", "unknown-type"],
)
def test_given_bad_message_answers_vendor_error(api, agora, body, status, error) -> None:
    answer = api("POST", "/messages/users", json=body)

    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert agora.store.ledger("agora") == []


def test_given_non_json_content_type_answers_415(api) -> None:
    answer = api("POST", "/messages/users", data="to=e00002")

    assert answer.status_code == 415


def test_message_to_a_group_answers_its_msg_id(api, agora) -> None:
    group = a_group(agora)["groupid"]

    answer = api("POST", "/messages/chatgroups", json=text([group]))

    assert list(answer.json()["data"]) == [group]
    assert answer.json()["path"] == "/messages"


def test_given_unknown_group_message_answers_404(api) -> None:
    answer = api("POST", "/messages/chatgroups", json=text(["123"]))

    assert answer.status_code == 404
    assert answer.json()["error"] == "service_resource_not_found"


def test_given_send_rate_reached_answers_429_reach_limit(api, store) -> None:
    store.set_setting("agora", "rate_limit_scale", "0.02")  # 100/s -> 2/s

    answers = [api("POST", "/messages/users", json=text(["e00002"])) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"] == "reach_limit"
    assert answers[2].json()["error_description"] == "This request has reached API limit."


def test_throttle_response_is_the_vendor_answer(agora) -> None:
    answer = agora.throttle_response()

    assert answer.status_code == 429
    assert json.loads(bytes(answer.body))["error"] == "reach_limit"


def test_recall_within_the_window_answers_yes_and_is_recorded(api, agora) -> None:
    msg_id = api("POST", "/messages/users", json=text(["e00002"])).json()["data"]["e00002"]

    answer = api(
        "POST", "/messages/msg_recall", json={"msg_id": msg_id, "to": "e00002", "chat_type": "chat"}
    )

    assert answer.json()["data"] == {
        "recalled": "yes",
        "msg_id": msg_id,
        "chattype": "chat",
        "from": "admin",
        "to": "e00002",
    }
    assert agora.store.ledger("agora")[-1].endpoint == "POST /messages/msg_recall"


def test_given_recall_window_passed_recall_needs_force(api, store) -> None:
    store.set_setting("agora", "recall_window_s", "0")
    msg_id = api("POST", "/messages/users", json=text(["e00002"])).json()["data"]["e00002"]
    time.sleep(0.01)
    recall = {"msg_id": msg_id, "to": "e00002", "chat_type": "chat"}

    late = api("POST", "/messages/msg_recall", json=recall)
    forced = api("POST", "/messages/msg_recall", json=recall | {"force": True})

    assert late.json()["data"]["recalled"] == "exceed recall time limit"
    assert forced.json()["data"]["recalled"] == "yes"


def test_card_update_is_a_recall_and_a_new_custom_message(api, agora) -> None:
    card = {"customEvent": "approval_card", "customExts": {"status": "pending"}}
    old = api("POST", "/messages/users", json={"to": ["e00002"], "type": "custom", "body": card})
    old_id = old.json()["data"]["e00002"]

    recalled = api(
        "POST", "/messages/msg_recall", json={"msg_id": old_id, "to": "e00002", "chat_type": "chat"}
    )
    new = api(
        "POST",
        "/messages/users",
        json={
            "to": ["e00002"],
            "type": "custom",
            "body": card | {"customExts": {"status": "approved"}},
        },
    )

    assert recalled.json()["data"]["recalled"] == "yes"
    assert new.status_code == 200
    assert [e.endpoint for e in agora.store.ledger("agora")] == [
        "POST /messages/users",
        "POST /messages/msg_recall",
        "POST /messages/users",
    ]


# -- groups ----------------------------------------------------------------------------------
def test_creating_a_group_answers_a_numeric_groupid(api, agora) -> None:
    answer = api(
        "POST",
        "/chatgroups",
        json={
            "groupname": "Approvals",
            "description": "d",
            "public": False,
            "owner": "e00001",
            "members": ["e00002"],
        },
    )

    group_id = answer.json()["data"]["groupid"]
    assert group_id.isdigit()
    members = api("GET", f"/chatgroups/{group_id}/users").json()["data"]
    assert members == [{"owner": "e00001"}, {"member": "e00002"}]
    assert agora.store.ledger("agora")[-1].endpoint == "POST /chatgroups"


def test_given_unknown_owner_group_creation_answers_404(api) -> None:
    answer = api("POST", "/chatgroups", json={"groupname": "g", "public": True, "owner": "ghost"})

    assert answer.status_code == 404
    assert answer.json()["error"] == "resource_not_found"


def test_group_members_page_by_pagenum_and_pagesize(api, agora) -> None:
    group = a_group(agora)
    everyone = [{"owner": group["owner"]}] + [{"member": m} for m in group["members"]]

    pages = [
        api(
            "GET", f"/chatgroups/{group['groupid']}/users", params={"pagenum": n, "pagesize": 3}
        ).json()
        for n in range(1, len(everyone) // 3 + 3)  # one page past the last
    ]

    assert [m for page in pages for m in page["data"]] == everyone
    assert pages[0]["params"] == {"pagesize": ["3"], "pagenum": ["1"]}
    assert pages[-1]["data"] == []
    assert pages[-1]["count"] == 0


def test_given_pagesize_over_100_members_answers_400(api, agora) -> None:
    group = a_group(agora)["groupid"]

    answer = api("GET", f"/chatgroups/{group}/users", params={"pagesize": 101})

    assert answer.status_code == 400


# -- history ---------------------------------------------------------------------------------
def put_old_message(store: SandboxStore, msg_id: str, at_ms: int) -> None:
    """A message sent in an hour that has ended: the only hours the export covers."""
    payload = {
        "bodies": [{"type": "txt", "msg": msg_id}],
        "ext": {},
        "from": "e00001",
        "to": "e00002",
    }
    message = {
        "msg_id": msg_id,
        "timestamp": at_ms,
        "direction": "outgoing",
        "to": "e00002",
        "from": "e00001",
        "chat_type": "chat",
        "payload": payload,
    }
    store.put("agora", "message", msg_id, message, created_ms=at_ms)


def test_history_of_an_ended_hour_links_a_gzip_of_json_lines(api, store) -> None:
    two_hours_ago = now_ms() - 2 * 3_600_000
    start = two_hours_ago - two_hours_ago % 3_600_000
    put_old_message(store, "101", start + 1000)
    put_old_message(store, "102", start + 2000)

    answer = api("GET", f"/chatmessages/{hour_of(start)}")

    [link] = answer.json()["data"]
    download = requests.get(link["url"], timeout=5)
    lines = gzip.decompress(download.content).decode().splitlines()
    assert [json.loads(line)["msg_id"] for line in lines] == ["101", "102"]
    assert json.loads(lines[0])["payload"]["bodies"] == [{"type": "txt", "msg": "101"}]


def test_given_hour_past_retention_history_answers_illegal_argument(api) -> None:
    answer = api("GET", f"/chatmessages/{hour_of(now_ms() - 4 * 86_400_000)}")

    assert answer.status_code == 400
    assert answer.json()["error"] == "illegal_argument"
    assert "expired or unstored" in answer.json()["error_description"]


def test_given_current_hour_history_is_not_stored_yet(api) -> None:
    api("POST", "/messages/users", json=text(["e00002"]))

    answer = api("GET", f"/chatmessages/{hour_of(now_ms())}")

    assert answer.status_code == 400
    assert answer.json()["error"] == "illegal_argument"


def test_given_hour_without_messages_history_answers_404_storage_object_not_found(api) -> None:
    answer = api("GET", f"/chatmessages/{hour_of(now_ms() - 2 * 3_600_000)}")

    assert answer.status_code == 404
    assert answer.json()["error"] == "storage_object_not_found"


def test_given_malformed_hour_history_answers_not_supported(api) -> None:
    answer = api("GET", "/chatmessages/2026-01-01")

    assert answer.status_code == 400
    assert answer.json()["error_description"] == "This chatmessage request is not supported."


@pytest.mark.parametrize(
    ("ttl", "tamper", "code"),
    [("-1", False, "AccessDenied"), ("600", True, "SignatureDoesNotMatch")],
    ids=["expired", "tampered"],
)
def test_given_expired_or_tampered_link_download_answers_403(api, store, ttl, tamper, code) -> None:
    store.set_setting("agora", "history_url_ttl_s", ttl)
    at = now_ms() - 2 * 3_600_000
    put_old_message(store, "103", at)
    url = api("GET", f"/chatmessages/{hour_of(at)}").json()["data"][0]["url"]

    download = requests.get(url.replace("Signature=", "Signature=x") if tamper else url, timeout=5)

    assert download.status_code == 403
    assert f"<Code>{code}</Code>" in download.text


# -- callbacks -------------------------------------------------------------------------------
def test_user_message_callback_carries_a_verifiable_security(agora, creds, receiver) -> None:
    result = agora.press(
        {"kind": "message", "from": "e00002", "to": "e00003", "msg": "hi", "ext": {"k": "v"}}
    )

    assert result["delivered"] == [200]
    [callback] = receiver.bodies
    expected = hashlib.md5(  # noqa: S324 - the vendor's signature algorithm
        f"{callback['callId']}{creds['callback_secret']}{callback['timestamp']}".encode()
    ).hexdigest()
    assert callback["security"] == expected
    assert callback["callId"].startswith(creds["app_key"] + "_")
    assert callback["payload"] == {"ext": {"k": "v"}, "bodies": [{"msg": "hi", "type": "txt"}]}
    assert {
        k: callback[k]
        for k in ("eventType", "chat_type", "from", "to", "msg_id", "securityVersion", "appkey")
    } == {
        "eventType": "chat",
        "chat_type": "chat",
        "from": "e00002",
        "to": "e00003",
        "msg_id": result["msg_id"],
        "securityVersion": "1.0.0",
        "appkey": creds["app_key"],
    }


def test_group_message_callback_names_the_group(agora, receiver) -> None:
    group = a_group(agora)["groupid"]

    agora.press(
        {
            "kind": "message",
            "from": "e00002",
            "to": group,
            "chat_type": "groupchat",
            "type": "custom",
            "body": {"customEvent": "card_action", "customExts": {"choice": "approve"}},
        }
    )

    [callback] = receiver.bodies
    assert callback["group_id"] == group
    assert callback["chat_type"] == "groupchat"
    assert callback["payload"]["bodies"][0]["v2:customExts"] == {"choice": "approve"}


def test_given_failing_receiver_the_callback_is_resent_once(agora, receiver) -> None:
    receiver.status = 500

    result = agora.press({"kind": "message", "from": "e00002", "to": "e00003", "msg": "hi"})

    assert result["delivered"] == [500, 500]
    assert receiver.bodies[0] == receiver.bodies[1]


def test_invalid_url_answers_500_web_application(agora) -> None:
    answer = requests.get(f"{agora.base_url}/x", timeout=5)

    assert answer.status_code == 500
    assert answer.json()["error"] == "web_application"
