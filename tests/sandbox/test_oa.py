"""Contract tests of the Weaver e-cology 9 emulator, over real HTTP (platform-apis.md §7.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.devtools.sandbox.world import World

PA = "/api/workflow/paService"
SEED = 7
APPROVALS = 40
WORLD = World(SEED)
ALL = list(WORLD.approvals(APPROVALS))
CLIENT_PUBLIC_KEY = base64.b64encode(
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .public_key()
    .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


def encrypt(spk: str, text: str) -> str:
    public = serialization.load_der_public_key(base64.b64decode(spk))
    assert isinstance(public, rsa.RSAPublicKey)
    return base64.b64encode(public.encrypt(text.encode(), padding.PKCS1v15())).decode()


class E9:
    """A minimal E9 client written from the contract: regist, applytoken, then calls."""

    def __init__(self, base_url: str, appid: str) -> None:
        self.base_url, self.appid = base_url, appid
        self.secret = self.spk = self.token = ""

    def regist(self) -> dict[str, Any]:
        answer = requests.post(
            f"{self.base_url}/api/ec/dev/auth/regist",
            headers={"appid": self.appid, "cpk": CLIENT_PUBLIC_KEY},
            timeout=10,
        ).json()
        self.secret = answer.get("secret") or answer.get("secrit") or ""
        self.spk = answer.get("spk", "")
        return dict(answer)

    def applytoken(self, secret: str | None = None, ttl_s: int = 3600) -> dict[str, Any]:
        headers = {
            "appid": self.appid,
            "secret": encrypt(self.spk, secret or self.secret),
            "time": str(ttl_s),
        }
        answer = requests.post(
            f"{self.base_url}/api/ec/dev/auth/applytoken", headers=headers, timeout=10
        ).json()
        self.token = answer.get("token", "")
        return dict(answer)

    def headers(self, user: str) -> dict[str, str]:
        return {"appid": self.appid, "token": self.token, "userid": encrypt(self.spk, user)}

    def post(self, path: str, user: str = "1", **form: Any) -> Any:
        answer = requests.post(
            self.base_url + path, headers=self.headers(user), data=form, timeout=10
        )
        return answer.json()

    def get(self, path: str, user: str = "1", **params: Any) -> Any:
        answer = requests.get(
            self.base_url + path, headers=self.headers(user), params=params, timeout=10
        )
        return answer.json()

    def page(self, name: str, user: str = "1", **conditions: Any) -> Any:
        form: dict[str, Any] = {"conditions": json.dumps(conditions)}
        form.update({k: conditions.pop(k) for k in ("pageNo", "pageSize") if k in conditions})
        form["conditions"] = json.dumps(conditions)
        return self.post(f"{PA}/get{name}WorkflowRequestList", user, **form)


@pytest.fixture
def oa(store: SandboxStore, serve) -> OAEmulator:
    store.set_setting("oa", "progress_per_project", "3")
    emulator: OAEmulator = serve(OAEmulator, store)
    emulator.seed(WORLD, APPROVALS, 0)
    return emulator


@pytest.fixture
def e9(oa: OAEmulator) -> E9:
    client = E9(oa.base_url, oa.credentials()["appid"])
    client.regist()
    client.applytoken()
    return client


def uid(employee_no: str) -> str:
    return oa_user_id(employee_no)


def first(state: str) -> Any:
    return next(a for a in ALL if a.state == state)


def by_time() -> list[Any]:
    return sorted(ALL, key=lambda a: (a.updated_ms // 1000, a.request_id))


# -- auth -------------------------------------------------------------------------------------
def test_regist_hands_out_secret_and_server_public_key(oa: OAEmulator) -> None:
    answer = E9(oa.base_url, oa.credentials()["appid"]).regist()

    assert answer["status"] is True
    assert answer["code"] == 0
    assert answer["secret"] == oa.credentials()["secret"]
    assert answer["spk"] == oa.credentials()["spk"]


def test_given_secrit_spelling_regist_answers_secrit(oa: OAEmulator, store: SandboxStore) -> None:
    store.set_setting("oa", "regist_secret_key", "secrit")

    answer = E9(oa.base_url, oa.credentials()["appid"]).regist()

    assert answer["secrit"] == oa.credentials()["secret"]
    assert "secret" not in answer


def test_regist_with_unknown_appid_answers_status_false(oa: OAEmulator) -> None:
    answer = E9(oa.base_url, "NOT-AN-APP").regist()

    assert answer["status"] is False
    assert answer["code"] == -1


def test_applytoken_with_encrypted_secret_hands_out_a_token(oa: OAEmulator) -> None:
    client = E9(oa.base_url, oa.credentials()["appid"])
    client.regist()

    answer = client.applytoken()

    assert answer["status"] is True
    assert answer["msg"] == "获取成功!"
    assert len(answer["token"]) == 36


def test_applytoken_with_wrong_secret_answers_auth_error(oa: OAEmulator) -> None:
    client = E9(oa.base_url, oa.credentials()["appid"])
    client.regist()

    answer = client.applytoken(secret="wrong")

    assert answer == {"msg": "认证信息错误！", "code": -1, "msgShowType": "none", "status": False}


def test_applytoken_with_undecryptable_secret_answers_decrypt_error(oa: OAEmulator) -> None:
    headers = {"appid": oa.credentials()["appid"], "secret": "bm90IFJTQQ=="}

    answer = requests.post(
        f"{oa.base_url}/api/ec/dev/auth/applytoken", headers=headers, timeout=10
    ).json()

    assert answer["status"] is False
    assert answer["msg"] == "secret解密失败,请检查加密内容."


def test_given_no_token_business_call_answers_token_missing(e9: E9) -> None:
    e9.token = ""

    answer = e9.page("All")

    assert answer["status"] is False
    assert answer["code"] == -1
    assert answer["msg"].startswith("token不存在或者超时")


def test_given_expired_token_business_call_answers_status_false_until_reapplied(
    e9: E9, store: SandboxStore
) -> None:
    store.expire_tokens("oa")

    stale = e9.page("All")
    e9.applytoken()

    assert stale["status"] is False
    assert stale["msg"] == f"token不存在或者超时：{stale['msg'].split('：')[1]}"
    assert isinstance(e9.page("All"), list)


def test_given_token_ttl_setting_token_expires_after_it(e9: E9, store: SandboxStore) -> None:
    store.set_setting("oa", "token_ttl_s", "1")
    e9.applytoken(ttl_s=3600)

    time.sleep(1.1)

    assert e9.page("All")["status"] is False


def test_undecryptable_userid_is_refused(e9: E9) -> None:
    headers = {**e9.headers("1"), "userid": "garbage"}

    answer = requests.post(
        f"{e9.base_url}{PA}/getAllWorkflowRequestList", headers=headers, timeout=10
    ).json()

    assert answer["status"] is False


def test_unknown_user_answers_user_exception(e9: E9) -> None:
    assert e9.page("All", user="99999")["code"] == "USER_EXCEPTION"


def test_given_rate_limit_scale_calls_past_the_scaled_limit_get_429(
    e9: E9, store: SandboxStore
) -> None:
    store.set_setting("oa", "rate_limit_scale", "0.05")  # 100/s * 0.05 = 5 calls a second
    time.sleep(1.0)  # the window forgets the log-in calls
    url = f"{e9.base_url}{PA}/getAllWorkflowRequestCount"
    headers = e9.headers("1")

    answers = [requests.post(url, headers=headers, timeout=10) for _ in range(6)]

    assert [a.status_code for a in answers[:5]] == [200] * 5
    assert answers[5].status_code == 429
    assert answers[5].headers["Retry-After"] == "1"
    assert answers[5].json()["code"] == "REQUEST_FREQUENCY_LIMIT"


# -- lists ------------------------------------------------------------------------------------
def test_all_list_for_the_admin_is_a_bare_array_ordered_by_last_operate_time(e9: E9) -> None:
    items = e9.page("All", pageSize=APPROVALS)

    assert [i["requestId"] for i in items] == [a.request_id for a in by_time()]


def test_list_items_carry_e9_fields(e9: E9) -> None:
    approval = by_time()[0]

    item = e9.page("All", pageSize=1)[0]

    assert item["requestName"] == approval.title
    assert item["creatorId"] == uid(approval.applicant_no)
    assert item["creatorName"] == WORLD.person(approval.applicant_no).name
    assert item["workflowBaseInfo"]["workflowId"] in ("1001", "1002", "1003")
    assert set(item) >= {"createTime", "currentNodeId", "currentNodeName", "lastOperateTime"}


def test_given_a_name_holding_a_lone_surrogate_the_list_shows_it_escaped_as_json_does(
    e9: E9, store: SandboxStore
) -> None:
    approval = by_time()[0]
    applicant = uid(approval.applicant_no)
    user = store.get("oa", "user", applicant)
    assert user is not None
    store.put("oa", "user", applicant, {**user, "lastname": "Li \ud800"})

    item = e9.page("All", pageSize=1)[0]

    assert item["creatorName"] == "Li \ud800"


def test_count_twin_answers_a_bare_integer(e9: E9) -> None:
    assert e9.post(f"{PA}/getAllWorkflowRequestCount") == APPROVALS


def test_pages_cover_every_request_once(e9: E9) -> None:
    ids = []
    for page in range(1, 6):
        ids += [i["requestId"] for i in e9.page("All", pageNo=page, pageSize=9)]

    assert ids == [a.request_id for a in by_time()]


def test_the_same_page_number_asked_again_returns_the_same_page(e9: E9) -> None:
    first = e9.page("All", pageNo=2, pageSize=9)

    again = e9.page("All", pageNo=2, pageSize=9)

    assert again == first


def test_last_page_is_short(e9: E9) -> None:
    assert len(e9.page("All", pageNo=5, pageSize=9)) == APPROVALS - 4 * 9


def test_page_past_the_end_is_an_empty_array(e9: E9) -> None:
    assert e9.page("All", pageNo=6, pageSize=9) == []


def test_page_size_below_one_means_the_default_ten(e9: E9) -> None:
    assert len(e9.page("All", pageSize=0)) == 10


def test_page_no_below_one_means_the_first_page(e9: E9) -> None:
    assert e9.page("All", pageNo=0, pageSize=3) == e9.page("All", pageNo=1, pageSize=3)


def test_page_size_above_a_thousand_is_capped(store: SandboxStore, serve) -> None:
    oa: OAEmulator = serve(OAEmulator, store)
    oa.seed(World(1), 1005, 0)
    client = E9(oa.base_url, oa.credentials()["appid"])
    client.regist()
    client.applytoken()

    assert len(client.page("All", pageSize=5000)) == 1000


def test_non_integer_page_no_answers_param_error(e9: E9) -> None:
    assert e9.page("All", pageNo="two")["code"] == "PARAM_ERROR"


def test_conditions_that_are_not_json_answer_param_error(e9: E9) -> None:
    answer = e9.post(f"{PA}/getAllWorkflowRequestList", conditions="{oops")

    assert answer["code"] == "PARAM_ERROR"


def test_modified_since_window_selects_from_inclusive_to_exclusive(e9: E9) -> None:
    ordered = by_time()
    start, end = ordered[10], ordered[20]
    window = {
        "lastOperateTimeFrom": time_text(start.updated_ms),
        "lastOperateTimeTo": time_text(end.updated_ms),
    }

    items = e9.page("All", pageSize=100, **window)

    expected = [a for a in ordered if start.updated_ms // 1000 <= a.updated_ms // 1000]
    expected = [a for a in expected if a.updated_ms // 1000 < end.updated_ms // 1000]
    assert [i["requestId"] for i in items] == [a.request_id for a in expected]
    assert items[0]["requestId"] == start.request_id


def test_modified_since_count_matches_the_list(e9: E9) -> None:
    window = json.dumps({"lastOperateTimeFrom": time_text(by_time()[30].updated_ms)})

    count = e9.post(f"{PA}/getAllWorkflowRequestCount", conditions=window)

    assert count == len(e9.post(f"{PA}/getAllWorkflowRequestList", conditions=window))


def test_todo_list_holds_what_waits_for_the_user(e9: E9) -> None:
    pending = first("pending")
    user = uid(pending.current_approver_nos[0])

    items = e9.page("ToDo", user=user, pageSize=100)

    expected = [
        a.request_id for a in by_time() if a.current_approver_nos == (pending.current_approver_nos)
    ]
    assert [i["requestId"] for i in items] == expected
    assert {i["isremark"] for i in items} == {"0"}


def test_my_list_holds_what_the_user_filed(e9: E9) -> None:
    applicant = ALL[0].applicant_no

    items = e9.page("My", user=uid(applicant), pageSize=100)

    expected = [a.request_id for a in by_time() if a.applicant_no == applicant]
    assert [i["requestId"] for i in items] == expected


def test_handled_list_holds_what_the_user_acted_on(e9: E9) -> None:
    approved = first("approved")
    approver = approved.approver_nos[0]

    ids = {i["requestId"] for i in e9.page("Handled", user=uid(approver), pageSize=100)}

    assert approved.request_id in ids


def test_workflow_ids_condition_filters_by_workflow(e9: E9) -> None:
    items = e9.page("All", pageSize=100, workflowIds="1001")

    assert {i["workflowBaseInfo"]["workflowId"] for i in items} == {"1001"}
    assert len(items) == sum(1 for a in ALL if a.template == "leave")


# -- one request ------------------------------------------------------------------------------
def test_detail_carries_main_table_current_node_and_logs(e9: E9) -> None:
    pending = next(a for a in ALL if a.state == "pending" and a.template == "expense")

    answer = e9.get(f"{PA}/getWorkflowRequest", requestId=pending.request_id)

    data = answer["data"]
    assert answer["code"] == "SUCCESS"
    fields = data["workflowMainTableInfo"]["requestRecords"][0]["workflowRequestTableFields"]
    values = {f["fieldName"]: f["fieldValue"] for f in fields}
    assert values["amount"] == str(pending.form["amount"])
    assert data["currentNodeName"] == f"审批{len(pending.history)}"
    logs = data["workflowRequestLogs"]
    assert [x["operator"] for x in logs] == [uid(s.approver_no) for s in reversed(pending.history)]
    assert logs[0]["receivedPersonids"] == uid(pending.current_approver_nos[0])


def test_detail_for_an_unrelated_user_answers_no_permission(e9: E9) -> None:
    pending = first("pending")
    involved = {pending.applicant_no, *pending.approver_nos}
    outsider = next(p.employee_no for p in WORLD.people if p.employee_no not in involved)

    answer = e9.get(f"{PA}/getWorkflowRequest", user=uid(outsider), requestId=pending.request_id)

    assert answer["code"] == "NO_PERMISSION"


def test_detail_of_a_missing_request_answers_no_permission(e9: E9) -> None:
    assert e9.get(f"{PA}/getWorkflowRequest", requestId="R999999")["code"] == "NO_PERMISSION"


def test_request_status_names_node_and_type(e9: E9) -> None:
    approved = first("approved")

    data = e9.get(f"{PA}/getRequestStatus", requestId=approved.request_id)["data"]

    assert (data["status"], data["currentNodeType"]) == ("归档", "3")


def test_operator_info_lists_who_held_the_request(e9: E9) -> None:
    approved = next(a for a in ALL if a.state == "approved" and len(a.approver_nos) > 1)

    data = e9.get(f"{PA}/getRequestOperatorInfo", requestId=approved.request_id)["data"]

    assert [(x["userid"], x["isremark"]) for x in data] == [
        (uid(n), "2") for n in approved.approver_nos
    ]


def test_request_log_pages_newest_first(e9: E9) -> None:
    approved = next(a for a in ALL if a.state == "approved" and len(a.approver_nos) > 1)
    paging = json.dumps({"pageSize": 1, "pageNumber": 1})

    logs = e9.get(f"{PA}/getRequestLog", requestId=approved.request_id, otherParams=paging)["data"]

    assert [(x["operator"], x["logtype"]) for x in logs] == [(uid(approved.approver_nos[-1]), "0")]


# -- actions ----------------------------------------------------------------------------------
def test_current_approver_approves_and_the_request_moves_on(e9: E9, store: SandboxStore) -> None:
    pending = first("pending")
    approver = uid(pending.current_approver_nos[0])

    answer = e9.post(
        f"{PA}/submitRequest", user=approver, requestId=pending.request_id, remark="ok"
    )

    assert answer["code"] == "SUCCESS"
    data = e9.get(f"{PA}/getWorkflowRequest", requestId=pending.request_id)["data"]
    assert data["lastOperatorId"] == approver
    assert data["lastOperateTime"] > time_text(pending.updated_ms)
    assert data["workflowRequestLogs"][0]["remark"] == "ok"


def test_approving_the_last_step_archives_the_request(e9: E9) -> None:
    pending = next(a for a in ALL if a.state == "pending" and len(a.history) == len(a.approver_nos))

    e9.post(
        f"{PA}/submitRequest",
        user=uid(pending.current_approver_nos[0]),
        requestId=pending.request_id,
    )

    status = e9.get(f"{PA}/getRequestStatus", requestId=pending.request_id)["data"]
    assert (status["status"], status["currentNodeType"]) == ("归档", "3")


def test_someone_else_cannot_approve(e9: E9) -> None:
    pending = first("pending")

    answer = e9.post(
        f"{PA}/submitRequest", user=uid(pending.applicant_no), requestId=pending.request_id
    )

    assert answer["code"] == "NO_PERMISSION"
    assert answer["reqFailMsg"]["msgType"] == "NO_REQUEST_SUBMIT_PERMISSION"


def test_a_decided_request_refuses_a_second_approval(e9: E9, store: SandboxStore) -> None:
    pending = next(a for a in ALL if a.state == "pending" and len(a.history) == len(a.approver_nos))
    approver = uid(pending.current_approver_nos[0])
    e9.post(f"{PA}/submitRequest", user=approver, requestId=pending.request_id)

    again = e9.post(f"{PA}/submitRequest", user=approver, requestId=pending.request_id)

    assert again["code"] == "NO_PERMISSION"
    assert len(store.ledger("oa")) == 1


def test_reject_sends_the_request_back_to_creation(e9: E9) -> None:
    pending = first("pending")

    answer = e9.post(
        f"{PA}/rejectRequest",
        user=uid(pending.current_approver_nos[0]),
        requestId=pending.request_id,
        remark="no",
    )

    assert answer["code"] == "SUCCESS"
    status = e9.get(f"{PA}/getRequestStatus", requestId=pending.request_id)["data"]
    assert (status["status"], status["currentNodeType"]) == ("退回", "0")


def test_save_request_log_adds_a_comment_without_moving(e9: E9) -> None:
    pending = first("pending")
    before = e9.get(f"{PA}/getRequestStatus", requestId=pending.request_id)["data"]

    answer = e9.post(
        f"{PA}/saveRequestLog",
        user=uid(pending.applicant_no),
        requestId=pending.request_id,
        remark="any news?",
    )

    after = e9.get(f"{PA}/getWorkflowRequest", requestId=pending.request_id)["data"]
    assert answer["code"] == "SUCCESS"
    assert after["currentNodeId"] == before["currentNodeId"]
    assert (
        after["workflowRequestLogs"][0]["logtype"],
        after["workflowRequestLogs"][0]["remark"],
    ) == (
        "9",
        "any news?",
    )


def test_withdraw_by_the_creator_revokes(e9: E9) -> None:
    pending = first("pending")

    e9.post(f"{PA}/withdrawRequest", user=uid(pending.applicant_no), requestId=pending.request_id)

    assert (
        e9.get(f"{PA}/getRequestStatus", requestId=pending.request_id)["data"]["status"] == "撤回"
    )


def test_do_create_request_files_a_pending_request_and_records_it(
    e9: E9, store: SandboxStore
) -> None:
    creator = uid("E00009")
    main = json.dumps([{"fieldName": "subject", "fieldValue": "New laptop"}])

    answer = e9.post(
        f"{PA}/doCreateRequest",
        user=creator,
        workflowId="1003",
        requestName="Laptop",
        mainData=main,
    )

    request_id = answer["data"]["requestid"]
    assert answer["code"] == "SUCCESS"
    assert request_id == f"R{APPROVALS + 1:06d}"
    assert e9.page("My", user=creator, pageSize=100)[-1]["requestId"] == request_id
    [entry] = store.ledger("oa")
    assert (entry.endpoint, entry.caller, entry.body["requestName"]) == (
        f"{PA}/doCreateRequest",
        creator,
        "Laptop",
    )


def test_do_create_request_with_an_unknown_workflow_answers_param_error(e9: E9) -> None:
    answer = e9.post(f"{PA}/doCreateRequest", workflowId="0", mainData="[]")

    assert answer["code"] == "PARAM_ERROR"


# -- webhook ----------------------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP endpoint that keeps what it receives."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oa-hook", received
    server.shutdown()


def wait_for(received: list[Any], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_webhook_on_approval_is_signed_with_the_webhook_secret(
    e9: E9, oa: OAEmulator, store: SandboxStore, receiver
) -> None:
    url, received = receiver
    store.set_setting("oa", "webhook_url", url)
    pending = first("pending")

    e9.post(
        f"{PA}/submitRequest",
        user=uid(pending.current_approver_nos[0]),
        requestId=pending.request_id,
    )

    wait_for(received, 1)
    headers, body = received[0]
    signed = headers["X-OA-Timestamp"].encode() + b"." + body
    secret = oa.credentials()["webhook_secret"].encode()
    assert headers["X-OA-Signature"] == hmac.new(secret, signed, hashlib.sha256).hexdigest()
    event = json.loads(body)
    assert (event["event"], event["requestId"]) == ("request.approved", pending.request_id)


def test_press_transition_fires_the_webhook_with_the_new_status(
    oa: OAEmulator, store: SandboxStore, receiver
) -> None:
    url, received = receiver
    store.set_setting("oa", "webhook_url", url)
    pending = first("pending")

    oa.press(
        {"action": "reject", "requestId": pending.request_id, "by": pending.current_approver_nos[0]}
    )

    wait_for(received, 1)
    event = json.loads(received[0][1])
    assert (event["event"], event["status"]) == ("request.rejected", "rejected")


# -- unified todo -----------------------------------------------------------------------------
def todo(**fields: Any) -> dict[str, Any]:
    base = {
        "syscode": "SYNC",
        "flowid": "wecom-approval-1",
        "requestname": "Leave request",
        "workflowname": "Leave",
        "nodename": "Approve",
        "pcurl": "https://im.example.com/approval/1",
        "appurl": "https://im.example.com/m/approval/1",
        "isremark": "0",
        "viewtype": "0",
        "creator": "E00002",
        "createdatetime": "2026-03-01 09:00:00",
        "receiver": "E00003",
        "receivedatetime": "2026-03-01 09:00:00",
        "receivets": "1772326800000",
    }
    return {**base, **fields}


def ofs(oa: OAEmulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(requests.post(f"{oa.base_url}/rest/ofs/{path}", json=body, timeout=10).json())


def test_todo_create_update_complete_are_each_in_the_ledger(
    oa: OAEmulator, store: SandboxStore
) -> None:
    created = ofs(oa, "ReceiveRequestInfoByJson", todo())
    updated = ofs(oa, "ReceiveRequestInfoByJson", todo(viewtype="1", receivets="1772326800001"))
    completed = ofs(oa, "ReceiveRequestInfoByJson", todo(isremark="2", receivets="1772326800002"))

    assert [a["operResult"] for a in (created, updated, completed)] == ["1", "1", "1"]
    entries = store.ledger("oa")
    assert [e.body["isremark"] for e in entries] == ["0", "0", "2"]
    assert {e.endpoint for e in entries} == {"/rest/ofs/ReceiveRequestInfoByJson"}
    stored = store.get("oa", "todo", f"SYNC|wecom-approval-1|{uid('E00003')}")
    assert stored is not None
    assert stored["state"] == "handled"


def test_todo_update_older_than_the_stored_one_is_ignored(
    oa: OAEmulator, store: SandboxStore
) -> None:
    ofs(oa, "ReceiveRequestInfoByJson", todo(isremark="2", receivets="1772326800005"))

    ofs(oa, "ReceiveRequestInfoByJson", todo(isremark="0", receivets="1772326800001"))

    stored = store.get("oa", "todo", f"SYNC|wecom-approval-1|{uid('E00003')}")
    assert stored is not None
    assert stored["isremark"] == "2"


def test_todo_from_an_unregistered_system_is_refused(oa: OAEmulator, store: SandboxStore) -> None:
    answer = ofs(oa, "ReceiveRequestInfoByJson", todo(syscode="OTHER"))

    assert answer["operResult"] == "0"
    assert store.ledger("oa") == []


def test_todo_without_a_receiver_is_refused(oa: OAEmulator) -> None:
    assert ofs(oa, "ReceiveRequestInfoByJson", todo(receiver=""))["operResult"] == "0"


def test_todo_delete_for_one_user_marks_it_deleted(oa: OAEmulator, store: SandboxStore) -> None:
    ofs(oa, "ReceiveRequestInfoByJson", todo())

    answer = ofs(
        oa,
        "deleteUserRequestInfoByJson",
        {"syscode": "SYNC", "flowid": "wecom-approval-1", "userid": "E00003"},
    )

    assert answer["operResult"] == "1"
    stored = store.get("oa", "todo", f"SYNC|wecom-approval-1|{uid('E00003')}")
    assert stored is not None
    assert stored["deleted"] is True


# -- HRM --------------------------------------------------------------------------------------
def test_hrm_users_page_with_workcode_email_and_mobile(e9: E9) -> None:
    params = json.dumps({"curpage": 2, "pagesize": 10})

    answer = e9.post("/api/hrm/resful/getHrmUserInfoWithPage", params=params)

    assert answer["code"] == "1"
    assert answer["data"]["totalSize"] == len(WORLD.people)
    person = WORLD.people[10]
    user = answer["data"]["dataList"][0]
    assert (user["id"], user["workcode"], user["email"], user["mobile"]) == (
        uid(person.employee_no),
        person.employee_no,
        person.email,
        person.mobile,
    )


def test_hrm_user_by_workcode(e9: E9) -> None:
    params = json.dumps({"workcode": "E00042"})

    users = e9.post("/api/hrm/resful/getHrmUserInfoWithPage", params=params)["data"]["dataList"]

    assert [u["lastname"] for u in users] == [WORLD.person("E00042").name]


def test_hrm_departments_list_the_tree(e9: E9) -> None:
    params = json.dumps({"pagesize": 100})

    departments = e9.post("/api/hrm/resful/getHrmdepartmentWithPage", params=params)["data"][
        "dataList"
    ]

    assert [d["departmentname"] for d in departments] == [d.name for d in WORLD.departments]


# -- project progress -------------------------------------------------------------------------
def test_progress_lists_by_project(e9: E9) -> None:
    data = e9.post("/api/proj/progress/list", projectId="P002", pageSize=100)["data"]

    assert data["total"] == 3
    assert [r["recordId"] for r in data["list"]] == ["P002-0001", "P002-0002", "P002-0003"]


def test_progress_lists_modified_since(e9: E9) -> None:
    data = e9.post("/api/proj/progress/list", modifiedFrom="2026-01-03 08:00:00", pageSize=100)[
        "data"
    ]

    assert {r["recordId"][-4:] for r in data["list"]} == {"0002", "0003"}


def test_progress_save_then_comment_are_recorded(e9: E9, store: SandboxStore) -> None:
    author = uid("E00005")

    saved = e9.post(
        "/api/proj/progress/save", user=author, projectId="P001", percent=40, content="Half"
    )
    record_id = saved["data"]["recordId"]
    commented = e9.post("/api/proj/progress/comment", recordId=record_id, content="Nice")

    assert commented["code"] == "SUCCESS"
    [record] = [
        r
        for r in e9.post("/api/proj/progress/list", projectId="P001", pageSize=100)["data"]["list"]
        if r["recordId"] == record_id
    ]
    assert (record["authorId"], record["percent"], record["comments"][0]["content"]) == (
        author,
        40,
        "Nice",
    )
    assert [e.endpoint for e in store.ledger("oa")] == [
        "/api/proj/progress/save",
        "/api/proj/progress/comment",
    ]


def test_progress_save_with_a_bad_percent_answers_param_error(e9: E9) -> None:
    answer = e9.post("/api/proj/progress/save", projectId="P001", percent=140)

    assert answer["code"] == "PARAM_ERROR"


# -- monthly attendance -----------------------------------------------------------------------
def report(**fields: Any) -> dict[str, Any]:
    return {
        "workcode": "E00004",
        "kqMonth": "2026-02",
        "workDays": 20,
        "attendDays": 19,
        "lateTimes": 1,
        **fields,
    }


def test_month_report_save_then_read(e9: E9, store: SandboxStore) -> None:
    saved = e9.post("/api/kq/monthReport/save", reports=json.dumps([report()]))

    reports = e9.post("/api/kq/monthReport/list", kqMonth="2026-02")["data"]

    assert saved["data"] == {"saved": 1}
    assert [(r["resourceId"], r["attendDays"], r["lateTimes"]) for r in reports] == [
        (uid("E00004"), 19, 1)
    ]
    assert len(store.ledger("oa")) == 1


def test_month_report_saved_twice_is_one_report(e9: E9) -> None:
    e9.post("/api/kq/monthReport/save", reports=json.dumps([report()]))
    e9.post("/api/kq/monthReport/save", reports=json.dumps([report(attendDays=20)]))

    reports = e9.post("/api/kq/monthReport/list", workcode="E00004")["data"]

    assert [r["attendDays"] for r in reports] == [20]


def test_month_report_with_a_bad_month_saves_nothing(e9: E9, store: SandboxStore) -> None:
    answer = e9.post(
        "/api/kq/monthReport/save", reports=json.dumps([report(), report(kqMonth="Feb")])
    )

    assert answer["code"] == "PARAM_ERROR"
    assert store.count("oa", "kq_month") == 0


# -- seeding ----------------------------------------------------------------------------------
def test_seed_counts_every_kind(store: SandboxStore, serve) -> None:
    store.set_setting("oa", "progress_per_project", "2")
    oa: OAEmulator = serve(OAEmulator, store)

    counts = oa.seed(WORLD, 10, 0)

    assert counts == {
        "users": len(WORLD.people),
        "departments": len(WORLD.departments),
        "approvals": 10,
        "projects": len(WORLD.projects),
        "progress": 2 * len(WORLD.projects),
    }


def time_text(ms: int) -> str:
    from sync_pipeline.devtools.sandbox.oa import fmt_time

    return fmt_time(ms)
