"""Contract tests of the WeCom emulator: real HTTP against a served emulator, WeCom's own fields.

Ground truth comes from the world the emulator was seeded from, never from the emulator itself.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.wecom import CST_MS, WeComEmulator, sp_no_for, userid_for
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, World
from sync_pipeline.devtools.sandbox.wxcrypto import WXBizMsgCrypt

SEED, APPROVALS, CHECKIN_DAYS = 7, 400, 14
START_S = EPOCH_MS // 1000  # 2026-01-01T00:00:00Z
MONTH_S = 31 * 86400


@pytest.fixture
def world() -> World:
    return World(SEED)


@pytest.fixture
def wecom(store: SandboxStore, serve, world: World) -> WeComEmulator:
    emulator = serve(WeComEmulator, store)
    assert isinstance(emulator, WeComEmulator)
    emulator.seed(world, APPROVALS, CHECKIN_DAYS)
    return emulator


@pytest.fixture
def token(wecom: WeComEmulator) -> str:
    creds = wecom.credentials()
    answer = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        timeout=5,
    ).json()
    return str(answer["access_token"])


def call(wecom: WeComEmulator, path: str, token: str, body: Any = None, **query: Any) -> Any:
    """POST a JSON body (or GET without one) the way WeCom clients do; returns the JSON."""
    url = f"{wecom.base_url}/cgi-bin/{path}"
    params = {"access_token": token, **query}
    if body is None:
        answer = requests.get(url, params=params, timeout=5)
    else:
        answer = requests.post(url, params=params, json=body, timeout=5)
    assert answer.status_code == 200  # WeCom answers HTTP 200 even for errors
    return answer.json()


def approvals_applied_between(world: World, start_s: int, end_s: int) -> list[str]:
    chosen = [
        a for a in world.approvals(APPROVALS) if start_s * 1000 <= a.created_ms < (end_s + 1) * 1000
    ]
    return [sp_no_for(a) for a in sorted(chosen, key=lambda a: (a.created_ms, sp_no_for(a)))]


def all_pages(wecom: WeComEmulator, token: str, body: dict[str, Any]) -> list[list[str]]:
    pages, cursor = [], ""
    while True:
        answer = call(wecom, "oa/getapprovalinfo", token, {**body, "new_cursor": cursor})
        assert answer["errcode"] == 0, answer
        pages.append(answer["sp_no_list"])
        cursor = answer["new_next_cursor"]
        if not cursor:
            return pages


def userids(world: World, count: int) -> list[str]:
    return [userid_for(p) for p in world.people[:count]]


# -- a callback receiver as a customer runs it --------------------------------------------------
@dataclass
class Receiver:
    """Verifies the signature and decrypts every callback, as a WeCom customer's server must."""

    decrypt: Callable[[str, str, str, str], str]  # (signature, timestamp, nonce, encrypt)
    echo_override: bytes | None = None
    messages: list[ET.Element] = field(default_factory=list)
    envelopes: list[ET.Element] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver_for(wecom: WeComEmulator) -> Iterator[Callable[..., Receiver]]:
    servers: list[ThreadingHTTPServer] = []

    def start(decrypt: Callable[[str, str, str, str], str] | None = None) -> Receiver:
        creds = wecom.credentials()
        ours = WXBizMsgCrypt(creds["token"], creds["encoding_aes_key"], creds["corpid"])
        receiver = Receiver(decrypt or ours.verify)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _query(self) -> dict[str, str]:
                return {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}

            def do_GET(self) -> None:
                q = self._query()
                plain = ours.verify(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
                answer = receiver.echo_override or plain.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_POST(self) -> None:
                q = self._query()
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                envelope = ET.fromstring(raw)  # noqa: S314 - the emulator's own output
                encrypt = envelope.findtext("Encrypt") or ""
                plain = receiver.decrypt(q["msg_signature"], q["timestamp"], q["nonce"], encrypt)
                receiver.envelopes.append(envelope)
                receiver.messages.append(ET.fromstring(plain))  # noqa: S314
                self.send_response(200)  # an empty 200 acknowledges
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/wecom/callback"
        wecom.store.set_setting("wecom", "callback_url", receiver.url)
        return receiver

    yield start
    for server in servers:
        server.shutdown()


def button_card(task_id: str) -> dict[str, Any]:
    return {
        "card_type": "button_interaction",
        "main_title": {"title": "Leave request #1", "desc": "3 days"},
        "task_id": task_id,
        "button_list": [
            {"text": "Approve", "style": 1, "key": "approve"},
            {"text": "Reject", "style": 2, "key": "reject"},
        ],
    }


def send_card(wecom: WeComEmulator, token: str, world: World, task_id: str) -> dict[str, Any]:
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "template_card",
        "agentid": int(wecom.credentials()["agentid"]),
        "template_card": button_card(task_id),
    }
    return dict(call(wecom, "message/send", token, body))


