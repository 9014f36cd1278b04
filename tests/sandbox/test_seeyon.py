"""Contract tests of the Seeyon A8 emulator, over real HTTP (docs/sandbox/seeyon.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.seeyon import (
    ACCOUNT_ID,
    SeeyonEmulator,
    member_id,
    summary_id,
)
from sync_pipeline.devtools.sandbox.world import World

REST = "/seeyon/rest"
SEED = 7
APPROVALS = 40
WORLD = World(SEED)
ALL = list(WORLD.approvals(APPROVALS))
FLOW_STATES = {"pending": (3, 4), "approved": (0,), "rejected": (15,), "revoked": (5,)}


def login(person: str) -> str:
    """A world person's Seeyon loginName."""
    return WORLD.person(person).email.split("@")[0]


class A8:
    """A minimal Seeyon REST client written from the contract: a token, then calls."""

    def __init__(self, base_url: str, creds: dict[str, str]) -> None:
        self.base_url, self.creds = base_url, creds

    def token(self, login_name: str = "", *, by: str = "get") -> requests.Response:
        user, password = self.creds["restUser"], self.creds["restPassword"]
        if by == "get":
            return requests.get(
                f"{self.base_url}{REST}/token/{user}/{password}",
                params={"loginName": login_name} if login_name else {},
                timeout=10,
            )
        body = {"userName": user, "password": password, "loginName": login_name}
        return requests.post(f"{self.base_url}{REST}/token", json=body, timeout=10)

    def as_member(self, login_name: str = "") -> Session:
        return Session(self.base_url, self.token(login_name).json()["id"])


class Session:
    """Calls with one token in the `token` header."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url, self.token = base_url, token

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(
            self.base_url + REST + path, headers={"token": self.token}, params=params, timeout=10
        )

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(
            self.base_url + REST + path, headers={"token": self.token}, json=body, timeout=10
        )

    def start(self, template: str = "GENERAL_001", **fields: str) -> dict[str, Any]:
        table = {"GENERAL_001": "formmain_0103", "LEAVE_001": "formmain_0101"}[template]
        body = {
            "appName": "collaboration",
            "data": {
                "templateCode": template,
                "draft": "0",
                "subject": fields.pop("subject", "Purchase request"),
                "data": {table: fields or {"主题": "Laptop", "说明": "for the new hire"}},
            },
        }
        return dict(self.post("/bpm/process/start", body).json())

    def finish(self, workitem: int, attitude: int, content: str = "") -> dict[str, Any]:
        body = {
            "appName": "collaboration",
            "workitemId": str(workitem),
            "data": {"comment_deal": {"attitude": attitude, "content": content}},
        }
        return dict(self.post("/bpm/workitem/finish", body).json())

    def pending(self, member: int) -> list[dict[str, Any]]:
        return list(self.get("/affairs/pending", memberId=member, pageSize=1000).json()["data"])


@pytest.fixture
def seeyon(store: SandboxStore, serve) -> SeeyonEmulator:
    store.set_setting("seeyon", "rate_limit_scale", "0")  # one test turns it on
    emulator: SeeyonEmulator = serve(SeeyonEmulator, store)
    emulator.seed(WORLD, APPROVALS, 0)
    return emulator


@pytest.fixture
def a8(seeyon: SeeyonEmulator) -> A8:
    return A8(seeyon.base_url, seeyon.credentials())


@pytest.fixture
def admin(a8: A8) -> Session:
    return a8.as_member()


def started(a8: A8, sender: str = "E00012") -> tuple[Session, int]:
    """A flow `sender` started through the API: the sender's session and its summaryId."""
    session = a8.as_member(login(sender))
    answer = session.start()
    return session, int(json.loads(answer["data"]["app_bussiness_data"])["summaryId"])


def pending_workitem(session: Session, member: int, summary: int) -> int:
    [item] = [a for a in session.pending(member) if a["objectId"] == summary]
    return int(item["subObjectId"])


def holder(session: Session, summary: int, members: list[int]) -> int:
    """The member whose pending list holds the flow."""
    [who] = [m for m in members if any(a["objectId"] == summary for a in session.pending(m))]
    return who


def nodes_of(sender: str) -> list[int]:
    """The approval nodes of a flow `sender` starts: the department's first member, the head."""
    department = WORLD.person(sender).department_id
    first = min(p.index for p in WORLD.people if p.department_id == department)
    return [member_id(f"E{first:05d}"), member_id("E00001")]


NODES = nodes_of("E00012")  # the only sender of the tests' flows


# -- token ------------------------------------------------------------------------------------
@pytest.mark.parametrize("by", ["get", "post"])
def test_token_from_the_rest_user_opens_the_api(a8: A8, by: str) -> None:
    token = a8.token(by=by).json()["id"]

    answer = Session(a8.base_url, token).get(f"/orgMember/{member_id('E00001')}")

    assert answer.status_code == 200
    assert answer.json()["code"] == "E00001"


