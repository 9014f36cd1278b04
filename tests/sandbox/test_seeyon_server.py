"""The Seeyon emulator inside `syncctl sandbox up` as a real process: listed by info and env,
driven by the control API's simulated members, and under the generic faults."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.registry import port_for
from sync_pipeline.devtools.sandbox.seeyon import member_id
from sync_pipeline.devtools.sandbox.world import World

SEED = 7
WORLD = World(SEED)
REST = "/seeyon/rest"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data_dir: Path = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data_dir, seed=SEED, approvals=10, checkin_days=1) as client:
        yield client


@pytest.fixture
def sandbox(running: SandboxClient) -> Iterator[SandboxClient]:
    """The shared sandbox, every fault cleared afterwards."""
    yield running
    running.clear_faults()


def login(employee_no: str) -> str:
    return WORLD.person(employee_no).email.split("@")[0]


class A8:
    def __init__(self, sandbox: SandboxClient, as_login: str = "") -> None:
        entry = sandbox.info()["seeyon"]
        self.url = str(entry["base_url"]) + REST
        creds = entry["credentials"]
        body = {"userName": creds["restUser"], "password": creds["restPassword"]}
        if as_login:
            body["loginName"] = as_login
        self.token = requests.post(f"{self.url}/token", json=body, timeout=5).json()["id"]

    def get(self, path: str, **params: Any) -> Any:
        answer = requests.get(
            self.url + path, headers={"token": self.token}, params=params, timeout=5
        )
        return answer.json()

    def start(self, subject: str) -> Any:
        body = {
            "appName": "collaboration",
            "data": {
                "templateCode": "GENERAL_001",
                "subject": subject,
                "data": {"formmain_0103": {"主题": subject}},
            },
        }
        answer = requests.post(
            f"{self.url}/bpm/process/start", headers={"token": self.token}, json=body, timeout=5
        )
        return answer.json()

    def finish(self, workitem: int, timeout_s: float = 5) -> Any:
        body = {
            "appName": "collaboration",
            "workitemId": str(workitem),
            "data": {"comment_deal": {"attitude": 2, "content": "OK"}},
        }
        answer = requests.post(
            f"{self.url}/bpm/workitem/finish",
            headers={"token": self.token},
            json=body,
            timeout=timeout_s,
        )
        return answer.json()


def new_flow(sandbox: SandboxClient) -> tuple[str, int]:
    """A flow E00012 files in the OA's UI for E00020: its summaryId and E00020's workitem."""
    made = sandbox.press(
        "seeyon", {"action": "create", "applicant": "E00012", "approvers": ["E00020"]}
    )
    admin = A8(sandbox)
    rows = admin.get("/affairs/pending", memberId=member_id("E00020"), pageSize=1000)["data"]
    [item] = [a for a in rows if str(a["objectId"]) == made["summaryId"]]
    return made["summaryId"], int(item["subObjectId"])


def test_info_lists_seeyon_on_port_offset_6_with_its_rest_user(sandbox: SandboxClient) -> None:
    entry = sandbox.info()["seeyon"]
    port_base = int(sandbox.info()["control"]["base_url"].rsplit(":", 1)[1])

    assert entry["base_url"].endswith(f":{port_for('seeyon', port_base)}")
    assert set(entry["credentials"]) == {"restUser", "restPassword", "orgAccountId"}


def test_env_names_the_seeyon_rest_user_for_a_declarative_connector(
    sandbox: SandboxClient,
) -> None:
    env = sandbox.env()

    assert {"SANDBOX_SEEYON_BASE_URL", "SANDBOX_SEEYON_REST_USER"} <= set(env)
    assert (
        env["SANDBOX_SEEYON_REST_PASSWORD"]
        == sandbox.info()["seeyon"]["credentials"]["restPassword"]
    )


def test_a_member_pressing_approve_in_the_oa_ends_a_one_node_flow(
    sandbox: SandboxClient,
) -> None:
    summary, _ = new_flow(sandbox)

    result = sandbox.press(
        "seeyon", {"action": "approve", "summaryId": summary, "by": "E00020", "comment": "OK"}
    )

    assert result["state"] == 0
    assert A8(sandbox).get(f"/flow/state/{summary}") == 0


def test_a_pressed_action_is_not_an_api_write(sandbox: SandboxClient) -> None:
    before = sandbox.last_seq()

    new_flow(sandbox)

    assert sandbox.ledger("seeyon", since_seq=before) == []


def test_a_finish_whose_answer_is_lost_is_applied_and_its_retry_is_already_done(
    sandbox: SandboxClient,
) -> None:
    summary, workitem = new_flow(sandbox)
    approver = A8(sandbox, login("E00020"))
    sandbox.fault("seeyon", "applied_no_answer")

    with pytest.raises(requests.ConnectionError):
        approver.finish(workitem)
    again = approver.finish(workitem)

    assert again["code"] == 1004
    [entry] = [e for e in sandbox.ledger("seeyon") if e["body"].get("workitemId") == str(workitem)]
    assert entry["endpoint"] == "POST /seeyon/rest/bpm/workitem/finish"
    assert A8(sandbox).get(f"/flow/state/{summary}") == 0


def test_a_start_whose_answer_is_lost_is_found_once_by_its_subject(
    sandbox: SandboxClient,
) -> None:
    sender, subject = A8(sandbox, login("E00012")), f"lost start {uuid.uuid4().hex[:8]}"
    sandbox.fault("seeyon", "applied_no_answer")

    with pytest.raises(requests.ConnectionError):
        sender.start(subject)

    found = A8(sandbox).get("/affairs/sent", memberId=member_id("E00012"), subject=subject)
    assert [a["subject"] for a in found["data"]] == [subject]


def test_a_read_under_applied_no_answer_keeps_its_answer(sandbox: SandboxClient) -> None:
    sandbox.fault("seeyon", "applied_no_answer")

    rows = A8(sandbox).get("/affairs/sent", memberId=member_id("E00012"))

    assert "data" in rows


def test_token_expire_fault_ends_every_seeyon_token(sandbox: SandboxClient) -> None:
    client = A8(sandbox)
    sandbox.fault("seeyon", "token_expire")

    answer = requests.get(
        f"{client.url}/orgMember/{member_id('E00001')}", headers={"token": client.token}, timeout=5
    )

    assert (answer.status_code, json.loads(answer.text)["code"]) == (401, "1010")