# -- access tokens ------------------------------------------------------------------------------
def test_gettoken_returns_a_token_valid_for_7200_seconds(wecom):
    creds = wecom.credentials()

    answer = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        timeout=5,
    ).json()

    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200
    assert answer["access_token"]


def test_gettoken_with_an_unknown_corpid_answers_40013(wecom):
    creds = wecom.credentials()

    answer = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": "ww-nobody", "corpsecret": creds["corpsecret"]},
        timeout=5,
    )

    assert answer.status_code == 200
    assert answer.json()["errcode"] == 40013


def test_gettoken_with_a_wrong_secret_answers_40001(wecom):
    creds = wecom.credentials()

    answer = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": "wrong"},
        timeout=5,
    ).json()

    assert answer["errcode"] == 40001


def test_gettoken_within_the_lifetime_returns_the_same_token(wecom, token):
    creds = wecom.credentials()

    again = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        timeout=5,
    ).json()

    assert again["access_token"] == token


def test_given_an_unknown_token_a_call_answers_40014(wecom):
    answer = call(wecom, "department/list", "not-a-token")

    assert answer["errcode"] == 40014
    assert "more info at https://open.work.weixin.qq.com/devtool/query?e=40014" in answer["errmsg"]


def test_given_no_token_a_call_answers_41001(wecom):
    answer = requests.get(f"{wecom.base_url}/cgi-bin/department/list", timeout=5).json()

    assert answer["errcode"] == 41001


def test_given_expired_tokens_a_call_answers_42001(wecom, token):
    wecom.store.expire_tokens("wecom")

    assert call(wecom, "department/list", token)["errcode"] == 42001


def test_given_a_one_second_ttl_the_token_expires_by_itself(wecom, store):
    store.set_setting("wecom", "token_ttl_s", "1")
    creds = wecom.credentials()
    short = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        timeout=5,
    ).json()
    assert short["expires_in"] == 1
    time.sleep(1.2)

    assert call(wecom, "department/list", short["access_token"])["errcode"] == 42001


def test_after_expiry_gettoken_issues_a_new_token(wecom, token):
    wecom.store.expire_tokens("wecom")
    creds = wecom.credentials()

    fresh = requests.get(
        f"{wecom.base_url}/cgi-bin/gettoken",
        params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
        timeout=5,
    ).json()

    assert fresh["access_token"] != token
    assert call(wecom, "department/list", fresh["access_token"])["errcode"] == 0


# -- approvals ----------------------------------------------------------------------------------
def test_approval_pages_list_each_approval_of_the_window_once_in_apply_order(wecom, token, world):
    body = {"starttime": str(START_S), "endtime": str(START_S + MONTH_S), "size": 100}

    pages = all_pages(wecom, token, body)

    assert [sp for page in pages for sp in page] == approvals_applied_between(
        world, START_S, START_S + MONTH_S
    )


def test_the_last_page_has_an_empty_cursor(wecom, token, world):
    expected = approvals_applied_between(world, START_S, START_S + 7 * 86400)
    body = {"starttime": START_S, "endtime": START_S + 7 * 86400, "new_cursor": "", "size": 100}

    answer = call(wecom, "oa/getapprovalinfo", token, body)

    assert 0 < len(expected) < 100
    assert answer["sp_no_list"] == expected
    assert answer["new_next_cursor"] == ""


def test_the_same_cursor_returns_the_same_page(wecom, token):
    body = {"starttime": START_S, "endtime": START_S + MONTH_S, "new_cursor": "", "size": 5}
    first = call(wecom, "oa/getapprovalinfo", token, body)
    page_two = {**body, "new_cursor": first["new_next_cursor"]}

    assert call(wecom, "oa/getapprovalinfo", token, page_two) == call(
        wecom, "oa/getapprovalinfo", token, page_two
    )


