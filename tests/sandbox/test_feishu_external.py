"""Contract tests of the Feishu emulator's third-party approvals: definitions, instance sync
(REPLACE and UPDATE), check, the task list, and the quick-approval callback a press sends.

The official SDK (`lark-oapi`) talks to the emulator where it has a call for it, and its own
AESCipher decrypts what the quick-approval callback sends."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lark_oapi as lark  # type: ignore[import-untyped]
import pytest
import requests
from lark_oapi.api.approval.v4 import (  # type: ignore[import-untyped]
    ApprovalCreateExternal,
    CreateExternalApprovalRequest,
    CreateExternalInstanceRequest,
    ExternalApproval,
    ExternalInstance,
    ExternalInstanceLink,
    ExternalInstanceTaskNode,
    GetExternalApprovalRequest,
    ListExternalTaskRequest,
    ListExternalTaskRequestBody,
)
from lark_oapi.core.utils import AESCipher  # type: ignore[import-untyped]

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.devtools.sandbox.world import World

API = "/open-apis"
CODE = "oa-approvals"
LINKS = {"pc_link": "https://oa.example/r/1", "mobile_link": "https://oa.example/m/1"}
QUICK = [
    {"action_type": "APPROVE", "action_name": "Approve"},
    {"action_type": "REJECT", "action_name": "Reject", "is_need_reason": True},
]


@pytest.fixture
def feishu(serve, store: SandboxStore) -> FeishuEmulator:
    emulator = serve(FeishuEmulator, store)
    emulator.seed(World(seed=11), approvals=10, checkin_days=0)
    assert isinstance(emulator, FeishuEmulator)
    return emulator


@pytest.fixture
def api(feishu: FeishuEmulator) -> Callable[..., requests.Response]:
    creds = feishu.credentials()
    token = requests.post(
        f"{feishu.base_url}{API}/auth/v3/tenant_access_token/internal",
        json={"app_id": creds["app_id"], "app_secret": creds["app_secret"]},
        timeout=5,
    ).json()["tenant_access_token"]

    def call(method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return requests.request(
            method, f"{feishu.base_url}{API}{path}", headers=headers, timeout=10, **kwargs
        )

    return call


@pytest.fixture
def sdk(feishu: FeishuEmulator) -> lark.Client:
    creds = feishu.credentials()
    return (
        lark.Client.builder()
        .app_id(creds["app_id"])
        .app_secret(creds["app_secret"])
        .domain(feishu.base_url)
        .build()
    )


@pytest.fixture
def users(feishu: FeishuEmulator) -> list[dict[str, Any]]:
    return feishu.store.list("feishu", "user", time_field="created_ms", limit=3)


class CallbackReceiver:
    """The OA side of the quick-approval callback: records each body, answers `answer`."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(answer).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/feishu"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver({"code": 0, "msg": "success"})
    yield server
    server.server.shutdown()


def define(api, callback_url: str = "https://oa.example/cb", key: str | None = "cb-key") -> None:
    external: dict[str, Any] = {
        "biz_name": "OA",
        "support_pc": True,
        "support_mobile": True,
        "enable_quick_operate": True,
        "action_callback_url": callback_url,
        "action_callback_token": "cb-token",
    }
    if key:
        external["action_callback_key"] = key
    answer = api(
        "POST",
        "/approval/v4/external_approvals",
        json={
            "approval_name": "@i18n@1",
            "approval_code": CODE,
            "group_code": "oa",
            "group_name": "@i18n@2",
            "external": external,
            "i18n_resources": [
                {
                    "locale": "en-US",
                    "is_default": True,
                    "texts": [{"key": "@i18n@1", "value": "OA"}, {"key": "@i18n@2", "value": "OA"}],
                }
            ],
            "viewers": [{"viewer_type": "TENANT"}],
        },
    )
    assert answer.json()["code"] == 0, answer.text


