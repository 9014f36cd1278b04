"""Contract tests of the Feishu emulator: real HTTP against a served emulator, vendor fields.

Where the official SDK (`lark-oapi`) can judge us, it does: its client fetches tokens and sends
messages through the emulator, and its own event dispatcher decrypts, checks and parses the
callbacks we send. An emulator that only agreed with itself would prove nothing.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lark_oapi as lark  # type: ignore[import-untyped]
import pytest
import requests
from lark_oapi.api.im.v1 import (  # type: ignore[import-untyped]
    CreateMessageRequest,
    CreateMessageRequestBody,
)
from lark_oapi.core.model import RawRequest  # type: ignore[import-untyped]
from lark_oapi.core.utils import AESCipher  # type: ignore[import-untyped]
from lark_oapi.event.callback.model.p2_card_action_trigger import (  # type: ignore[import-untyped]
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator, encrypt_event, sign_event
from sync_pipeline.devtools.sandbox.world import EPOCH_MS, World

API = "/open-apis"
FAR_FUTURE_MS = EPOCH_MS + 400 * 86_400_000
SHARED_CARD = {
    "config": {"update_multi": True},
    "elements": [{"tag": "div", "text": {"tag": "plain_text", "content": "Leave request"}}],
}


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def world() -> World:
    return World(seed=11)


@pytest.fixture
def feishu(serve, store: SandboxStore, world: World) -> FeishuEmulator:
    emulator = serve(FeishuEmulator, store)
    emulator.seed(world, approvals=40, checkin_days=10)
    assert isinstance(emulator, FeishuEmulator)
    return emulator


def fetch_token(feishu: FeishuEmulator) -> dict[str, Any]:
    creds = feishu.credentials()
    answer = requests.post(
        f"{feishu.base_url}{API}/auth/v3/tenant_access_token/internal",
        json={"app_id": creds["app_id"], "app_secret": creds["app_secret"]},
        timeout=5,
    )
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def api(feishu: FeishuEmulator) -> Callable[..., requests.Response]:
    """Call an open-apis path with a fresh tenant_access_token."""
    token = fetch_token(feishu)["tenant_access_token"]

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{feishu.base_url}{API}{path}", headers=headers, timeout=10, **kwargs
        )

    return call


class Receiver:
    """The customer's callback endpoint: a real HTTP server judged by the SDK's dispatcher."""

    def __init__(self, dispatcher: lark.EventDispatcherHandler) -> None:
        self.dispatcher = dispatcher
        self.seen: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                receiver.seen.append((headers, body))
                raw = RawRequest()
                raw.uri, raw.headers, raw.body = self.path, headers, body
                answer = receiver.dispatcher.do(raw)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.content or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feishu/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def events() -> dict[str, list[Any]]:
    return {"card": [], "message": [], "approval_task": [], "approval_instance": []}


@pytest.fixture
def receiver(feishu: FeishuEmulator, store: SandboxStore, events) -> Iterator[Receiver]:
    """A receiver configured with our credentials, so the SDK checks token, AES and signature."""
    creds = feishu.credentials()

    def on_card(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        events["card"].append(data)
        return P2CardActionTriggerResponse(
            {
                "toast": {"type": "success", "content": "Approved"},
                "card": {"type": "raw", "data": {**SHARED_CARD, "elements": []}},
            }
        )

    dispatcher = (
        lark.EventDispatcherHandler.builder(creds["encrypt_key"], creds["verification_token"])
        .register_p2_card_action_trigger(on_card)
        .register_p2_im_message_receive_v1(events["message"].append)
        .register_p1_customized_event("approval_task", events["approval_task"].append)
        .register_p1_customized_event("approval_instance", events["approval_instance"].append)
        .build()
    )
    server = Receiver(dispatcher)
    store.set_setting("feishu", "callback_url", server.url)
    yield server
    server.server.shutdown()


def send_card(api, feishu: FeishuEmulator, card: dict[str, Any] | None = None) -> dict[str, Any]:
    chat = first_chat(api)
    answer = api(
        "POST",
        "/im/v1/messages",
        params={"receive_id_type": "chat_id"},
        json={
            "receive_id": chat,
            "msg_type": "interactive",
            "content": json.dumps(card or SHARED_CARD),
        },
    )
    assert answer.json()["code"] == 0, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def first_chat(api) -> str:
    chat_id: str = api("GET", "/im/v1/chats").json()["data"]["items"][0]["chat_id"]
    return chat_id


def first_user(api) -> dict[str, Any]:
    dept = api("GET", "/contact/v3/departments/0/children").json()["data"]["items"][0]
    found = api(
        "GET",
        "/contact/v3/users/find_by_department",
        params={"department_id": dept["open_department_id"]},
    )
    user: dict[str, Any] = found.json()["data"]["items"][0]
    return user


def codes(feishu: FeishuEmulator) -> list[str]:
    return [a["approval_code"] for a in feishu.store.list("feishu", "approval")]


def list_instances(api, code: str, **params: Any) -> requests.Response:
    query = {"approval_code": code, "start_time": EPOCH_MS, "end_time": FAR_FUTURE_MS, **params}
    answer: requests.Response = api("GET", "/approval/v4/instances", params=query)
    return answer


def pending_instance(api, feishu: FeishuEmulator) -> dict[str, Any]:
    for code in codes(feishu):
        for instance_code in list_instances(api, code).json()["data"]["instance_code_list"]:
            detail: dict[str, Any] = api("GET", f"/approval/v4/instances/{instance_code}").json()[
                "data"
            ]
            if detail["status"] == "PENDING":
                return detail
    raise AssertionError("the seeded world has no pending approval")


# -- tenant_access_token ---------------------------------------------------------------------
def test_valid_credentials_get_a_tenant_access_token(feishu) -> None:
    body = fetch_token(feishu)

    assert body["code"] == 0
    assert body["tenant_access_token"].startswith("t-")
    assert body["expire"] == 7200


def test_given_wrong_secret_token_fetch_answers_10003_with_http_200(feishu) -> None:
    answer = requests.post(
        f"{feishu.base_url}{API}/auth/v3/tenant_access_token/internal",
        json={"app_id": feishu.credentials()["app_id"], "app_secret": "wrong"},
        timeout=5,
    )

    assert answer.status_code == 200
    assert answer.json()["code"] == 10003
    assert "tenant_access_token" not in answer.json()


def test_given_30_minutes_left_the_same_token_is_handed_back(feishu) -> None:
    first, second = fetch_token(feishu), fetch_token(feishu)

    assert second["tenant_access_token"] == first["tenant_access_token"]
    assert 7100 < second["expire"] <= 7200


def test_given_under_30_minutes_left_a_new_token_is_issued_and_both_work(feishu, store) -> None:
    store.set_setting("feishu", "token_ttl_s", "1700")
    first, second = fetch_token(feishu), fetch_token(feishu)

    assert second["tenant_access_token"] != first["tenant_access_token"]
    for token in (first["tenant_access_token"], second["tenant_access_token"]):
        answer = requests.get(
            f"{feishu.base_url}{API}/im/v1/chats",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert answer.json()["code"] == 0


@pytest.mark.parametrize("header", [None, "", "Bearer ", "t-abc"])
def test_given_no_bearer_token_answers_99991661(feishu, header) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = requests.get(f"{feishu.base_url}{API}/im/v1/chats", headers=headers, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["code"] == 99991661
    assert set(answer.json()["error"]) == {"log_id", "troubleshooter"}


def test_given_expired_tokens_calls_answer_99991663_with_http_400(feishu, store, api) -> None:
    store.expire_tokens("feishu")

    answer = api("GET", "/im/v1/chats")

    assert answer.status_code == 400
    assert answer.json()["code"] == 99991663
    assert answer.json()["error"]["log_id"]


def test_given_short_token_ttl_the_token_stops_working_when_it_expires(feishu, store) -> None:
    store.set_setting("feishu", "token_ttl_s", "1")
    token = fetch_token(feishu)["tenant_access_token"]
    time.sleep(1.1)

    answer = requests.get(
        f"{feishu.base_url}{API}/im/v1/chats",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )

    assert answer.json()["code"] == 99991663


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/open-apis/nothing/here"), ("DELETE", "/open-apis/im/v1/chats")]
)
def test_unknown_path_or_method_answers_plain_text_404(feishu, method, path) -> None:
    answer = requests.request(method, f"{feishu.base_url}{path}", timeout=5)

    assert answer.status_code == 404
    assert answer.text == "404 page not found"


# -- approval v4 -----------------------------------------------------------------------------
def test_instance_list_pages_cover_every_instance_once(feishu, api) -> None:
    seen: list[str] = []
    for code in codes(feishu):
        token = None
        while True:
            params = {"page_size": 5} | ({"page_token": token} if token else {})
            data = list_instances(api, code, **params).json()["data"]
            seen += data["instance_code_list"]
            if not data["has_more"]:
                assert "page_token" not in data
                break
            token = data["page_token"]

    assert len(seen) == len(set(seen)) == 40


def test_reused_page_token_returns_the_same_page(feishu, api) -> None:
    code = codes(feishu)[0]
    token = list_instances(api, code, page_size=3).json()["data"]["page_token"]

    first = list_instances(api, code, page_size=3, page_token=token).json()["data"]
    again = list_instances(api, code, page_size=3, page_token=token).json()["data"]

    assert first == again
    assert len(first["instance_code_list"]) == 3


def test_given_invalid_page_token_list_answers_1390001(feishu, api) -> None:
    answer = list_instances(api, codes(feishu)[0], page_token="not-a-token")

    assert answer.status_code == 400
    assert answer.json()["code"] == 1390001


def test_given_window_without_instances_list_is_an_empty_last_page(feishu, api) -> None:
    answer = list_instances(api, codes(feishu)[0], start_time=0, end_time=1000)

    assert answer.json() == {
        "code": 0,
        "msg": "success",
        "data": {"instance_code_list": [], "has_more": False},
    }


def test_given_page_size_over_100_list_answers_1390001(feishu, api) -> None:
    answer = list_instances(api, codes(feishu)[0], page_size=101)

    assert answer.status_code == 400
    assert answer.json()["code"] == 1390001


def test_given_unknown_approval_code_list_answers_1390002(feishu, api) -> None:
    assert list_instances(api, "NOPE").json()["code"] == 1390002


def test_instance_detail_carries_the_vendor_fields(feishu, api) -> None:
    detail = pending_instance(api, feishu)

    assert detail["end_time"] == "0"
    assert detail["open_id"].startswith("ou_")
    assert isinstance(json.loads(detail["form"]), list)
    assert detail["timeline"][0]["type"] == "START"
    assert detail["task_list"][-1]["status"] == "PENDING"
    assert set(detail["task_list"][-1]) == {
        "id", "user_id", "open_id", "status", "node_id", "node_name", "custom_node_id",
        "type", "start_time", "end_time",
    }  # fmt: skip
    assert not any(key.startswith("_") for key in detail)


def test_given_unknown_instance_detail_answers_1390003(feishu, api) -> None:
    assert api("GET", "/approval/v4/instances/NOPE").json()["code"] == 1390003


def test_pending_approver_approves_task_and_the_ledger_records_it(feishu, api) -> None:
    detail = pending_instance(api, feishu)
    task = detail["task_list"][-1]

    answer = api(
        "POST",
        "/approval/v4/tasks/approve",
        params={"user_id_type": "open_id"},
        json={
            "approval_code": detail["approval_code"],
            "instance_code": detail["instance_code"],
            "user_id": task["open_id"],
            "task_id": task["id"],
            "comment": "fine",
        },
    )

    assert answer.json() == {"code": 0, "msg": "success", "data": {}}
    after = api("GET", f"/approval/v4/instances/{detail['instance_code']}").json()["data"]
    assert next(t for t in after["task_list"] if t["id"] == task["id"])["status"] == "APPROVED"
    assert after["timeline"][-1]["type"] == "PASS"
    [entry] = feishu.store.ledger("feishu")
    assert entry.endpoint == "POST /open-apis/approval/v4/tasks/approve"


def test_given_another_user_approving_answers_1390001(feishu, api) -> None:
    detail = pending_instance(api, feishu)
    task = detail["task_list"][-1]

    answer = api(
        "POST",
        "/approval/v4/tasks/reject",
        json={
            "approval_code": detail["approval_code"],
            "instance_code": detail["instance_code"],
            "user_id": detail["open_id"],  # the applicant, not the approver
            "task_id": task["id"],
        },
    )

    assert answer.json()["code"] == 1390001
    assert feishu.store.ledger("feishu") == []


def test_subscribing_twice_answers_1390007(feishu, api) -> None:
    code = codes(feishu)[0]

    first = api("POST", f"/approval/v4/approvals/{code}/subscribe")
    second = api("POST", f"/approval/v4/approvals/{code}/subscribe")

    assert first.json()["code"] == 0
    assert second.json()["code"] == 1390007


# -- attendance ------------------------------------------------------------------------------
def test_user_tasks_by_employee_no_answer_per_day_results(feishu, api) -> None:
    answer = api(
        "POST",
        "/attendance/v1/user_tasks/query",
        params={"employee_type": "employee_no"},
        json={
            "user_ids": ["E00001", "E99999"],
            "check_date_from": 20260101,
            "check_date_to": 20260107,
        },
    )

    data = answer.json()["data"]
    assert data["invalid_user_ids"] == ["E99999"]
    assert [r["day"] for r in data["user_task_results"]] == [
        20260101,
        20260102,
        20260105,
        20260106,
        20260107,
    ]
    first = data["user_task_results"][0]
    assert first["user_id"] == "E00001"
    assert first["records"][0]["check_in_result"] in ("Normal", "Late")
    assert first["records"][0]["check_in_record"]["user_id"] == "E00001"


def test_given_more_than_50_user_ids_user_tasks_answers_1220001(feishu, api) -> None:
    answer = api(
        "POST",
        "/attendance/v1/user_tasks/query",
        params={"employee_type": "employee_id"},
        json={
            "user_ids": [str(i) for i in range(51)],
            "check_date_from": 20260101,
            "check_date_to": 20260102,
        },
    )

    assert answer.json()["code"] == 1220001


# -- contact ---------------------------------------------------------------------------------
def test_root_children_are_the_world_departments(feishu, api, world) -> None:
    items = api("GET", "/contact/v3/departments/0/children", params={"page_size": 50}).json()[
        "data"
    ]["items"]

    assert [d["name"] for d in items] == [d.name for d in world.departments[1:]]
    assert all(
        d["open_department_id"].startswith("od-") and d["parent_department_id"] == "0"
        for d in items
    )


def test_department_users_page_with_every_id_kind(feishu, api, world) -> None:
    seen: list[dict[str, Any]] = []
    token = None
    while True:
        params = {"department_id": "d2", "department_id_type": "department_id", "page_size": 3}
        data = api(
            "GET",
            "/contact/v3/users/find_by_department",
            params=params | ({"page_token": token} if token else {}),
        ).json()["data"]
        seen += data["items"]
        if not data["has_more"]:
            break
        token = data["page_token"]

    expected = [p for p in world.people if p.department_id == "d2"]
    assert [u["employee_no"] for u in seen] == [p.employee_no for p in expected]
    assert seen[0]["email"] == expected[0].email
    assert seen[0]["mobile"] == expected[0].mobile
    assert seen[0]["open_id"].startswith("ou_")
    assert seen[0]["union_id"].startswith("on_")
    assert seen[0]["department_ids"] == ["d2"]


# -- IM --------------------------------------------------------------------------------------
def test_text_message_to_a_user_is_sent_and_recorded(feishu, api) -> None:
    user = first_user(api)

    answer = api(
        "POST",
        "/im/v1/messages",
        params={"receive_id_type": "email"},
        json={
            "receive_id": user["email"],
            "msg_type": "text",
            "content": json.dumps({"text": "hi"}),
        },
    )

    data = answer.json()["data"]
    assert data["message_id"].startswith("om_")
    assert data["chat_id"].startswith("oc_")
    assert data["body"] == {"content": '{"text": "hi"}'}
    assert data["sender"]["sender_type"] == "app"
    [entry] = feishu.store.ledger("feishu")
    assert entry.body["message_id"] == data["message_id"]


def test_same_uuid_within_an_hour_answers_the_first_message_and_sends_once(feishu, api) -> None:
    user = first_user(api)
    body = {
        "receive_id": user["open_id"],
        "msg_type": "text",
        "content": '{"text":"x"}',
        "uuid": "u-1",
    }

    first = api("POST", "/im/v1/messages", params={"receive_id_type": "open_id"}, json=body)
    again = api("POST", "/im/v1/messages", params={"receive_id_type": "open_id"}, json=body)

    assert again.json()["data"]["message_id"] == first.json()["data"]["message_id"]
    assert len(feishu.store.ledger("feishu")) == 1


def age_ledger(store: SandboxStore, seconds: float) -> None:
    """Make every Feishu write so much older, as if the clock had moved on."""
    with store.write() as conn:
        conn.execute(
            "UPDATE ledger SET ts_ms = ts_ms - ? WHERE platform = 'feishu'", (int(seconds * 1000),)
        )


def send_with_uuid(api, user: dict[str, Any], dedupe: str) -> dict[str, Any]:
    body = {
        "receive_id": user["open_id"],
        "msg_type": "text",
        "content": '{"text":"x"}',
        "uuid": dedupe,
    }
    answer = api("POST", "/im/v1/messages", params={"receive_id_type": "open_id"}, json=body)
    assert answer.json()["code"] == 0, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def test_same_uuid_just_under_an_hour_later_still_answers_the_first_message(
    feishu, api, store
) -> None:
    user = first_user(api)
    first = send_with_uuid(api, user, "u-59")
    age_ledger(store, 3600 - 5)

    again = send_with_uuid(api, user, "u-59")

    assert again["message_id"] == first["message_id"]
    assert len(feishu.store.ledger("feishu")) == 1


def test_same_uuid_just_over_an_hour_later_sends_a_new_message(feishu, api, store) -> None:
    user = first_user(api)
    first = send_with_uuid(api, user, "u-61")
    age_ledger(store, 3600 + 5)

    again = send_with_uuid(api, user, "u-61")

    assert again["message_id"] != first["message_id"]
    assert [e.idem_key for e in feishu.store.ledger("feishu")] == ["im.message.uuid:u-61"] * 2


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"receive_id": "oc_nope", "msg_type": "text", "content": '{"text":"x"}'}, 230002),
        ({"receive_id": "CHAT", "msg_type": "text", "content": {"text": "x"}}, 230001),
        ({"receive_id": "CHAT", "msg_type": "text", "content": "not json"}, 230001),
        ({"receive_id": "CHAT", "msg_type": "telegram", "content": "{}"}, 230001),
    ],
)
def test_given_bad_message_request_answers_vendor_code(feishu, api, body, code) -> None:
    body = {
        **body,
        "receive_id": first_chat(api) if body["receive_id"] == "CHAT" else body["receive_id"],
    }

    answer = api("POST", "/im/v1/messages", params={"receive_id_type": "chat_id"}, json=body)

    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert feishu.store.ledger("feishu") == []


def test_given_rate_limit_reached_answers_429_with_ogw_headers(feishu, store, api) -> None:
    store.set_setting("feishu", "rate_limit_scale", "0.04")  # 50/s -> 2/s
    chat = first_chat(api)
    body = {"receive_id": chat, "msg_type": "text", "content": '{"text":"x"}'}

    answers = [
        api("POST", "/im/v1/messages", params={"receive_id_type": "chat_id"}, json=body)
        for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json() == {"code": 99991400, "msg": "request trigger frequency limit"}
    assert answers[2].headers["x-ogw-ratelimit-limit"] == "2"
    assert int(answers[2].headers["x-ogw-ratelimit-reset"]) >= 1


def test_throttle_response_is_the_gateway_answer(feishu) -> None:
    answer = feishu.throttle_response()

    assert answer.status_code == 429
    assert json.loads(bytes(answer.body))["code"] == 99991400
    assert "x-ogw-ratelimit-reset" in answer.headers


def test_chat_history_pages_in_creation_order(feishu, api) -> None:
    chat = first_chat(api)
    sent = [
        api(
            "POST",
            "/im/v1/messages",
            params={"receive_id_type": "chat_id"},
            json={"receive_id": chat, "msg_type": "text", "content": json.dumps({"text": str(i)})},
        ).json()["data"]["message_id"]
        for i in range(5)
    ]
    query = {"container_id_type": "chat", "container_id": chat, "page_size": 2}

    pages, token = [], None
    while True:
        data = api(
            "GET", "/im/v1/messages", params=query | ({"page_token": token} if token else {})
        ).json()["data"]
        pages.append([m["message_id"] for m in data["items"]])
        if not data["has_more"]:
            break
        token = data["page_token"]

    assert pages == [sent[0:2], sent[2:4], sent[4:5]]


def test_shared_card_is_patched_in_place_and_recorded(feishu, api) -> None:
    message = send_card(api, feishu)
    new_card = {**SHARED_CARD, "elements": [{"tag": "markdown", "content": "**Approved**"}]}

    answer = api(
        "PATCH", f"/im/v1/messages/{message['message_id']}", json={"content": json.dumps(new_card)}
    )

    assert answer.json()["code"] == 0
    stored = feishu.store.get("feishu", "message", message["message_id"])
    assert stored is not None
    assert json.loads(stored["body"]["content"]) == new_card
    assert stored["updated"] is True
    assert (
        feishu.store.ledger("feishu")[-1].endpoint == "PATCH /open-apis/im/v1/messages/:message_id"
    )


def test_given_card_without_update_multi_patch_answers_230099(feishu, api) -> None:
    message = send_card(api, feishu, card={"elements": []})

    answer = api(
        "PATCH",
        f"/im/v1/messages/{message['message_id']}",
        json={"content": json.dumps(SHARED_CARD)},
    )

    assert answer.json()["code"] == 230099


def test_given_text_message_patch_answers_230001(feishu, api) -> None:
    chat = first_chat(api)
    sent = api(
        "POST",
        "/im/v1/messages",
        params={"receive_id_type": "chat_id"},
        json={"receive_id": chat, "msg_type": "text", "content": '{"text":"x"}'},
    ).json()["data"]

    answer = api(
        "PATCH", f"/im/v1/messages/{sent['message_id']}", json={"content": json.dumps(SHARED_CARD)}
    )

    assert answer.json()["code"] == 230001


def test_chat_list_shows_group_chats_only(feishu, api, world) -> None:
    first_user_id = first_user(api)["open_id"]
    api(
        "POST",
        "/im/v1/messages",
        params={"receive_id_type": "open_id"},
        json={"receive_id": first_user_id, "msg_type": "text", "content": '{"text":"p2p"}'},
    )

    items = api("GET", "/im/v1/chats", params={"page_size": 100}).json()["data"]["items"]

    assert [c["name"] for c in items] == [g.name for g in world.groups]
    assert all(c["chat_id"].startswith("oc_") and c["chat_mode"] == "group" for c in items)


# -- callbacks, judged by the SDK's dispatcher -----------------------------------------------
def test_url_verification_is_answered_by_the_sdk_dispatcher(feishu, receiver) -> None:
    result = feishu.press({"kind": "url_verification"})

    assert result["verified"] is True
    _headers, body = receiver.seen[0]
    assert set(json.loads(body)) == {"encrypt"}


def test_card_action_answer_updates_the_card_and_the_token_allows_two_updates(
    feishu, api, receiver, events
) -> None:
    message = send_card(api, feishu)

    result = feishu.press(
        {
            "kind": "card_action",
            "message_id": message["message_id"],
            "user": "E00002",
            "value": {"action": "approve"},
        }
    )

    assert result["delivered"] == [200]
    assert result["toast"] == {"type": "success", "content": "Approved"}
    [event] = events["card"]
    assert event.event.action.value == {"action": "approve"}
    assert event.event.context.open_message_id == message["message_id"]
    stored = feishu.store.get("feishu", "message", message["message_id"])
    assert stored is not None
    assert json.loads(stored["body"]["content"])["elements"] == []
    updates = [
        api(
            "POST",
            "/interactive/v1/card/update",
            json={"token": result["token"], "card": SHARED_CARD},
        ).json()["code"]
        for _ in range(3)
    ]
    assert updates == [0, 0, 230001]


def test_user_message_event_reaches_the_sdk_with_mentions(feishu, api, receiver, events) -> None:
    chat = first_chat(api)

    result = feishu.press(
        {
            "kind": "message",
            "chat_id": chat,
            "user": "E00003",
            "text": "please check",
            "mentions": ["bot", "E00004"],
        }
    )

    assert result["delivered"] == [200]
    [event] = events["message"]
    assert event.event.message.chat_id == chat
    assert event.event.message.chat_type == "group"
    assert json.loads(event.event.message.content) == {"text": "@_user_1 @_user_2 please check"}
    assert [m.key for m in event.event.message.mentions] == ["@_user_1", "@_user_2"]
    assert event.event.sender.sender_id.open_id.startswith("ou_")


def test_approval_decision_in_feishu_sends_task_and_instance_events(
    feishu, api, receiver, events
) -> None:
    detail = pending_instance(api, feishu)
    api("POST", f"/approval/v4/approvals/{detail['approval_code']}/subscribe")

    result = feishu.press(
        {"kind": "reject", "instance_code": detail["instance_code"], "comment": "no"}
    )

    assert result == {
        "instance_code": detail["instance_code"],
        "status": "REJECTED",
        "delivered": [200, 200],
    }
    [task_event] = events["approval_task"]
    [instance_event] = events["approval_instance"]
    assert task_event.event["status"] == "REJECTED"
    assert task_event.token == feishu.credentials()["verification_token"]
    assert instance_event.event == instance_event.event | {
        "instance_code": detail["instance_code"],
        "status": "REJECTED",
    }


def test_given_unsubscribed_approval_no_event_is_sent(feishu, api, receiver) -> None:
    detail = pending_instance(api, feishu)

    result = feishu.press({"kind": "approval_instance", "instance_code": detail["instance_code"]})

    assert result == {"delivered": [], "subscribed": False}
    assert receiver.seen == []


def test_given_no_encrypt_key_events_are_plain_and_unsigned(feishu, store, api, receiver) -> None:
    store.set_setting("feishu", "encrypt_key", "")
    receiver.dispatcher = (
        lark.EventDispatcherHandler.builder("", feishu.credentials()["verification_token"])
        .register_p2_im_message_receive_v1(lambda data: None)
        .build()
    )

    result = feishu.press(
        {"kind": "message", "chat_id": first_chat(api), "user": "E00003", "text": "plain"}
    )

    assert result["delivered"] == [200]
    headers, body = receiver.seen[0]
    assert json.loads(body)["header"]["event_type"] == "im.message.receive_v1"
    assert "X-Lark-Signature" not in headers


# -- crypto and the official SDK -------------------------------------------------------------
def test_sdk_aes_cipher_decrypts_our_event_encryption() -> None:
    plaintext = json.dumps({"challenge": "abc", "type": "url_verification"}).encode()

    encrypted = encrypt_event("test key", plaintext)

    assert AESCipher("test key").decrypt_str(encrypted) == plaintext.decode()
    raw = base64.b64decode(encrypted)
    assert len(raw) >= 32
    assert len(raw) % 16 == 0


def test_event_encryption_reproduces_the_published_sample() -> None:
    # Feishu's own sample: Encrypt Key "test key", plaintext "hello world" (open.feishu.cn,
    # event-subscription-guide/event-subscription-configure-/request-url-configuration-case).
    sample = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="
    iv = base64.b64decode(sample)[:16]

    assert encrypt_event("test key", b"hello world", iv=iv) == sample


def test_signature_matches_the_documented_formula() -> None:
    import hashlib

    body = b'{"encrypt":"x"}'

    assert (
        sign_event("1700000000", "n0", "key", body)
        == hashlib.sha256(b"1700000000n0key" + body).hexdigest()
    )


def test_sdk_client_gets_a_token_and_sends_a_message(feishu, api) -> None:
    creds = feishu.credentials()
    client = (
        lark.Client.builder()
        .app_id(creds["app_id"])
        .app_secret(creds["app_secret"])
        .domain(feishu.base_url)
        .build()
    )
    user = first_user(api)
    request = (
        CreateMessageRequest.builder()
        .receive_id_type("open_id")
        .request_body(
            CreateMessageRequestBody.builder()
            .receive_id(user["open_id"])
            .msg_type("text")
            .content(json.dumps({"text": "from the SDK"}))
            .uuid("sdk-1")
            .build()
        )
        .build()
    )

    response = client.im.v1.message.create(request)

    assert response.success(), response.msg
    assert response.data.message_id.startswith("om_")
    [entry] = feishu.store.ledger("feishu")
    assert entry.idem_key == "im.message.uuid:sdk-1"


# -- throughput ------------------------------------------------------------------------------
@pytest.mark.slow
def test_instance_listing_serves_over_2000_records_per_second(serve, tmp_path) -> None:
    store = SandboxStore(tmp_path / "big.db")
    feishu = serve(FeishuEmulator, store)
    feishu.seed(World(seed=3), approvals=6000, checkin_days=0)
    token = fetch_token(feishu)["tenant_access_token"]
    code = codes(feishu)[0]

    started, listed, page = time.perf_counter(), 0, None
    with requests.Session() as session:
        while True:
            params: dict[str, str | int] = {
                "approval_code": code,
                "start_time": 0,
                "end_time": FAR_FUTURE_MS,
                "page_size": 100,
            }
            answer = session.get(
                f"{feishu.base_url}{API}/approval/v4/instances",
                params=params | ({"page_token": page} if page else {}),
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            ).json()["data"]
            listed += len(answer["instance_code_list"])
            if not answer["has_more"]:
                break
            page = answer["page_token"]

    assert listed == 2000
    assert listed / (time.perf_counter() - started) > 2000