def test_an_empty_window_gives_an_empty_list_and_no_cursor(wecom, token):
    body = {"starttime": START_S - 10 * 86400, "endtime": START_S - 1, "new_cursor": ""}

    answer = call(wecom, "oa/getapprovalinfo", token, body)

    assert answer == {"errcode": 0, "errmsg": "ok", "sp_no_list": [], "new_next_cursor": ""}


def test_a_window_over_31_days_answers_301025(wecom, token):
    body = {"starttime": START_S, "endtime": START_S + MONTH_S + 1, "new_cursor": ""}

    assert call(wecom, "oa/getapprovalinfo", token, body)["errcode"] == 301025


def test_an_end_not_after_the_start_answers_301025(wecom, token):
    body = {"starttime": START_S, "endtime": START_S, "new_cursor": ""}

    assert call(wecom, "oa/getapprovalinfo", token, body)["errcode"] == 301025


def test_a_size_over_100_answers_301025(wecom, token):
    body = {"starttime": START_S, "endtime": START_S + 86400, "new_cursor": "", "size": 101}

    assert call(wecom, "oa/getapprovalinfo", token, body)["errcode"] == 301025


def test_a_forged_cursor_answers_301025(wecom, token):
    body = {"starttime": START_S, "endtime": START_S + 86400, "new_cursor": "deadbeef10"}

    assert call(wecom, "oa/getapprovalinfo", token, body)["errcode"] == 301025


def test_filtered_pages_may_be_short_while_the_cursor_goes_on(wecom, token, world):
    pending = {sp_no_for(a) for a in world.approvals(APPROVALS) if a.state == "pending"}
    body = {
        "starttime": START_S,
        "endtime": START_S + MONTH_S,
        "size": 20,
        "filters": [{"key": "sp_status", "value": "1"}],
    }

    pages = all_pages(wecom, token, body)

    listed = [sp for page in pages for sp in page]
    window = set(approvals_applied_between(world, START_S, START_S + MONTH_S))
    assert set(listed) == pending & window
    assert any(len(page) < 20 for page in pages[:-1])  # short, yet not the last page


def test_filters_of_different_keys_all_apply(wecom, token, world):
    person = world.people[0]
    body = {
        "starttime": START_S,
        "endtime": START_S + MONTH_S,
        "filters": [
            {"key": "creator", "value": userid_for(person)},
            {"key": "sp_status", "value": "2"},
        ],
    }

    listed = [sp for page in all_pages(wecom, token, body) for sp in page]

    expected = {
        sp_no_for(a)
        for a in world.approvals(APPROVALS)
        if a.applicant_no == person.employee_no and a.state == "approved"
    } & set(approvals_applied_between(world, START_S, START_S + MONTH_S))
    assert set(listed) == expected


def test_the_legacy_integer_cursor_pages_too(wecom, token, world):
    listed, cursor = [], 0
    while True:
        body = {"starttime": START_S, "endtime": START_S + MONTH_S, "cursor": cursor, "size": 30}
        answer = call(wecom, "oa/getapprovalinfo", token, body)
        listed += answer["sp_no_list"]
        cursor = answer["next_cursor"]
        if not cursor:
            break

    assert listed == approvals_applied_between(world, START_S, START_S + MONTH_S)


def test_approval_detail_has_wecom_field_names(wecom, token, world):
    approval = next(a for a in world.approvals(APPROVALS) if a.state == "approved")

    info = call(wecom, "oa/getapprovaldetail", token, {"sp_no": sp_no_for(approval)})["info"]

    assert set(info) == {
        "sp_no",
        "sp_name",
        "sp_status",
        "template_id",
        "apply_time",
        "applyer",
        "sp_record",
        "notifyer",
        "apply_data",
        "comments",
    }
    assert info["sp_status"] == 2
    assert info["apply_time"] == approval.created_ms // 1000
    assert info["applyer"]["userid"] == userid_for(world.person(approval.applicant_no))
    chain = [userid_for(world.person(n)) for n in approval.approver_nos]
    assert [r["details"][0]["approver"]["userid"] for r in info["sp_record"]] == chain
    assert {r["sp_status"] for r in info["sp_record"]} == {2}
    assert set(info["sp_record"][0]["details"][0]) == {
        "approver",
        "speech",
        "sp_status",
        "sptime",
        "media_id",
    }
    assert all(
        {"control", "id", "title", "value"} <= set(c) for c in info["apply_data"]["contents"]
    )


