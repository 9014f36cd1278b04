"""Contract tests of the DingTalk emulator: real HTTP, DingTalk's own paths, fields and codes.

Ground truth comes from the world the emulator was seeded from, never from the emulator itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import (
    PROCESS_CODES,
    WORLD_END_MS,
    DingTalkEmulator,
    conversation_id_for,
    instance_id_for,
    userid_for,
)
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, Approval, World
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt

SEED, APPROVALS, CHECKIN_DAYS = 7, 400, 14
MONTH_MS = 30 * DAY_MS


@pytest.fixture
def world() -> World:
    return World(SEED)


@pytest.fixture
def ding(store: SandboxStore, serve, world: World) -> DingTalkEmulator:
    emulator = serve(DingTalkEmulator, store)
    assert isinstance(emulator, DingTalkEmulator)
    emulator.seed(world, APPROVALS, CHECKIN_DAYS)
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


def new_api(
    ding: DingTalkEmulator, method: str, path: str, token: str, **kwargs: Any
) -> requests.Response:
    headers = {"x-acs-dingtalk-access-token": token}
    return requests.request(method, f"{ding.base_url}{path}", headers=headers, timeout=5, **kwargs)


def old_api(ding: DingTalkEmulator, path: str, token: str, body: dict[str, Any]) -> Any:
    answer = requests.post(
        f"{ding.base_url}{path}", params={"access_token": token}, json=body, timeout=5
    )
    assert answer.status_code == 200  # the old API answers HTTP 200 even for errors
    return answer.json()


def query_ids(ding: DingTalkEmulator, token: str, body: dict[str, Any]) -> requests.Response:
    return new_api(ding, "POST", "/v1.0/workflow/processes/instanceIds/query", token, json=body)


def created_between(world: World, template: str, start_ms: int, end_ms: int) -> list[Approval]:
    chosen = [
        a
        for a in world.approvals(APPROVALS)
        if a.template == template and start_ms <= a.created_ms <= end_ms
    ]
    return sorted(chosen, key=lambda a: (a.created_ms, instance_id_for(world, a)))


def all_ids(ding: DingTalkEmulator, token: str, body: dict[str, Any]) -> list[str]:
    ids, next_token = [], 0
    while True:
        answer = query_ids(ding, token, {**body, "nextToken": next_token}).json()
        assert answer["success"] is True, answer
        ids += answer["result"]["list"]
        if "nextToken" not in answer["result"]:
            return ids
        next_token = int(answer["result"]["nextToken"])


def leave_window(start_ms: int = EPOCH_MS, span_ms: int = MONTH_MS) -> dict[str, Any]:
    code = PROCESS_CODES["leave"]
    return {"processCode": code, "startTime": start_ms, "endTime": start_ms + span_ms}


def get_instance(ding: DingTalkEmulator, token: str, instance_id: str) -> dict[str, Any]:
    answer = new_api(
        ding,
        "GET",
        "/v1.0/workflow/processInstances",
        token,
        params={"processInstanceId": instance_id},
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["result"])


def pending_with_one_approver(world: World) -> Approval:
    return next(
        a for a in world.approvals(APPROVALS) if a.state == "pending" and len(a.approver_nos) == 1
    )


# -- a callback receiver as a customer runs it --------------------------------------------------
@dataclass
class Receiver:
    """Verifies and decrypts every event, then answers the encrypted "success" DingTalk wants."""

    crypto: WXBizMsgCrypt
    answer_plain: str = "success"
    events: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def receiver(ding: DingTalkEmulator) -> Iterator[Receiver]:
    creds = ding.credentials()
    state = Receiver(WXBizMsgCrypt(creds["token"], creds["aes_key"], creds["appKey"]))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            plain = state.crypto.verify(
                q["msg_signature"], q["timestamp"], q["nonce"], body["encrypt"]
            )
            state.queries.append(q)
            state.events.append(json.loads(plain))
            sealed = state.crypto.seal(state.answer_plain)
            reply = json.dumps(
                {
                    "msg_signature": sealed.msg_signature,
                    "timeStamp": sealed.timestamp,
                    "nonce": sealed.nonce,
                    "encrypt": sealed.encrypt,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ding.store.set_setting(
        "dingtalk", "callback_url", f"http://127.0.0.1:{server.server_address[1]}/ding"
    )
    yield state
    server.shutdown()


# -- access tokens ------------------------------------------------------------------------------
def test_access_token_answers_access_token_and_expire_in(ding):
    creds = ding.credentials()

    answer = requests.post(
        f"{ding.base_url}/v1.0/oauth2/accessToken",
        json={"appKey": creds["appKey"], "appSecret": creds["appSecret"]},
        timeout=5,
    )

    assert answer.status_code == 200
    assert set(answer.json()) == {"accessToken", "expireIn"}
    assert answer.json()["expireIn"] == 7200


def test_access_token_with_a_wrong_secret_is_an_http_400_with_code_and_requestid(ding):
    creds = ding.credentials()

    answer = requests.post(
        f"{ding.base_url}/v1.0/oauth2/accessToken",
        json={"appKey": creds["appKey"], "appSecret": "wrong"},
        timeout=5,
    )

    assert answer.status_code == 400
    assert set(answer.json()) == {"code", "requestid", "message"}


def test_old_gettoken_returns_the_same_token_within_its_lifetime(ding, token):
    creds = ding.credentials()

    answer = requests.get(
        f"{ding.base_url}/gettoken",
        params={"appkey": creds["appKey"], "appsecret": creds["appSecret"]},
        timeout=5,
    ).json()

    assert answer == {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}


def test_old_gettoken_with_a_wrong_secret_answers_40001(ding):
    creds = ding.credentials()

    answer = requests.get(
        f"{ding.base_url}/gettoken",
        params={"appkey": creds["appKey"], "appsecret": "wrong"},
        timeout=5,
    )

    assert answer.status_code == 200
    assert answer.json()["errcode"] == 40001


def test_new_api_with_an_unknown_token_is_http_400_invalid_authentication(ding):
    answer = query_ids(ding, "not-a-token", leave_window())

    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidAuthentication"


def test_new_api_with_an_expired_token_is_http_400_invalid_authentication(ding, token):
    ding.store.expire_tokens("dingtalk")

    answer = query_ids(ding, token, leave_window())

    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidAuthentication"


def test_old_api_with_an_unknown_token_answers_40014(ding):
    answer = old_api(ding, "/topapi/v2/department/listsub", "not-a-token", {"dept_id": 1})

    assert answer["errcode"] == 40014


def test_old_api_with_an_expired_token_answers_42001(ding, token):
    ding.store.expire_tokens("dingtalk")

    assert old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})["errcode"] == 42001


def test_given_a_one_second_ttl_the_token_expires_by_itself(ding, store):
    store.set_setting("dingtalk", "token_ttl_s", "1")
    creds = ding.credentials()
    short = requests.post(
        f"{ding.base_url}/v1.0/oauth2/accessToken",
        json={"appKey": creds["appKey"], "appSecret": creds["appSecret"]},
        timeout=5,
    ).json()
    time.sleep(1.2)

    assert query_ids(ding, short["accessToken"], leave_window()).status_code == 400


# -- workflow -----------------------------------------------------------------------------------
def test_instance_ids_cover_the_window_once_in_creation_order(ding, token, world):
    ids = all_ids(ding, token, {**leave_window(), "maxResults": 20})

    expected = created_between(world, "leave", EPOCH_MS, EPOCH_MS + MONTH_MS)
    assert ids == [instance_id_for(world, a) for a in expected]


def test_the_same_next_token_returns_the_same_page(ding, token):
    body = {**leave_window(), "maxResults": 5, "nextToken": 5}

    first, second = query_ids(ding, token, body).json(), query_ids(ding, token, body).json()

    assert first == second
    assert first["result"]["nextToken"] == "10"


def test_the_last_page_has_no_next_token(ding, token, world):
    expected = created_between(world, "leave", EPOCH_MS, EPOCH_MS + 21 * DAY_MS)
    body = {**leave_window(span_ms=21 * DAY_MS), "maxResults": 20, "nextToken": 0}

    answer = query_ids(ding, token, body).json()

    assert 0 < len(expected) < 20
    assert answer == {
        "result": {"list": [instance_id_for(world, a) for a in expected]},
        "success": True,
    }


def test_an_empty_window_gives_an_empty_list(ding, token):
    body = {**leave_window(EPOCH_MS - 20 * DAY_MS, 10 * DAY_MS), "maxResults": 20, "nextToken": 0}

    assert query_ids(ding, token, body).json() == {"result": {"list": []}, "success": True}


def test_a_missing_process_code_is_http_400_missing(ding, token):
    answer = query_ids(ding, token, {"startTime": EPOCH_MS, "maxResults": 20, "nextToken": 0})

    assert answer.status_code == 400
    assert answer.json()["code"] == "MissingprocessCode"


def test_a_window_over_120_days_is_refused(ding, token):
    answer = query_ids(ding, token, {**leave_window(span_ms=121 * DAY_MS), "maxResults": 20})

    assert answer.status_code == 400


def test_a_start_older_than_365_days_before_the_clock_is_refused(ding, token):
    start = WORLD_END_MS - 366 * DAY_MS

    answer = query_ids(ding, token, {**leave_window(start, 10 * DAY_MS), "maxResults": 20})

    assert answer.status_code == 400


def test_max_results_over_20_is_refused(ding, token):
    assert query_ids(ding, token, {**leave_window(), "maxResults": 21}).status_code == 400


def test_user_ids_filter_by_originator(ding, token, world):
    person = world.people[3]

    ids = all_ids(
        ding, token, {**leave_window(span_ms=120 * DAY_MS), "userIds": [userid_for(person)]}
    )

    expected = created_between(world, "leave", EPOCH_MS, EPOCH_MS + 120 * DAY_MS)
    assert ids == [
        instance_id_for(world, a) for a in expected if a.applicant_no == person.employee_no
    ]


def test_statuses_filter_by_dingtalk_status(ding, token, world):
    ids = all_ids(ding, token, {**leave_window(), "statuses": ["TERMINATED"]})

    expected = created_between(world, "leave", EPOCH_MS, EPOCH_MS + MONTH_MS)
    assert ids == [instance_id_for(world, a) for a in expected if a.state == "revoked"]


def test_an_instance_has_dingtalk_field_names_and_enums(ding, token, world):
    approval = next(a for a in world.approvals(APPROVALS) if a.state == "rejected")

    result = get_instance(ding, token, instance_id_for(world, approval))

    assert set(result) >= {
        "title",
        "createTime",
        "finishTime",
        "originatorUserId",
        "originatorDeptId",
        "status",
        "result",
        "approverUserIds",
        "ccUserIds",
        "businessId",
        "bizAction",
        "formComponentValues",
        "operationRecords",
        "tasks",
    }
    assert "processInstanceId" not in result  # DingTalk does not repeat the id in the body
    assert (result["status"], result["result"]) == ("COMPLETED", "refuse")
    assert result["originatorUserId"] == userid_for(world.person(approval.applicant_no))
    created = datetime.fromtimestamp(approval.created_ms / 1000, UTC)
    assert result["createTime"] == created.strftime("%Y-%m-%dT%H:%MZ")  # UTC, to the minute
    assert result["tasks"][-1]["result"] == "REFUSE"
    assert set(result["tasks"][0]) >= {"taskId", "userId", "status", "result", "activityId"}
    assert result["operationRecords"][0]["type"] == "START_PROCESS_INSTANCE"
    assert {v["componentType"] for v in result["formComponentValues"]} <= {
        "TextField",
        "TextareaField",
        "NumberField",
        "MoneyField",
        "DDSelectField",
        "DDDateRangeField",
    }


def test_an_unknown_instance_is_http_400(ding, token):
    answer = new_api(
        ding, "GET", "/v1.0/workflow/processInstances", token, params={"processInstanceId": "nope"}
    )

    assert answer.status_code == 400


def test_the_current_assignee_completes_a_task_and_it_is_recorded(ding, token, world):
    approval = pending_with_one_approver(world)
    instance_id = instance_id_for(world, approval)
    task = next(
        t for t in get_instance(ding, token, instance_id)["tasks"] if t["status"] == "RUNNING"
    )
    body = {
        "processInstanceId": instance_id,
        "taskId": task["taskId"],
        "actionerUserId": task["userId"],
        "result": "agree",
        "remark": "OK from OA",
    }

    answer = new_api(ding, "POST", "/v1.0/workflow/processInstances/execute", token, json=body)

    assert answer.json() == {"result": True, "success": True}
    after = get_instance(ding, token, instance_id)
    assert (after["status"], after["result"]) == ("COMPLETED", "agree")
    assert [e.endpoint for e in ding.store.ledger("dingtalk")] == [
        "workflow/processInstances/execute"
    ]


def test_someone_other_than_the_assignee_cannot_execute_the_task(ding, token, world):
    instance_id = instance_id_for(world, pending_with_one_approver(world))
    task = next(
        t for t in get_instance(ding, token, instance_id)["tasks"] if t["status"] == "RUNNING"
    )
    body = {
        "processInstanceId": instance_id,
        "taskId": task["taskId"],
        "actionerUserId": userid_for(world.person(pending_with_one_approver(world).applicant_no)),
        "result": "agree",
    }

    answer = new_api(ding, "POST", "/v1.0/workflow/processInstances/execute", token, json=body)

    assert answer.status_code == 403
    assert ding.store.ledger("dingtalk") == []


def test_a_task_cannot_be_executed_twice(ding, token, world):
    instance_id = instance_id_for(world, pending_with_one_approver(world))
    task = next(
        t for t in get_instance(ding, token, instance_id)["tasks"] if t["status"] == "RUNNING"
    )
    body = {
        "processInstanceId": instance_id,
        "taskId": task["taskId"],
        "actionerUserId": task["userId"],
        "result": "refuse",
    }
    path = "/v1.0/workflow/processInstances/execute"

    statuses = [new_api(ding, "POST", path, token, json=body).status_code for _ in range(2)]

    assert statuses == [200, 400]
    assert len(ding.store.ledger("dingtalk")) == 1


def test_new_api_over_the_scaled_20_qps_is_http_403_qps_limit(ding, token, store):
    store.set_setting("dingtalk", "rate_limit_scale", "0.1")  # 20/s -> 2/s
    body = {**leave_window(), "maxResults": 20}

    answers = [query_ids(ding, token, body) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 403]
    assert answers[2].json()["code"] == "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"


def test_old_api_over_the_scaled_20_qps_answers_90018(ding, token, store):
    store.set_setting("dingtalk", "rate_limit_scale", "0.1")

    codes = [
        old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})["errcode"]
        for _ in range(3)
    ]

    assert codes == [0, 0, 90018]


def test_the_qps_limit_is_per_api(ding, token, store):
    store.set_setting("dingtalk", "rate_limit_scale", "0.1")
    for _ in range(2):
        old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})

    assert old_api(ding, "/topapi/v2/user/get", token, {"userid": "x"})["errcode"] == 60121


def test_a_spent_monthly_quota_answers_90020(ding, token, store):
    store.set_setting("dingtalk", "monthly_quota", "2")

    codes = [
        old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})["errcode"]
        for _ in range(3)
    ]

    assert codes == [0, 0, 90020]


def test_a_spent_monthly_quota_is_http_403_on_the_new_api(ding, token, store):
    store.set_setting("dingtalk", "monthly_quota", "1")
    query_ids(ding, token, {**leave_window(), "maxResults": 20})

    answer = query_ids(ding, token, {**leave_window(), "maxResults": 20})

    assert answer.status_code == 403
    assert answer.json()["code"] == "Forbidden.AccessDenied.ApiCountLimitForOrg"


# -- attendance ---------------------------------------------------------------------------------
def attendance_body(world: World, users: int, **extra: Any) -> dict[str, Any]:
    return {
        "workDateFrom": "2026-01-05 00:00:00",
        "workDateTo": "2026-01-09 00:00:00",
        "userIdList": [userid_for(p) for p in world.people[:users]],
        "offset": 0,
        "limit": 50,
        **extra,
    }


def test_attendance_lists_the_punches_of_the_work_dates(ding, token, world):
    answer = old_api(ding, "/attendance/list", token, attendance_body(world, 2))

    assert answer["errcode"] == 0
    assert answer["hasMore"] is False
    records = answer["recordresult"]
    assert len(records) == 5 * 2 * 2  # Monday to Friday, two people, two punches a day
    assert set(records[0]) >= {
        "userId",
        "workDate",
        "checkType",
        "timeResult",
        "locationResult",
        "sourceType",
        "userCheckTime",
        "baseCheckTime",
        "groupId",
        "planId",
        "recordId",
    }
    assert {r["checkType"] for r in records} == {"OnDuty", "OffDuty"}


def test_attendance_pages_with_offset_and_has_more(ding, token, world):
    first = old_api(ding, "/attendance/list", token, attendance_body(world, 2, limit=15))
    rest = old_api(ding, "/attendance/list", token, attendance_body(world, 2, offset=15, limit=15))

    assert (first["hasMore"], rest["hasMore"]) == (True, False)
    assert len(first["recordresult"]) + len(rest["recordresult"]) == 20
    ids = [r["recordId"] for r in first["recordresult"] + rest["recordresult"]]
    assert len(set(ids)) == 20


def test_attendance_over_7_days_is_refused(ding, token, world):
    body = attendance_body(world, 1, workDateTo="2026-01-13 00:00:00")

    assert old_api(ding, "/attendance/list", token, body)["errcode"] != 0


def test_attendance_for_over_50_users_is_refused(ding, token, world):
    body = attendance_body(world, 1, userIdList=[f"u{i}" for i in range(51)])

    assert old_api(ding, "/attendance/list", token, body)["errcode"] != 0


# -- directory ----------------------------------------------------------------------------------
def test_department_listsub_lists_the_children_of_the_root(ding, token, world):
    answer = old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})

    names = [d["name"] for d in answer["result"]]
    assert names == [d.name for d in world.departments if d.parent_id == "d1"]
    assert set(answer["result"][0]) >= {"dept_id", "name", "parent_id"}


def test_user_list_shows_job_number_mobile_and_email(ding, token, world):
    child = old_api(ding, "/topapi/v2/department/listsub", token, {"dept_id": 1})["result"][0]

    answer = old_api(
        ding, "/topapi/v2/user/list", token, {"dept_id": child["dept_id"], "cursor": 0, "size": 100}
    )

    people = {p.employee_no: p for p in world.people}
    assert answer["result"]["has_more"] is False
    for user in answer["result"]["list"]:
        person = people[user["job_number"]]
        assert user["userid"] == userid_for(person)
        assert user["email"] == person.email
        assert user["mobile"] == person.mobile.replace("+86-", "")


def test_user_get_of_an_unknown_user_answers_60121(ding, token):
    assert old_api(ding, "/topapi/v2/user/get", token, {"userid": "ghost"})["errcode"] == 60121


# -- work notifications -------------------------------------------------------------------------
def notification(ding: DingTalkEmulator, world: World, text: str) -> dict[str, Any]:
    return {
        "agent_id": int(ding.credentials()["agentId"]),
        "userid_list": ",".join(userid_for(p) for p in world.people[:2]),
        "msg": {"msgtype": "text", "text": {"content": text}},
    }


def test_a_work_notification_answers_a_task_id_and_is_recorded(ding, token, world):
    path = "/topapi/message/corpconversation/asyncsend_v2"

    answer = old_api(ding, path, token, notification(ding, world, "Approved"))

    assert answer["errcode"] == 0
    assert isinstance(answer["task_id"], int)
    entry = ding.store.ledger("dingtalk")[0]
    assert entry.body["delivered_to"] == [userid_for(p) for p in world.people[:2]]


def test_the_same_content_reaches_a_user_once_a_day(ding, token, world):
    path = "/topapi/message/corpconversation/asyncsend_v2"
    old_api(ding, path, token, notification(ding, world, "Approved"))

    again = old_api(ding, path, token, notification(ding, world, "Approved"))

    assert again["errcode"] == 0  # asynchronous: the repeat "succeeds" and is dropped
    result = old_api(
        ding,
        "/topapi/message/corpconversation/getsendresult",
        token,
        {"agent_id": int(ding.credentials()["agentId"]), "task_id": again["task_id"]},
    )
    forbidden = result["send_result"]["forbidden_user_id_list"]
    assert forbidden == [userid_for(p) for p in world.people[:2]]
    assert ding.store.ledger("dingtalk")[-1].body["delivered_to"] == []


# -- interactive cards --------------------------------------------------------------------------
def card_body(ding: DingTalkEmulator, world: World, track: str, spaces: str) -> dict[str, Any]:
    robot = ding.credentials()["robotCode"]
    return {
        "cardTemplateId": "approval.card.v1",
        "outTrackId": track,
        "cardData": {"cardParamMap": {"title": "Leave request #1", "status": "pending"}},
        "callbackType": "HTTP",
        "openSpaceId": f"dtv1.card//{spaces}",
        "imGroupOpenDeliverModel": {"robotCode": robot},
        "imRobotOpenDeliverModel": {"spaceType": "IM_ROBOT", "robotCode": robot},
    }


def group_space(world: World) -> str:
    return f"IM_GROUP.{conversation_id_for(world.groups[0].id)}"


def deliver(ding, token, world, track: str, spaces: str) -> requests.Response:
    body = card_body(ding, world, track, spaces)
    return new_api(ding, "POST", "/v1.0/card/instances/createAndDeliver", token, json=body)


def test_a_card_is_delivered_to_a_group(ding, token, world):
    answer = deliver(ding, token, world, "approval-1-v1", group_space(world)).json()

    assert answer["success"] is True
    assert answer["result"]["outTrackId"] == "approval-1-v1"
    [result] = answer["result"]["deliverResults"]
    assert result["success"] is True
    assert result["spaceId"] == conversation_id_for(world.groups[0].id)
    assert [e.idem_key for e in ding.store.ledger("dingtalk")] == ["approval-1-v1"]


def test_a_repeated_out_track_id_is_not_delivered_twice(ding, token, world):
    first = deliver(ding, token, world, "approval-1-v1", group_space(world)).json()

    again = deliver(ding, token, world, "approval-1-v1", group_space(world)).json()

    assert again == first
    assert len(ding.store.ledger("dingtalk")) == 1


def test_an_existing_card_is_delivered_to_a_new_space_once(ding, token, world):
    deliver(ding, token, world, "approval-1-v1", group_space(world))
    robot_space = f"IM_ROBOT.{userid_for(world.people[0])}"

    answer = deliver(ding, token, world, "approval-1-v1", f"{group_space(world)};{robot_space}")

    assert [r["spaceType"] for r in answer.json()["result"]["deliverResults"]] == [
        "IM_GROUP",
        "IM_ROBOT",
    ]
    assert len(ding.store.ledger("dingtalk")) == 2


def test_a_card_is_updated_in_place_by_key(ding, token, world):
    deliver(ding, token, world, "approval-1-v1", group_space(world))
    body = {
        "outTrackId": "approval-1-v1",
        "cardData": {"cardParamMap": {"status": "approved"}},
        "cardUpdateOptions": {"updateCardDataByKey": True},
    }

    answer = new_api(ding, "PUT", "/v1.0/card/instances", token, json=body)

    assert answer.json() == {"success": True, "result": True}
    card = ding.store.get("dingtalk", "card", "approval-1-v1")
    assert card["cardData"]["cardParamMap"] == {"title": "Leave request #1", "status": "approved"}


def test_updating_an_unknown_card_is_refused(ding, token):
    body = {"outTrackId": "nope", "cardData": {"cardParamMap": {}}}

    assert new_api(ding, "PUT", "/v1.0/card/instances", token, json=body).status_code == 400


# -- robot messages -----------------------------------------------------------------------------
def test_a_group_message_is_recorded_with_its_members(ding, token, world):
    body = {
        "robotCode": ding.credentials()["robotCode"],
        "openConversationId": conversation_id_for(world.groups[0].id),
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "Milestone 3 done"}),
    }

    answer = new_api(ding, "POST", "/v1.0/robot/groupMessages/send", token, json=body)

    assert set(answer.json()) == {"processQueryKey"}
    entry = ding.store.ledger("dingtalk")[0]
    assert entry.endpoint == "robot/groupMessages/send"
    assert len(entry.body["delivered_to"]) == len(world.groups[0].member_nos)


def test_a_group_message_to_an_unknown_conversation_is_refused(ding, token):
    body = {
        "robotCode": ding.credentials()["robotCode"],
        "openConversationId": "cid-ghost",
        "msgKey": "sampleText",
        "msgParam": "{}",
    }

    answer = new_api(ding, "POST", "/v1.0/robot/groupMessages/send", token, json=body)

    assert answer.status_code == 400


def test_a_robot_batch_send_reports_unknown_staff(ding, token, world):
    body = {
        "robotCode": ding.credentials()["robotCode"],
        "userIds": [userid_for(world.people[0]), "ghost"],
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "hi"}),
    }

    answer = new_api(ding, "POST", "/v1.0/robot/oToMessages/batchSend", token, json=body).json()

    assert answer["invalidStaffIdList"] == ["ghost"]
    assert answer["flowControlledStaffIdList"] == []


# -- callbacks ----------------------------------------------------------------------------------
def test_check_url_is_acknowledged_by_a_correct_receiver(ding, receiver):
    result = ding.press({"kind": "check_url"})

    assert result["delivered"] == [200]
    assert result["acknowledged"] == [True]
    assert receiver.events == [{"EventType": "check_url"}]
    assert len(receiver.queries[0]["timestamp"]) == 13  # DingTalk signs with milliseconds


def test_an_answer_other_than_encrypted_success_is_not_acknowledged(ding, receiver):
    receiver.answer_plain = "ok"

    assert ding.press({"kind": "check_url"})["acknowledged"] == [False]


def test_an_agree_press_sends_task_and_instance_events(ding, token, world, receiver):
    approval = pending_with_one_approver(world)
    instance_id = instance_id_for(world, approval)

    ding.press(
        {"kind": "bpms_task_change", "process_instance_id": instance_id, "decision": "agree"}
    )

    task_event, instance_event = receiver.events
    assert task_event["EventType"] == "bpms_task_change"
    assert (task_event["type"], task_event["result"]) == ("finish", "agree")
    assert task_event["staffId"] == userid_for(world.person(approval.current_approver_nos[0]))
    assert instance_event["EventType"] == "bpms_instance_change"
    assert (instance_event["type"], instance_event["result"]) == ("finish", "agree")
    assert instance_event["processInstanceId"] == instance_id
    assert instance_event["corpId"] == ding.credentials()["corpId"]
    assert get_instance(ding, token, instance_id)["status"] == "COMPLETED"


def test_a_terminate_press_withdraws_the_instance(ding, token, world, receiver):
    instance_id = instance_id_for(world, pending_with_one_approver(world))

    ding.press(
        {"kind": "bpms_instance_change", "process_instance_id": instance_id, "type": "terminate"}
    )

    assert receiver.events[0]["type"] == "terminate"
    after = get_instance(ding, token, instance_id)
    assert after["status"] == "TERMINATED"
    assert after["tasks"][-1]["status"] == "CANCELED"


def test_a_card_button_press_delivers_the_action_callback(ding, token, world, receiver):
    deliver(ding, token, world, "approval-1-v1", group_space(world))
    user = userid_for(world.person(world.groups[0].member_nos[0]))

    ding.press(
        {
            "kind": "card_action",
            "out_track_id": "approval-1-v1",
            "user_id": user,
            "action_id": "approve",
            "params": {"decision": "agree"},
        }
    )

    event = receiver.events[0]
    assert (event["type"], event["outTrackId"], event["userId"]) == (
        "actionCallback",
        "approval-1-v1",
        user,
    )
    content = json.loads(event["content"])
    assert content == {
        "cardPrivateData": {"actionIds": ["approve"], "params": {"decision": "agree"}}
    }


def test_press_without_a_callback_url_raises_press_error(ding):
    with pytest.raises(PressError):
        ding.press({"kind": "check_url"})


# -- the official SDK, pointed at the emulator --------------------------------------------------
def test_the_official_sdk_logs_in_and_reads_instances(ding, world):
    openapi = pytest.importorskip("alibabacloud_tea_openapi.models")
    oauth2 = pytest.importorskip("alibabacloud_dingtalk.oauth2_1_0.client")
    oauth2_models = pytest.importorskip("alibabacloud_dingtalk.oauth2_1_0.models")
    workflow = pytest.importorskip("alibabacloud_dingtalk.workflow_1_0.client")
    workflow_models = pytest.importorskip("alibabacloud_dingtalk.workflow_1_0.models")
    util_models = pytest.importorskip("alibabacloud_tea_util.models")
    config = openapi.Config(protocol="http", region_id="central", endpoint=ding.base_url[7:])
    creds = ding.credentials()

    login = oauth2.Client(config).get_access_token(
        oauth2_models.GetAccessTokenRequest(app_key=creds["appKey"], app_secret=creds["appSecret"])
    )
    client = workflow.Client(config)
    listed = client.list_process_instance_ids_with_options(
        workflow_models.ListProcessInstanceIdsRequest(
            process_code=PROCESS_CODES["leave"],
            start_time=EPOCH_MS,
            end_time=EPOCH_MS + 21 * DAY_MS,
            next_token=0,
            max_results=20,
        ),
        workflow_models.ListProcessInstanceIdsHeaders(
            x_acs_dingtalk_access_token=login.body.access_token
        ),
        util_models.RuntimeOptions(),
    )

    expected = created_between(world, "leave", EPOCH_MS, EPOCH_MS + 21 * DAY_MS)
    assert expected
    assert listed.body.result.list == [instance_id_for(world, a) for a in expected]
    assert listed.body.result.next_token is None
