"""Contract tests of the DingTalk emulator's third-party process centre: schemas, instances,
todo tasks and their states, with the official SDK (`alibabacloud-dingtalk` workflow_1_0)
making the calls it has a method for."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from alibabacloud_dingtalk.oauth2_1_0 import client as oauth2
from alibabacloud_dingtalk.oauth2_1_0 import models as oauth2_models
from alibabacloud_dingtalk.workflow_1_0 import client as workflow
from alibabacloud_dingtalk.workflow_1_0 import models as wf
from alibabacloud_tea_openapi import models as openapi
from alibabacloud_tea_util import models as util_models

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import DingTalkEmulator
from sync_pipeline.devtools.sandbox.world import World

CENTRE = "/v1.0/workflow/processCentres"
FORM = [{"componentType": "TextField", "props": {"componentId": "TextField_1", "label": "Days"}}]


@pytest.fixture
def ding(store: SandboxStore, serve) -> DingTalkEmulator:
    emulator = serve(DingTalkEmulator, store)
    assert isinstance(emulator, DingTalkEmulator)
    emulator.seed(World(7), 10, 0)
    return emulator


@pytest.fixture
def token(ding: DingTalkEmulator) -> str:
    creds = ding.credentials()
    answer = requests.post(
        f"{ding.base_url}/v1.0/oauth2/accessToken",
        json={"appKey": creds["appKey"], "appSecret": creds["appSecret"]},
        timeout=5,
    )
    return str(answer.json()["accessToken"])


@pytest.fixture
def users(ding: DingTalkEmulator) -> list[str]:
    return [u["userid"] for u in ding.store.list("dingtalk", "user", limit=3)]


def call(ding, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"x-acs-dingtalk-access-token": token}
    return requests.request(
        method, f"{ding.base_url}{CENTRE}{path}", headers=headers, timeout=5, **kwargs
    )


def schema(ding, token: str) -> str:
    answer = call(ding, token, "POST", "/schemas", json={"name": "OA", "formComponents": FORM})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"]["processCode"])


def instance(ding, token: str, originator: str) -> str:
    answer = call(
        ding,
        token,
        "POST",
        "/instances",
        json={
            "processCode": schema(ding, token),
            "originatorUserId": originator,
            "title": "Annual leave",
            "url": "https://oa.example/r/1",
            "formComponentValueList": [{"name": "Days", "value": "3"}],
        },
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"]["processInstanceId"])


def tasks(ding, token: str, instance_id: str, *users: str, activity: str = "n1") -> list[int]:
    answer = call(
        ding,
        token,
        "POST",
        "/tasks",
        json={
            "processInstanceId": instance_id,
            "activityId": activity,
            "tasks": [{"userId": u, "url": "https://oa.example/r/1"} for u in users],
        },
    )
    assert answer.status_code == 200, answer.text
    return [int(t["taskId"]) for t in answer.json()["result"]]


def todo(ding, token: str, user: str) -> list[dict[str, Any]]:
    answer = call(
        ding, token, "GET", "/todoTasks", params={"userId": user, "pageNumber": 1, "pageSize": 20}
    )
    listed: list[dict[str, Any]] = answer.json()["result"]["list"]
    return listed


@pytest.fixture
def sdk(ding: DingTalkEmulator) -> tuple[workflow.Client, str]:
    config = openapi.Config(protocol="http", region_id="central", endpoint=ding.base_url[7:])
    creds = ding.credentials()
    login = oauth2.Client(config).get_access_token(
        oauth2_models.GetAccessTokenRequest(app_key=creds["appKey"], app_secret=creds["appSecret"])
    )
    return workflow.Client(config), login.body.access_token


def test_sdk_saves_a_schema_creates_an_instance_and_a_task(ding, sdk, users) -> None:
    client, access = sdk
    runtime = util_models.RuntimeOptions()
    saved = client.save_process_with_options(
        wf.SaveProcessRequest(
            name="OA approvals",
            form_components=[
                wf.FormComponent(
                    component_type="TextField",
                    props=wf.FormComponentProps(component_id="TextField_1", label="Days"),
                )
            ],
        ),
        wf.SaveProcessHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )
    created = client.save_integrated_instance_with_options(
        wf.SaveIntegratedInstanceRequest(
            process_code=saved.body.result.process_code,
            originator_user_id=users[0],
            title="Annual leave",
            url="https://oa.example/r/1",
            form_component_value_list=[
                wf.SaveIntegratedInstanceRequestFormComponentValueList(name="Days", value="3")
            ],
        ),
        wf.SaveIntegratedInstanceHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )
    instance_id = created.body.result.process_instance_id
    task = client.create_integrated_task_with_options(
        wf.CreateIntegratedTaskRequest(
            process_instance_id=instance_id,
            activity_id="n1",
            tasks=[wf.CreateIntegratedTaskRequestTasks(user_id=users[1], url="https://x")],
        ),
        wf.CreateIntegratedTaskHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )
    todos = client.query_integrated_todo_task_with_options(
        wf.QueryIntegratedTodoTaskRequest(user_id=users[1], page_number=1, page_size=20),
        wf.QueryIntegratedTodoTaskHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )

    [made] = task.body.result
    assert made.user_id == users[1]
    [listed] = todos.body.result.list
    assert (listed.process_instance_id, listed.task_id) == (instance_id, made.task_id)


def test_sdk_finishes_a_task_and_the_instance(ding, sdk, users, token) -> None:
    client, access = sdk
    runtime = util_models.RuntimeOptions()
    instance_id = instance(ding, token, users[0])
    [task_id] = tasks(ding, token, instance_id, users[1])

    client.update_integrated_task_with_options(
        wf.UpdateIntegratedTaskRequest(
            process_instance_id=instance_id,
            tasks=[
                wf.UpdateIntegratedTaskRequestTasks(
                    task_id=task_id, status="COMPLETED", result="agree"
                )
            ],
        ),
        wf.UpdateIntegratedTaskHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )
    done = client.update_process_instance_with_options(
        wf.UpdateProcessInstanceRequest(
            process_instance_id=instance_id, status="COMPLETED", result="agree"
        ),
        wf.UpdateProcessInstanceHeaders(x_acs_dingtalk_access_token=access),
        runtime,
    )

    assert done.body.success is True
    assert todo(ding, token, users[1]) == []
    held = ding.store.get("dingtalk", "pc_instance", instance_id)
    assert held is not None
    assert (held["status"], held["result"]) == ("COMPLETED", "agree")


def test_sdk_finds_a_schema_by_name(ding, sdk, token) -> None:
    client, access = sdk
    code = schema(ding, token)

    found = client.get_process_code_by_name_with_options(
        wf.GetProcessCodeByNameRequest(name="OA"),
        wf.GetProcessCodeByNameHeaders(x_acs_dingtalk_access_token=access),
        util_models.RuntimeOptions(),
    )

    assert found.body.result.process_code == code


def test_every_create_is_a_new_instance_as_there_is_no_dedupe_handle(ding, token, users) -> None:
    first, second = instance(ding, token, users[0]), instance(ding, token, users[0])

    assert first != second
    assert len(ding.store.list("dingtalk", "pc_instance")) == 2


def test_an_instance_of_an_unknown_schema_is_refused(ding, token, users) -> None:
    answer = call(
        ding,
        token,
        "POST",
        "/instances",
        json={"processCode": "PROC-NOPE", "originatorUserId": users[0], "url": "https://x"},
    )

    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"


def test_a_missing_url_is_named(ding, token, users) -> None:
    answer = call(
        ding,
        token,
        "POST",
        "/instances",
        json={"processCode": schema(ding, token), "originatorUserId": users[0]},
    )

    assert answer.json()["code"] == "Missingurl"


def test_completed_needs_a_result(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])

    answer = call(
        ding,
        token,
        "PUT",
        "/instances",
        json={"processInstanceId": instance_id, "status": "COMPLETED"},
    )

    assert answer.status_code == 400
    assert "result" in answer.json()["message"]


def test_a_finished_instance_takes_the_same_state_again_but_no_other(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])
    agreed = {"processInstanceId": instance_id, "status": "COMPLETED", "result": "agree"}
    call(ding, token, "PUT", "/instances", json=agreed)

    again = call(ding, token, "PUT", "/instances", json=agreed)
    other = call(
        ding, token, "PUT", "/instances", json={**agreed, "status": "TERMINATED", "result": ""}
    )

    assert again.status_code == 200
    assert other.status_code == 400


def test_a_finished_instance_takes_no_new_task(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])
    call(
        ding,
        token,
        "PUT",
        "/instances",
        json={"processInstanceId": instance_id, "status": "TERMINATED"},
    )

    answer = call(
        ding,
        token,
        "POST",
        "/tasks",
        json={"processInstanceId": instance_id, "tasks": [{"userId": users[1]}]},
    )

    assert answer.status_code == 400


def test_a_task_for_an_unknown_user_is_refused(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])

    answer = call(
        ding,
        token,
        "POST",
        "/tasks",
        json={"processInstanceId": instance_id, "tasks": [{"userId": "nobody"}]},
    )

    assert answer.status_code == 400


def test_cancel_closes_the_running_tasks_of_an_activity_only(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])
    tasks(ding, token, instance_id, users[1], activity="n1")
    [later] = tasks(ding, token, instance_id, users[2], activity="n2")

    call(
        ding,
        token,
        "POST",
        "/tasks/cancel",
        json={"processInstanceId": instance_id, "activityId": "n1"},
    )

    assert todo(ding, token, users[1]) == []
    assert [t["taskId"] for t in todo(ding, token, users[2])] == [later]


def test_an_unknown_task_cannot_be_updated(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])

    answer = call(
        ding,
        token,
        "PUT",
        "/tasks",
        json={
            "processInstanceId": instance_id,
            "tasks": [{"taskId": 1, "status": "COMPLETED", "result": "agree"}],
        },
    )

    assert answer.status_code == 400


def test_every_write_is_in_the_ledger(ding, token, users) -> None:
    instance_id = instance(ding, token, users[0])
    [task_id] = tasks(ding, token, instance_id, users[1])
    update = {"taskId": task_id, "status": "CANCELED"}
    call(ding, token, "PUT", "/tasks", json={"processInstanceId": instance_id, "tasks": [update]})

    endpoints = [e.endpoint for e in ding.store.ledger("dingtalk")]

    assert endpoints == [
        "workflow/processCentres/schemas",
        "workflow/processCentres/instances",
        "workflow/processCentres/tasks",
        "workflow/processCentres/tasks PUT",
    ]