def test_approval_detail_of_a_pending_approval_shows_its_open_node(wecom, token, world):
    approval = next(a for a in world.approvals(APPROVALS) if a.state == "pending")

    info = call(wecom, "oa/getapprovaldetail", token, {"sp_no": sp_no_for(approval)})["info"]

    assert info["sp_status"] == 1
    current = userid_for(world.person(approval.current_approver_nos[0]))
    open_nodes = [r for r in info["sp_record"] if r["sp_status"] == 1]
    assert open_nodes[0]["details"][0]["approver"]["userid"] == current


def test_approval_detail_of_an_unknown_sp_no_answers_301025(wecom, token):
    assert (
        call(wecom, "oa/getapprovaldetail", token, {"sp_no": "209901010000001"})["errcode"]
        == 301025
    )


def test_approval_calls_over_the_scaled_600_per_minute_answer_45009(wecom, token, store):
    store.set_setting("wecom", "rate_limit_scale", "0.005")  # 600/min -> 3/min
    body = {"starttime": START_S, "endtime": START_S + 86400, "new_cursor": ""}

    codes = [call(wecom, "oa/getapprovalinfo", token, body)["errcode"] for _ in range(4)]

    assert codes == [0, 0, 0, 45009]


def test_a_zero_rate_limit_scale_turns_limits_off(wecom, token, store):
    store.set_setting("wecom", "rate_limit_scale", "0")
    body = {"starttime": START_S, "endtime": START_S + 86400, "new_cursor": ""}

    codes = {call(wecom, "oa/getapprovalinfo", token, body)["errcode"] for _ in range(30)}

    assert codes == {0}


# -- checkins -----------------------------------------------------------------------------------
def test_checkin_data_lists_the_punches_of_the_listed_users_in_the_window(wecom, token, world):
    users = userids(world, 3)
    body = {
        "opencheckindatatype": 3,
        "starttime": START_S,
        "endtime": START_S + 7 * 86400,
        "useridlist": users,
    }

    rows = call(wecom, "checkin/getcheckindata", token, body)["checkindata"]

    expected = [
        c
        for c in world.checkins(CHECKIN_DAYS)
        if userid_for(world.person(c.employee_no)) in users and c.day_ms < EPOCH_MS + 7 * DAY_MS
    ]
    assert len(rows) == len(expected)
    assert {r["userid"] for r in rows} == set(users)
    assert {r["checkin_type"] for r in rows} == {"上班打卡", "下班打卡"}
    assert set(rows[0]) >= {
        "userid",
        "groupname",
        "checkin_type",
        "exception_type",
        "checkin_time",
        "location_title",
        "wifiname",
        "notes",
        "sch_checkin_time",
        "groupid",
        "schedule_id",
        "timeline_id",
    }
    assert all(not key.startswith("_") for row in rows for key in row)


def test_checkin_data_over_30_days_answers_301024(wecom, token, world):
    body = {
        "starttime": START_S,
        "endtime": START_S + 30 * 86400 + 1,
        "useridlist": userids(world, 1),
    }

    assert call(wecom, "checkin/getcheckindata", token, body)["errcode"] == 301024


def test_checkin_data_for_no_users_answers_301023(wecom, token):
    body = {"starttime": START_S, "endtime": START_S + 86400, "useridlist": []}

    assert call(wecom, "checkin/getcheckindata", token, body)["errcode"] == 301023


def test_checkin_data_for_over_100_users_answers_301023(wecom, token):
    body = {
        "starttime": START_S,
        "endtime": START_S + 86400,
        "useridlist": [f"u{i}" for i in range(101)],
    }

    assert call(wecom, "checkin/getcheckindata", token, body)["errcode"] == 301023


def test_checkin_data_for_an_unknown_user_answers_301021(wecom, token, world):
    body = {
        "starttime": START_S,
        "endtime": START_S + 86400,
        "useridlist": [*userids(world, 1), "ghost"],
    }

    assert call(wecom, "checkin/getcheckindata", token, body)["errcode"] == 301021