def task(task_id: str, user: dict[str, Any], status: str = "PENDING", **more: Any) -> dict:
    return {
        "task_id": task_id,
        "open_id": user["open_id"],
        "links": LINKS,
        "status": status,
        "create_time": "1700000000000",
        "end_time": 0,
        "update_time": "1700000000000",
        "action_context": json.dumps({"source_id": "1", "open_id": user["open_id"]}),
        "action_configs": QUICK,
        **more,
    }


def instance(applicant: dict[str, Any], tasks: list[dict], **more: Any) -> dict[str, Any]:
    return {
        "approval_code": CODE,
        "instance_id": "req-1",
        "status": "PENDING",
        "links": LINKS,
        "title": "Annual leave",
        "form": [{"name": "Days", "value": "3"}],
        "open_id": applicant["open_id"],
        "start_time": "1700000000000",
        "end_time": 0,
        "update_time": "1700000000000",
        "task_list": tasks,
        **more,
    }


def sync(api, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = api("POST", "/approval/v4/external_instances", json=body).json()
    return answer


def held(feishu: FeishuEmulator, instance_id: str = "req-1") -> dict[str, Any]:
    found = feishu.store.get("feishu", "external_instance", instance_id)
    assert found is not None
    return found


# -- definitions -----------------------------------------------------------------------------
def test_sdk_creates_a_definition_and_reads_it_back(feishu, sdk) -> None:
    body = (
        ExternalApproval.builder()
        .approval_name("OA approvals")
        .approval_code(CODE)
        .group_code("oa")
        .group_name("OA")
        .external(
            ApprovalCreateExternal.builder()
            .support_pc(True)
            .support_mobile(True)
            .action_callback_url("https://oa.example/cb")
            .action_callback_token("cb-token")
            .build()
        )
        .build()
    )

    created = sdk.approval.v4.external_approval.create(
        CreateExternalApprovalRequest.builder().request_body(body).build()
    )
    read = sdk.approval.v4.external_approval.get(
        GetExternalApprovalRequest.builder().approval_code(CODE).build()
    )

    assert created.success(), created.msg
    assert created.data.approval_code == CODE
    assert read.success(), read.msg
    assert read.data.external.action_callback_url == "https://oa.example/cb"


def test_the_ledger_keeps_a_definition_without_its_callback_secrets(feishu, api) -> None:
    define(api)

    [entry] = feishu.store.ledger("feishu")

    assert entry.endpoint == "POST /open-apis/approval/v4/external_approvals"
    assert "cb-token" not in json.dumps(entry.body)
    assert "cb-key" not in json.dumps(entry.body)


def test_a_name_key_without_an_i18n_text_is_a_param_error(api) -> None:
    answer = api(
        "POST",
        "/approval/v4/external_approvals",
        json={
            "approval_name": "@i18n@9",
            "approval_code": CODE,
            "group_code": "oa",
            "external": {"support_pc": True},
        },
    )

    assert answer.status_code == 400
    assert answer.json()["code"] == 1390001


def test_an_unknown_definition_reads_as_not_found(api) -> None:
    assert api("GET", "/approval/v4/external_approvals/nope").json()["code"] == 1390002


# -- instances -------------------------------------------------------------------------------
def test_sdk_syncs_an_instance_that_the_emulator_keeps(feishu, api, sdk, users) -> None:
    define(api)
    applicant, approver = users[0], users[1]
    body = (
        ExternalInstance.builder()
        .approval_code(CODE)
        .instance_id("req-1")
        .status("PENDING")
        .title("Annual leave")
        .links(ExternalInstanceLink.builder().pc_link("https://oa.example/r/1").build())
        .open_id(applicant["open_id"])
        .start_time(1700000000000)
        .end_time(0)
        .update_time(1700000000000)
        .task_list(
            [
                ExternalInstanceTaskNode.builder()
                .task_id("t-1")
                .open_id(approver["open_id"])
                .status("PENDING")
                .links(ExternalInstanceLink.builder().pc_link("https://oa.example/r/1").build())
                .create_time(1700000000000)
                .end_time(0)
                .update_time(1700000000000)
                .build()
            ]
        )
        .build()
    )

    answer = sdk.approval.v4.external_instance.create(
        CreateExternalInstanceRequest.builder().request_body(body).build()
    )

    assert answer.success(), answer.msg
    assert answer.data.data.instance_id == "req-1"
    [kept] = held(feishu)["task_list"]
    assert kept["user_id"] == approver["user_id"]  # both ids, whichever was given


def test_an_instance_of_an_unknown_definition_is_refused(api, users) -> None:
    answer = sync(api, instance(users[0], [task("t-1", users[1])]))

    assert answer["code"] == 1390002


def test_replace_drops_the_tasks_a_push_leaves_out(feishu, api, users) -> None:
    define(api)
    sync(api, instance(users[0], [task("t-1", users[1]), task("t-2", users[2])]))

    answer = sync(api, instance(users[0], [task("t-1", users[1], "APPROVED")]))

    assert answer["code"] == 0
    assert [(t["task_id"], t["status"]) for t in held(feishu)["task_list"]] == [("t-1", "APPROVED")]


def test_update_keeps_the_tasks_a_push_leaves_out_and_updates_the_rest(feishu, api, users) -> None:
    define(api)
    sync(api, instance(users[0], [task("t-1", users[1])]))

    answer = sync(
        api,
        {
            "approval_code": CODE,
            "instance_id": "req-1",
            "update_mode": "UPDATE",
            "update_time": "1700000001000",
            "task_list": [task("t-1", users[1], "APPROVED"), task("t-2", users[2])],
        },
    )

    assert answer["code"] == 0
    kept = held(feishu)
    assert [(t["task_id"], t["status"]) for t in kept["task_list"]] == [
        ("t-1", "APPROVED"),
        ("t-2", "PENDING"),
    ]
    assert kept["title"] == "Annual leave"
    assert kept["update_time"] == 1700000001000


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"status": "WAITING"}, "status"),
        ({"links": {}}, "links"),
        ({"open_id": "ou_nobody"}, "user"),
        ({"task_list": [{"task_id": "t-1", "status": "SLEEPING", "links": LINKS}]}, "status"),
        ({"task_list": [{"task_id": "req-1", "status": "PENDING", "links": LINKS}]}, "user_id"),
    ],
)
def test_a_bad_instance_is_a_param_error(api, users, change, problem) -> None:
    define(api)

    answer = sync(api, {**instance(users[0], [task("t-1", users[1])]), **change})

    assert answer["code"] == 1390001
    assert problem in answer["msg"]