def test_token_bound_by_login_name_shows_its_member(a8: A8) -> None:
    answer = a8.token(login("E00005")).json()

    assert answer["bindingUser"]["id"] == member_id("E00005")
    assert answer["bindingUser"]["code"] == "E00005"


def test_token_in_the_query_string_works_too(a8: A8) -> None:
    token = a8.token().json()["id"]

    answer = requests.get(
        f"{a8.base_url}{REST}/orgMember/{member_id('E00001')}", params={"token": token}, timeout=10
    )

    assert answer.status_code == 200


def test_a_wrong_password_gets_no_token(a8: A8) -> None:
    a8.creds = {**a8.creds, "restPassword": "wrong"}

    answer = a8.token()

    assert answer.status_code == 401
    assert answer.json()["code"] == "1010"
    assert "id" not in answer.json()


def test_an_unknown_login_name_gets_no_token(a8: A8) -> None:
    answer = a8.token("nobody.here")

    assert answer.status_code == 401


def test_a_call_without_a_token_is_refused_with_401_and_a_string_code(a8: A8) -> None:
    answer = requests.get(f"{a8.base_url}{REST}/orgMember/{member_id('E00001')}", timeout=10)

    assert answer.status_code == 401
    assert answer.json() == {"code": "1010", "message": "被迫下线"}


def test_an_expired_token_is_refused_and_not_echoed(a8: A8, store: SandboxStore) -> None:
    session = a8.as_member()
    store.expire_tokens("seeyon")

    answer = session.get(f"/orgMember/{member_id('E00001')}")

    assert answer.status_code == 401
    assert session.token not in answer.text


def test_the_token_lives_token_ttl_s(a8: A8, store: SandboxStore) -> None:
    store.set_setting("seeyon", "token_ttl_s", "0")

    session = a8.as_member()

    assert session.get(f"/orgMember/{member_id('E00001')}").status_code == 401


# -- org --------------------------------------------------------------------------------------
def test_members_page_to_the_end_on_a_short_page(admin: Session) -> None:
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        rows = admin.get(f"/orgMembers/{ACCOUNT_ID}", pageNo=page, pageSize=7).json()
        seen += rows
        if len(rows) < 7:
            break
        page += 1

    assert [m["code"] for m in seen] == [p.employee_no for p in WORLD.people]


def test_a_member_is_found_by_code_with_the_worlds_email_and_mobile(admin: Session) -> None:
    person = WORLD.person("E00007")

    [member] = admin.get("/orgMembers/code/E00007").json()

    assert (member["name"], member["emailAddress"], member["telNumber"]) == (
        person.name,
        person.email,
        person.mobile,
    )


def test_departments_list_the_worlds_departments_under_the_account(admin: Session) -> None:
    rows = admin.get(f"/orgDepartments/{ACCOUNT_ID}").json()

    assert [d["name"] for d in rows] == [d.name for d in WORLD.departments]
    assert rows[0]["superior"] == ACCOUNT_ID


def test_an_unknown_account_is_a_business_refusal(admin: Session) -> None:
    answer = admin.get("/orgMembers/12345")

    assert answer.status_code == 200
    assert answer.json()["code"] == 1002


# -- affairs ----------------------------------------------------------------------------------
def busiest_sender() -> str:
    counts: dict[str, int] = {}
    for a in ALL:
        counts[a.applicant_no] = counts.get(a.applicant_no, 0) + 1
    return max(counts, key=lambda k: (counts[k], k))


def test_sent_affairs_page_to_the_end_by_the_totals(admin: Session) -> None:
    sender = busiest_sender()
    expected = {summary_id(a.request_id) for a in ALL if a.applicant_no == sender}
    seen: list[int] = []
    page, pages = 1, 1
    while page <= pages:
        answer = admin.get("/affairs/sent", memberId=member_id(sender), pageNo=page, pageSize=2)
        body = answer.json()
        pages = body["pages"]
        seen += [a["objectId"] for a in body["data"]]
        page += 1

    assert body["total"] == len(expected) > 2
    assert sorted(seen) == sorted(expected)


def test_pending_affairs_by_code_are_the_worlds_pending_approvals(admin: Session) -> None:
    approver = next(a.current_approver_nos[0] for a in ALL if a.state == "pending")
    expected = {summary_id(a.request_id) for a in ALL if approver in a.current_approver_nos}

    body = admin.get(f"/affairs/pending/code/{approver}", pageSize=100).json()

    assert {a["objectId"] for a in body["data"]} == expected
    assert all(a["state"] == 3 and a["subObjectId"] for a in body["data"])