def test_day_data_gives_one_summary_per_user_and_day(wecom, token, world):
    users = userids(world, 2)
    midnight = (EPOCH_MS - CST_MS) // 1000  # 2026-01-01 00:00 China time
    body = {"starttime": midnight, "endtime": midnight + 2 * 86400, "useridlist": users}

    datas = call(wecom, "checkin/getcheckin_daydata", token, body)["datas"]

    assert len(datas) == 3 * 2
    assert {d["base_info"]["acctid"] for d in datas} == set(users)
    assert {d["base_info"]["date"] for d in datas} == {midnight + i * 86400 for i in range(3)}
    first = datas[0]
    assert set(first) == {
        "base_info",
        "summary_info",
        "holiday_infos",
        "exception_infos",
        "ot_info",
        "sp_items",
    }
    assert first["summary_info"]["checkin_count"] == 2  # 2026-01-01 is a working Thursday


def test_day_data_has_its_own_lower_limit_of_100_per_minute(wecom, token, world, store):
    store.set_setting("wecom", "rate_limit_scale", "0.02")  # day data 100/min -> 2/min
    midnight = (EPOCH_MS - CST_MS) // 1000
    body = {"starttime": midnight, "endtime": midnight + 86400, "useridlist": userids(world, 1)}

    codes = [call(wecom, "checkin/getcheckin_daydata", token, body)["errcode"] for _ in range(3)]

    assert codes == [0, 0, 45009]


# -- directory ----------------------------------------------------------------------------------
def test_user_list_of_the_root_with_children_lists_everyone(wecom, token, world):
    users = call(wecom, "user/list", token, department_id=1, fetch_child=1)["userlist"]

    assert sorted(u["userid"] for u in users) == sorted(userid_for(p) for p in world.people)
    person = world.people[0]
    mine = next(u for u in users if u["userid"] == userid_for(person))
    assert mine["email"] == person.email
    assert mine["mobile"] == person.mobile.replace("+86-", "")
    assert all(not key.startswith("_") for key in mine)


def test_user_list_of_an_unknown_department_answers_60003(wecom, token):
    assert call(wecom, "user/list", token, department_id=999)["errcode"] == 60003


def test_department_list_holds_the_root_and_its_children(wecom, token, world):
    departments = call(wecom, "department/list", token)["department"]

    assert len(departments) == len(world.departments)
    assert {d["parentid"] for d in departments} == {0, 1}
    assert set(departments[0]) >= {"id", "name", "parentid", "order", "department_leader"}


def test_user_simplelist_shows_only_the_simple_fields(wecom, token, world):
    users = call(wecom, "user/simplelist", token, department_id=2)["userlist"]

    expected = [userid_for(p) for p in world.people if p.department_id == "d2"]
    assert sorted(u["userid"] for u in users) == sorted(expected)
    assert set(users[0]) == {"userid", "name", "department", "open_userid"}


def test_user_get_shows_the_employee_number_as_an_extra_attribute(wecom, token, world):
    person = world.people[4]

    user = call(wecom, "user/get", token, userid=userid_for(person))

    assert user["errcode"] == 0
    assert user["name"] == person.name
    assert user["extattr"]["attrs"][0]["text"]["value"] == person.employee_no


def test_user_get_of_an_unknown_user_answers_60111(wecom, token):
    assert call(wecom, "user/get", token, userid="ghost")["errcode"] == 60111


def test_user_list_id_pages_with_a_cursor(wecom, token, world):
    seen, cursor = [], ""
    while True:
        answer = call(wecom, "user/list_id", token, {"cursor": cursor, "limit": 25})
        seen += [d["userid"] for d in answer["dept_user"]]
        cursor = answer["next_cursor"]
        if not cursor:
            break

    assert sorted(seen) == sorted(userid_for(p) for p in world.people)


# -- messages -----------------------------------------------------------------------------------
def test_send_text_answers_a_msgid_and_is_recorded_once(wecom, token, world):
    body = {
        "touser": "|".join(userids(world, 2)),
        "msgtype": "text",
        "agentid": int(wecom.credentials()["agentid"]),
        "text": {"content": "Your leave was approved"},
    }

    answer = call(wecom, "message/send", token, body)

    assert answer["errcode"] == 0
    assert answer["invaliduser"] == ""
    entries = wecom.store.ledger("wecom")
    assert [e.endpoint for e in entries] == ["message/send"]
    assert entries[0].body["msgid"] == answer["msgid"]
    assert entries[0].body["delivered_to"] == userids(world, 2)