def test_an_instance_whose_task_reuses_its_id_is_refused(api, users) -> None:
    define(api)

    answer = sync(api, instance(users[0], [task("req-1", users[1])]))

    assert answer["code"] == 1390001
    assert "unique" in answer["msg"]


def test_a_resync_within_the_configured_interval_is_answered_1390014(
    feishu, api, users, store
) -> None:
    define(api)
    store.set_setting("feishu", "external_sync_min_interval_ms", "60000")
    sync(api, instance(users[0], [task("t-1", users[1])]))

    answer = sync(api, instance(users[0], [task("t-1", users[1])]))

    assert answer["code"] == 1390014


def test_check_names_the_instances_unknown_or_out_of_date(api, users) -> None:
    define(api)
    sync(api, instance(users[0], [task("t-1", users[1])]))
    current = {
        "instance_id": "req-1",
        "update_time": "1700000000000",
        "tasks": [{"task_id": "t-1", "update_time": "1700000000000"}],
    }
    stale_task = {**current, "tasks": [{"task_id": "t-1", "update_time": "1700000009999"}]}
    unknown = {"instance_id": "req-2", "update_time": "1700000000000"}

    answer = api(
        "POST",
        "/approval/v4/external_instances/check",
        json={"instances": [current, stale_task, unknown]},
    ).json()

    assert answer["code"] == 0
    assert answer["data"]["diff_instances"] == [stale_task, unknown]