def test_affairs_come_oldest_change_first_and_filter_by_update_date(admin: Session) -> None:
    sender = busiest_sender()
    rows = admin.get("/affairs/sent", memberId=member_id(sender), pageSize=100).json()["data"]
    stamps = [a["updateDate"] for a in rows]
    middle = stamps[len(stamps) // 2]

    later = admin.get(
        "/affairs/sent", memberId=member_id(sender), pageSize=100, updateDateFrom=middle
    ).json()["data"]

    assert stamps == sorted(stamps)
    assert [a["updateDate"] for a in later] == [s for s in stamps if s >= middle]


def test_a_non_numeric_page_number_is_a_business_refusal(admin: Session) -> None:
    answer = admin.get("/affairs/pending", memberId=member_id("E00001"), pageNo="x")

    assert answer.status_code == 200
    assert answer.json()["code"] == 1001


# -- one flow ---------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["pending", "approved", "rejected", "revoked"])
def test_flow_state_of_a_seeded_flow_follows_the_world(admin: Session, state: str) -> None:
    approval = next(a for a in ALL if a.state == state)

    answer = admin.get(f"/flow/state/{summary_id(approval.request_id)}")

    assert answer.json() in FLOW_STATES[state]


def test_flow_data_holds_the_form_under_its_main_table(admin: Session) -> None:
    approval = next(a for a in ALL if a.template == "expense")

    data = admin.get(f"/flow/data/{summary_id(approval.request_id)}").json()

    assert data["templateCode"] == "EXPENSE_001"
    assert data["formData"]["formmain_0102"]["币种"] == "CNY"


def test_comments_of_a_rejected_flow_end_with_the_disagreement(admin: Session) -> None:
    approval = next(a for a in ALL if a.state == "rejected")

    body = admin.get(f"/coll/comments/all/{summary_id(approval.request_id)}").json()

    last = body["data"][-1]
    assert last["extAtt1"] == "collaboration.dealAttitude.disagree"
    assert last["content"] == "Please revise"
    assert last["createId"] == member_id(approval.history[-1].approver_no)


def test_an_unknown_flow_is_a_business_refusal(admin: Session) -> None:
    answer = admin.get("/flow/state/42")

    assert (answer.status_code, answer.json()["code"]) == (200, 1002)


# -- bpm writes -------------------------------------------------------------------------------
def test_start_answers_the_summary_in_a_json_string_and_the_flow_waits(a8: A8) -> None:
    session = a8.as_member(login("E00012"))

    answer = session.start()

    assert answer["code"] == 0
    business = json.loads(answer["data"]["app_bussiness_data"])
    assert session.get(f"/flow/state/{business['summaryId']}").json() == 3
    sent = session.get("/affairs/sent", memberId=member_id("E00012"), pageSize=1000).json()
    assert str(sent["data"][-1]["objectId"]) == business["summaryId"]


def test_start_without_a_bound_member_or_sender_is_refused(admin: Session) -> None:
    assert admin.start()["code"] == 1001


def test_start_with_sender_login_name_needs_no_binding(admin: Session) -> None:
    body = {
        "appName": "collaboration",
        "data": {
            "templateCode": "GENERAL_001",
            "senderLoginName": login("E00020"),
            "data": {"formmain_0103": {"主题": "x"}},
        },
    }

    answer = admin.post("/bpm/process/start", body).json()

    assert answer["code"] == 0


def test_start_with_an_unknown_template_is_refused(a8: A8) -> None:
    session = a8.as_member(login("E00012"))

    body = {"appName": "collaboration", "data": {"templateCode": "NOPE", "data": {}}}

    assert session.post("/bpm/process/start", body).json()["code"] == 1001


def test_agreeing_at_every_node_ends_the_flow(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    for _ in range(5):
        if admin.get(f"/flow/state/{summary}").json() == 0:
            break
        who = holder(admin, summary, NODES)
        node = a8.as_member(admin.get(f"/orgMember/{who}").json()["loginName"])
        assert node.finish(pending_workitem(admin, who, summary), 2, "OK")["code"] == 0

    assert admin.get(f"/flow/state/{summary}").json() == 0
    comments = admin.get(f"/coll/comments/all/{summary}").json()["data"]
    assert {c["extAtt1"] for c in comments} == {"collaboration.dealAttitude.agree"}


def test_agreeing_at_the_first_node_moves_the_flow_on(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node = a8.as_member(admin.get(f"/orgMember/{first}").json()["loginName"])

    node.finish(pending_workitem(admin, first, summary), 2)

    assert admin.get(f"/flow/state/{summary}").json() == 4
    done = admin.get("/affairs/done", memberId=first, pageSize=1000).json()["data"]
    assert summary in [a["objectId"] for a in done]
    assert summary not in [a["objectId"] for a in admin.pending(first)]


def test_disagreeing_stops_the_flow(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node = a8.as_member(admin.get(f"/orgMember/{first}").json()["loginName"])

    node.finish(pending_workitem(admin, first, summary), 3, "No budget")

    assert admin.get(f"/flow/state/{summary}").json() == 15
    [opinion] = admin.get(f"/coll/comments/all/{summary}").json()["data"]
    assert (opinion["extAtt1"], opinion["content"]) == (
        "collaboration.dealAttitude.disagree",
        "No budget",
    )


def test_finishing_a_workitem_twice_is_refused_as_already_done(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node = a8.as_member(admin.get(f"/orgMember/{first}").json()["loginName"])
    workitem = pending_workitem(admin, first, summary)
    node.finish(workitem, 2)

    again = node.finish(workitem, 2)

    assert again["code"] == 1004


def test_finishing_anothers_workitem_is_refused(a8: A8, admin: Session) -> None:
    sender, summary = started(a8)
    first = holder(admin, summary, NODES)

    answer = sender.finish(pending_workitem(admin, first, summary), 2)

    assert answer["code"] == 1003
    assert admin.get(f"/flow/state/{summary}").json() == 3


def test_an_unbound_token_may_not_finish(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)

    assert admin.finish(pending_workitem(admin, first, summary), 2)["code"] == 1003


def test_finish_as_workitem_owner_lets_an_unbound_token_finish(
    a8: A8, admin: Session, store: SandboxStore
) -> None:
    store.set_setting("seeyon", "finish_as_workitem_owner", "1")
    _, summary = started(a8)
    first = holder(admin, summary, NODES)

    assert admin.finish(pending_workitem(admin, first, summary), 2)["code"] == 0


def test_an_attitude_of_read_is_refused_at_an_approval_node(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node = a8.as_member(admin.get(f"/orgMember/{first}").json()["loginName"])

    assert node.finish(pending_workitem(admin, first, summary), 1)["code"] == 1001


def test_stop_terminates_the_flow(a8: A8, admin: Session) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node = a8.as_member(admin.get(f"/orgMember/{first}").json()["loginName"])
    body = {
        "appName": "collaboration",
        "workitemId": pending_workitem(admin, first, summary),
        "data": {"stopOpinion": "Cancelled project"},
    }

    assert node.post("/bpm/process/stop", body).json()["code"] == 0
    assert admin.get(f"/flow/state/{summary}").json() == 15


def test_the_sender_repeals_and_the_pending_affair_goes(a8: A8, admin: Session) -> None:
    sender, summary = started(a8)
    first = holder(admin, summary, NODES)
    body = {
        "appName": "collaboration",
        "workitemId": pending_workitem(admin, first, summary),
        "data": {"repealComment": "Filed twice"},
    }

    assert sender.post("/bpm/process/repeal", body).json()["code"] == 0
    assert admin.get(f"/flow/state/{summary}").json() == 5
    assert summary not in [a["objectId"] for a in admin.pending(first)]


def test_a_wrong_app_name_is_refused(a8: A8) -> None:
    session = a8.as_member(login("E00012"))

    answer = session.post("/bpm/process/start", {"appName": "edoc", "data": {}}).json()

    assert answer["code"] == 1001


# -- ledger -----------------------------------------------------------------------------------
def test_start_and_finish_are_in_the_ledger_with_their_caller(
    a8: A8, admin: Session, store: SandboxStore
) -> None:
    _, summary = started(a8)
    first = holder(admin, summary, NODES)
    node_login = admin.get(f"/orgMember/{first}").json()["loginName"]
    a8.as_member(node_login).finish(pending_workitem(admin, first, summary), 2, "fine")

    entries = store.ledger("seeyon")

    assert [(e.endpoint, e.caller) for e in entries] == [
        ("POST /seeyon/rest/bpm/process/start", login("E00012")),
        ("POST /seeyon/rest/bpm/workitem/finish", node_login),
    ]
    assert entries[1].body["data"]["comment_deal"]["content"] == "fine"


def test_reads_and_refused_writes_leave_the_ledger_empty(
    a8: A8, admin: Session, store: SandboxStore
) -> None:
    admin.get("/affairs/pending", memberId=member_id("E00001"))
    admin.start()  # refused: no sender

    assert store.ledger("seeyon") == []


# -- rate limit -------------------------------------------------------------------------------
def test_over_the_rate_limit_answers_429_with_retry_after(
    a8: A8, admin: Session, store: SandboxStore
) -> None:
    store.set_setting("seeyon", "rate_limit_scale", "0.02")  # 100/s -> 2/s

    statuses = [admin.get(f"/orgMember/{member_id('E00001')}") for _ in range(4)]

    limited = [a for a in statuses if a.status_code == 429]
    assert limited
    assert limited[0].headers["retry-after"] == "1"
    assert limited[0].json()["code"] == "1429"