def test_send_reports_unknown_users_in_invaliduser(wecom, token, world):
    body = {
        "touser": f"{userids(world, 1)[0]}|ghost1|ghost2",
        "msgtype": "text",
        "agentid": int(wecom.credentials()["agentid"]),
        "text": {"content": "hello"},
    }

    answer = call(wecom, "message/send", token, body)

    assert answer["errcode"] == 0
    assert answer["invaliduser"] == "ghost1|ghost2"


def test_send_to_only_unknown_users_answers_81013(wecom, token):
    body = {
        "touser": "ghost",
        "msgtype": "text",
        "agentid": int(wecom.credentials()["agentid"]),
        "text": {"content": "hello"},
    }

    assert call(wecom, "message/send", token, body)["errcode"] == 81013
    assert wecom.store.ledger("wecom") == []


def test_send_with_another_agentid_answers_40056(wecom, token, world):
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "text",
        "agentid": 42,
        "text": {"content": "x"},
    }

    assert call(wecom, "message/send", token, body)["errcode"] == 40056


def test_send_text_over_2048_bytes_answers_45002(wecom, token, world):
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "text",
        "agentid": int(wecom.credentials()["agentid"]),
        "text": {"content": "审" * 683},  # 2049 bytes of UTF-8
    }

    assert call(wecom, "message/send", token, body)["errcode"] == 45002


def test_duplicate_check_sends_the_same_content_once_within_the_interval(wecom, token, world):
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "markdown",
        "agentid": int(wecom.credentials()["agentid"]),
        "markdown": {"content": "**Approved**"},
        "enable_duplicate_check": 1,
        "duplicate_check_interval": 600,
    }

    first = call(wecom, "message/send", token, body)
    second = call(wecom, "message/send", token, body)

    assert second["errcode"] == 0
    assert second["msgid"] == first["msgid"]
    assert len(wecom.store.ledger("wecom")) == 1


def test_without_duplicate_check_the_same_content_is_sent_twice(wecom, token, world):
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "text",
        "agentid": int(wecom.credentials()["agentid"]),
        "text": {"content": "ping"},
    }

    first = call(wecom, "message/send", token, body)
    second = call(wecom, "message/send", token, body)

    assert first["msgid"] != second["msgid"]
    assert len(wecom.store.ledger("wecom")) == 2


def test_a_button_card_answers_a_response_code(wecom, token, world, receiver_for):
    receiver_for()

    answer = send_card(wecom, token, world, "task-1")

    assert answer["errcode"] == 0
    assert answer["response_code"]


def test_a_button_card_without_a_callback_url_answers_43012(wecom, token, world):
    assert send_card(wecom, token, world, "task-1")["errcode"] == 43012


def test_a_card_with_more_than_six_rows_is_refused(wecom, token, world, receiver_for):
    receiver_for()
    card = button_card("task-1")
    card["horizontal_content_list"] = [{"keyname": f"k{i}", "value": "v"} for i in range(7)]
    body = {
        "touser": userids(world, 1)[0],
        "msgtype": "template_card",
        "agentid": int(wecom.credentials()["agentid"]),
        "template_card": card,
    }

    assert call(wecom, "message/send", token, body)["errcode"] == 40058
    card["horizontal_content_list"] = card["horizontal_content_list"][:6]
    assert call(wecom, "message/send", token, body)["errcode"] == 0


def test_a_reused_task_id_is_refused(wecom, token, world, receiver_for):
    receiver_for()
    send_card(wecom, token, world, "task-1")

    assert send_card(wecom, token, world, "task-1")["errcode"] == 40058


def test_update_template_card_works_once_per_response_code(wecom, token, world, receiver_for):
    receiver_for()
    code = send_card(wecom, token, world, "task-1")["response_code"]
    body = {
        "userids": userids(world, 1),
        "agentid": int(wecom.credentials()["agentid"]),
        "response_code": code,
        "button": {"replace_name": "Approved"},
    }

    first = call(wecom, "message/update_template_card", token, body)
    second = call(wecom, "message/update_template_card", token, body)

    assert first == {"errcode": 0, "errmsg": "ok", "invaliduser": []}
    assert second["errcode"] == 40058
    updates = [
        e for e in wecom.store.ledger("wecom") if e.endpoint == "message/update_template_card"
    ]
    assert [e.idem_key for e in updates] == [code]
    assert wecom.store.get("wecom", "card", "task-1")["replace_name"] == "Approved"