def test_sdk_lists_an_instances_tasks_by_status(api, sdk, users) -> None:
    define(api)
    sync(api, instance(users[0], [task("t-1", users[1], "APPROVED"), task("t-2", users[2])]))
    request = (
        ListExternalTaskRequest.builder()
        .page_size(50)
        .request_body(
            ListExternalTaskRequestBody.builder().instance_ids(["req-1"]).status("PENDING").build()
        )
        .build()
    )

    answer = sdk.approval.v4.external_task.list(request)

    assert answer.success(), answer.msg
    [listed] = answer.data.data
    assert listed.instance_id == "req-1"
    assert [(t.id, t.status) for t in listed.tasks] == [("t-2", "PENDING")]


def test_more_than_20_instance_ids_is_a_param_error(api) -> None:
    ids = [f"req-{n}" for n in range(21)]

    answer = api("GET", "/approval/v4/external_tasks", json={"instance_ids": ids})

    assert answer.json()["code"] == 1390001


# -- the quick-approval callback -------------------------------------------------------------
def test_a_quick_approval_posts_the_callback_encrypted_with_the_definitions_key(
    feishu, api, users, receiver
) -> None:
    define(api, receiver.url, key="cb-key")
    sync(api, instance(users[0], [task("t-1", users[1])]))

    result = feishu.press(
        {"kind": "quick_approval", "instance_id": "req-1", "action": "reject", "reason": "no"}
    )

    assert result["accepted"] is True
    [body] = receiver.bodies
    callback = json.loads(AESCipher("cb-key").decrypt_str(json.loads(body)["encrypt"]))
    assert callback == {
        "action_type": "REJECT",
        "action_context": json.dumps({"source_id": "1", "open_id": users[1]["open_id"]}),
        "user_id": users[1]["user_id"],
        "approval_code": CODE,
        "instance_id": "req-1",
        "task_id": "t-1",
        "reason": "no",
        "token": "cb-token",
    }


def test_a_quick_approval_without_a_key_is_sent_in_plain_json(feishu, api, users, receiver) -> None:
    define(api, receiver.url, key=None)
    sync(api, instance(users[0], [task("t-1", users[1])]))

    feishu.press({"kind": "quick_approval", "instance_id": "req-1", "action": "approve"})

    [body] = receiver.bodies
    assert json.loads(body)["action_type"] == "APPROVE"


def test_the_press_leaves_the_task_for_the_third_party_to_sync(
    feishu, api, users, receiver
) -> None:
    define(api, receiver.url)
    sync(api, instance(users[0], [task("t-1", users[1])]))

    feishu.press({"kind": "quick_approval", "instance_id": "req-1", "action": "approve"})

    assert held(feishu)["task_list"][0]["status"] == "PENDING"


def test_an_answer_other_than_code_0_is_not_accepted(feishu, api, users) -> None:
    server = CallbackReceiver({"code": 1, "msg": "refused"})
    try:
        define(api, server.url)
        sync(api, instance(users[0], [task("t-1", users[1])]))

        result = feishu.press(
            {"kind": "quick_approval", "instance_id": "req-1", "action": "approve"}
        )
    finally:
        server.server.shutdown()

    assert result["accepted"] is False


def test_only_the_tasks_approver_can_press(feishu, api, users, receiver) -> None:
    define(api, receiver.url)
    sync(api, instance(users[0], [task("t-1", users[1])]))

    with pytest.raises(PressError, match="approver"):
        feishu.press(
            {
                "kind": "quick_approval",
                "instance_id": "req-1",
                "action": "approve",
                "user": users[2]["open_id"],
            }
        )
    assert receiver.bodies == []


def test_a_task_without_quick_actions_cannot_be_pressed(feishu, api, users, receiver) -> None:
    define(api, receiver.url)
    sync(api, instance(users[0], [task("t-1", users[1], action_configs=[])]))

    with pytest.raises(PressError, match="no quick"):
        feishu.press({"kind": "quick_approval", "instance_id": "req-1", "action": "approve"})


def test_a_decided_task_cannot_be_pressed(feishu, api, users, receiver) -> None:
    define(api, receiver.url)
    sync(api, instance(users[0], [task("t-1", users[1], "APPROVED")], status="APPROVED"))

    with pytest.raises(PressError, match="no pending task"):
        feishu.press({"kind": "quick_approval", "instance_id": "req-1", "action": "approve"})