def test_a_response_code_older_than_72_hours_is_refused(wecom, token, world, receiver_for):
    receiver_for()
    code = send_card(wecom, token, world, "task-1")["response_code"]
    grant = wecom.store.get("wecom", "response_code", code)
    wecom.store.put(
        "wecom", "response_code", code, {**grant, "expires_ms": int(time.time() * 1000) - 1}
    )
    body = {
        "userids": userids(world, 1),
        "agentid": int(wecom.credentials()["agentid"]),
        "response_code": code,
        "button": {"replace_name": "Approved"},
    }

    assert call(wecom, "message/update_template_card", token, body)["errcode"] == 40058


def test_appchat_send_to_a_seeded_group_is_recorded(wecom, token, world):
    chats = wecom.store.list("wecom", "appchat")
    body = {
        "chatid": chats[0]["chatid"],
        "msgtype": "text",
        "text": {"content": "Sprint review at 3"},
    }

    answer = call(wecom, "appchat/send", token, body)

    assert answer == {"errcode": 0, "errmsg": "ok"}
    entry = wecom.store.ledger("wecom")[0]
    assert entry.endpoint == "appchat/send"
    assert entry.body["delivered_to"] == chats[0]["userlist"]


def test_appchat_send_to_an_unknown_chat_answers_86003(wecom, token):
    body = {"chatid": "wr-ghost", "msgtype": "text", "text": {"content": "hello"}}

    assert call(wecom, "appchat/send", token, body)["errcode"] == 86003


def test_appchat_create_then_get_shows_the_chat(wecom, token, world):
    members = userids(world, 3)
    created = call(
        wecom, "appchat/create", token, {"name": "Ops", "owner": members[0], "userlist": members}
    )

    info = call(wecom, "appchat/get", token, chatid=created["chatid"])["chat_info"]

    assert info == {
        "chatid": created["chatid"],
        "name": "Ops",
        "owner": members[0],
        "userlist": members,
        "chat_type": 0,
    }


def test_a_body_that_is_not_json_answers_47001(wecom, token):
    answer = requests.post(
        f"{wecom.base_url}/cgi-bin/message/send",
        params={"access_token": token},
        data=b"{not json",
        timeout=5,
    ).json()

    assert answer["errcode"] == 47001


# -- callbacks ----------------------------------------------------------------------------------
def test_a_button_press_delivers_a_signed_encrypted_template_card_event(
    wecom, token, world, receiver_for
):
    receiver = receiver_for()
    send_card(wecom, token, world, "task-1")
    user = userids(world, 1)[0]

    result = wecom.press({"kind": "button", "task_id": "task-1", "userid": user, "key": "approve"})

    assert result["delivered"] == [200]
    creds = wecom.credentials()
    envelope, event = receiver.envelopes[0], receiver.messages[0]
    assert envelope.findtext("ToUserName") == creds["corpid"]
    assert envelope.findtext("AgentID") == creds["agentid"]
    assert event.findtext("ToUserName") == creds["corpid"]
    assert event.findtext("FromUserName") == user
    assert event.findtext("MsgType") == "event"
    assert event.findtext("Event") == "template_card_event"
    assert event.findtext("EventKey") == "approve"
    assert event.findtext("TaskId") == "task-1"
    assert event.findtext("CardType") == "button_interaction"
    assert event.findtext("ResponseCode") == result["response_code"]
    assert event.findtext("AgentID") == creds["agentid"]
    assert int(event.findtext("CreateTime") or 0) > 0


def test_the_response_code_of_a_press_updates_the_card_once(wecom, token, world, receiver_for):
    receiver_for()
    send_card(wecom, token, world, "task-1")
    code = wecom.press({"kind": "button", "task_id": "task-1", "key": "reject"})["response_code"]
    body = {
        "userids": userids(world, 1),
        "agentid": int(wecom.credentials()["agentid"]),
        "response_code": code,
        "button": {"replace_name": "Rejected"},
    }

    codes = [call(wecom, "message/update_template_card", token, body)["errcode"] for _ in range(2)]

    assert codes == [0, 40058]


def test_approval_change_press_approves_and_sends_sys_approval_change(
    wecom, token, world, receiver_for
):
    receiver = receiver_for()
    approval = next(
        a for a in world.approvals(APPROVALS) if a.state == "pending" and len(a.approver_nos) == 1
    )
    approver = userid_for(world.person(approval.current_approver_nos[0]))

    wecom.press(
        {
            "kind": "approval_change",
            "sp_no": sp_no_for(approval),
            "decision": "approve",
            "userid": approver,
        }
    )

    event = receiver.messages[0]
    assert event.findtext("Event") == "sys_approval_change"
    assert event.findtext("AgentID") == "3010040"
    info = event.find("ApprovalInfo")
    assert info is not None
    assert info.findtext("SpNo") == sp_no_for(approval)
    assert info.findtext("SpStatus") == "2"
    assert info.findtext("StatuChangeEvent") == "2"
    assert info.findtext("SpRecord/Details/Approver/UserId") == approver
    detail = call(wecom, "oa/getapprovaldetail", token, {"sp_no": sp_no_for(approval)})["info"]
    assert detail["sp_status"] == 2


def test_approval_change_by_someone_else_is_refused(wecom, world, receiver_for):
    receiver_for()
    approval = next(a for a in world.approvals(APPROVALS) if a.state == "pending")

    with pytest.raises(PressError):
        wecom.press(
            {
                "kind": "approval_change",
                "sp_no": sp_no_for(approval),
                "decision": "approve",
                "userid": "ghost",
            }
        )


def test_a_user_message_press_delivers_text_with_a_msgid(wecom, world, receiver_for):
    receiver = receiver_for()
    user = userids(world, 1)[0]

    wecom.press({"kind": "message", "userid": user, "content": "status?"})

    event = receiver.messages[0]
    assert event.findtext("MsgType") == "text"
    assert event.findtext("Content") == "status?"
    assert event.findtext("FromUserName") == user
    assert (event.findtext("MsgId") or "").isdigit()


def test_verify_url_passes_when_the_receiver_echoes_the_plaintext(wecom, receiver_for):
    receiver_for()

    assert wecom.press({"kind": "verify_url"})["ok"] is True


def test_verify_url_fails_when_the_receiver_echoes_anything_else(wecom, receiver_for):
    receiver = receiver_for()
    receiver.echo_override = b'"quoted"\n'

    assert wecom.press({"kind": "verify_url"})["ok"] is False


def test_press_without_a_callback_url_raises_press_error(wecom):
    with pytest.raises(PressError):
        wecom.press({"kind": "message", "userid": "anyone", "content": "x"})


# -- the official SDK, pointed at the emulator --------------------------------------------------
def test_wechatpy_decrypts_and_verifies_our_callbacks(wecom, world, receiver_for):
    crypto_module = pytest.importorskip("wechatpy.enterprise.crypto")
    creds = wecom.credentials()
    official = crypto_module.WeChatCrypto(
        creds["token"], creds["encoding_aes_key"], creds["corpid"]
    )

    def decrypt(signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        envelope = (
            f"<xml><ToUserName><![CDATA[{creds['corpid']}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return str(official.decrypt_message(envelope, signature, timestamp, nonce))

    receiver = receiver_for(decrypt)

    wecom.press(
        {"kind": "message", "userid": userids(world, 1)[0], "content": "hello from the sandbox"}
    )

    assert receiver.messages[0].findtext("Content") == "hello from the sandbox"


def test_wechatpy_client_lists_approvals_and_refreshes_an_expired_token(wecom, world):
    client_module = pytest.importorskip("wechatpy.enterprise")
    creds = wecom.credentials()
    base = wecom.base_url

    class SandboxClient(client_module.WeChatClient):  # the SDK, with only its base URL changed
        API_BASE_URL = f"{base}/cgi-bin/"

        def fetch_access_token(self) -> Any:
            params = {"corpid": self.corp_id, "corpsecret": self.secret}
            return self._fetch_access_token(url=f"{base}/cgi-bin/gettoken", params=params)

    client = SandboxClient(creds["corpid"], creds["corpsecret"])
    client.fetch_access_token()
    wecom.store.expire_tokens("wecom")  # the SDK must see 42001, fetch again and retry

    answer = client.OA.get_approval_info(START_S, START_S + MONTH_S, 0, 100)

    assert (
        answer["sp_no_list"] == approvals_applied_between(world, START_S, START_S + MONTH_S)[:100]
    )
