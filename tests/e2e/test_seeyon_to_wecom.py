"""End to end: the sandbox's Seeyon A8 OA connected with YAML alone (config/examples/seeyon),
its approvals synced to WeCom by a real worker: a card for the approver, exactly once; a press
of Approve or Reject on the card finishes the workitem in Seeyon exactly once, as the approver
(with a token bound to them by loginName; the Seeyon ledger and the flow's state say so); the
applicant told the result once, by the next pull (Seeyon sends no callbacks)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import ROOT, next_second, syncctl, wait_for
from tests.e2e.spine import webhook_service
from tests.events.approval_scene import entries

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPLICANT, APPROVER = "E00010", "E00011"
DEADLINE_S = 90
EXAMPLE = ROOT / "config" / "examples" / "seeyon"
FLOW = "approvals_to_wecom"
FINISH = "bpm/workitem/finish"


def seeyon_config(into: Path) -> Path:
    """The example as a user installs it: the Seeyon entry beside the shipped WeCom one, its
    description, and its one flow."""
    into.mkdir()
    shipped = yaml.safe_load((ROOT / "config" / "connectors.yaml").read_text("utf-8"))
    example = yaml.safe_load((EXAMPLE / "connectors.yaml").read_text("utf-8"))
    connectors = {"sandbox_wecom": shipped["sandbox_wecom"], **example}
    (into / "connectors.yaml").write_text(yaml.safe_dump(connectors, allow_unicode=True), "utf-8")
    shutil.copy(EXAMPLE / "seeyon.yaml", into / "seeyon.yaml")
    (into / "flows").mkdir()
    shutil.copy(EXAMPLE / f"{FLOW}.yaml", into / "flows" / f"{FLOW}.yaml")
    return into


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=2, checkin_days=1) as client:
        # WeCom accepts callback cards only from an app with a callback URL (errcode 43012).
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def sandbox_env(migrated: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> dict[str, str]:
    config = seeyon_config(tmp_path / "config")
    return {**migrated, **sandbox.env(), "SYNC_CONFIG_DIR": str(config)}


@pytest.fixture
def webhooks(sandbox_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    """`syncctl webhooks serve`: WeCom's card presses come through it."""
    with webhook_service(sandbox_env, sandbox, tmp_path / "webhooks.log", ("wecom",)) as url:
        yield url


# -- helpers ----------------------------------------------------------------------------------
def new_flow(sandbox: SandboxClient) -> tuple[str, str]:
    """A leave request started in Seeyon by APPLICANT for APPROVER: (summaryId, subject)."""
    subject = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.press(
        "seeyon",
        {
            "action": "create",
            "applicant": APPLICANT,
            "approvers": [APPROVER],
            "template": "leave",
            "subject": subject,
            "form": {"leave_type": "annual", "days": "2"},
        },
    )
    return str(made["summaryId"]), subject


def run(env: dict[str, str]) -> None:
    next_second()
    result = syncctl("run", FLOW, "--wait", "--timeout", "120", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def cards(sandbox: SandboxClient, subject: str) -> list[Mapping[str, Any]]:
    userid = sandbox_wecom.userid_for(WORLD.person(APPROVER))
    return [
        e["body"]["template_card"]
        for e in entries(sandbox, "wecom", subject)
        if e["endpoint"] == "message/send"
        and e["body"].get("msgtype") == "template_card"
        and e["body"].get("touser") == userid
    ]


def applicant_told(sandbox: SandboxClient, subject: str) -> list[str]:
    userid = sandbox_wecom.userid_for(WORLD.person(APPLICANT))
    return [
        str(e["body"]["text"]["content"])
        for e in entries(sandbox, "wecom", subject)
        if e["body"].get("msgtype") == "text" and e["body"].get("touser") == userid
    ]


def finishes(sandbox: SandboxClient) -> list[Mapping[str, Any]]:
    """Every bpm/workitem/finish Seeyon accepted through its API."""
    return [e for e in sandbox.ledger("seeyon") if str(e["endpoint"]).endswith(FINISH)]


def login_name(employee_no: str) -> str:
    """The Seeyon loginName of a person of the seeded world (the sandbox seeds it so)."""
    return WORLD.person(employee_no).email.split("@")[0]


def flow_state(sandbox: SandboxClient, summary_id: str) -> int:
    """The flow's state as Seeyon's REST API answers it (0 结束, 15 终止, 3/4 running)."""
    info = sandbox.info()["seeyon"]
    base, creds = str(info["base_url"]), info["credentials"]
    token = requests.post(
        f"{base}/seeyon/rest/token",
        json={"userName": creds["restUser"], "password": creds["restPassword"]},
        timeout=10,
    ).json()["id"]
    answer = requests.get(
        f"{base}/seeyon/rest/flow/state/{summary_id}", headers={"token": token}, timeout=10
    )
    return int(answer.json())


def press(sandbox: SandboxClient, card: Mapping[str, Any], key: str) -> None:
    sandbox.press(
        "wecom",
        {
            "kind": "button",
            "task_id": card["task_id"],
            "userid": sandbox_wecom.userid_for(WORLD.person(APPROVER)),
            "key": key,
        },
    )


# -- tests ------------------------------------------------------------------------------------
def test_a_seeyon_approval_becomes_one_wecom_card_for_its_approver(
    sandbox_env, sandbox, sandbox_worker
) -> None:
    summary_id, subject = new_flow(sandbox)

    run(sandbox_env)
    run(sandbox_env)  # nothing changed: nothing sent again

    [card] = cards(sandbox, subject)
    assert card["button_list"][0]["key"] == f"approve:{summary_id}"
    assert applicant_told(sandbox, subject) == []


def test_approve_on_the_wecom_card_finishes_the_workitem_in_seeyon_once_and_tells_the_applicant(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    summary_id, subject = new_flow(sandbox)
    run(sandbox_env)
    [card] = cards(sandbox, subject)
    before = len(finishes(sandbox))
    sandbox.fault("wecom", "duplicate_webhook")  # WeCom delivers the press twice

    press(sandbox, card, f"approve:{summary_id}")

    wait_for(lambda: flow_state(sandbox, summary_id) == 0, DEADLINE_S, what="the flow ended")
    run(sandbox_env)  # Seeyon sends no callbacks: the next pull reads the ended flow
    run(sandbox_env)  # and the one after it says nothing more
    made = finishes(sandbox)[before:]
    assert [m["body"]["data"]["comment_deal"]["attitude"] for m in made] == [2]
    assert [m["caller"] for m in made] == [login_name(APPROVER)]  # a token bound to the approver
    assert len(applicant_told(sandbox, subject)) == 1
    assert "Approved" in applicant_told(sandbox, subject)[0]


def test_reject_on_the_wecom_card_ends_the_flow_in_seeyon_and_tells_the_applicant(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    summary_id, subject = new_flow(sandbox)
    run(sandbox_env)
    [card] = cards(sandbox, subject)
    before = len(finishes(sandbox))

    press(sandbox, card, f"reject:{summary_id}")

    wait_for(lambda: flow_state(sandbox, summary_id) == 15, DEADLINE_S, what="the flow stopped")
    run(sandbox_env)
    run(sandbox_env)
    made = finishes(sandbox)[before:]
    assert [m["body"]["data"]["comment_deal"]["attitude"] for m in made] == [3]
    assert len(applicant_told(sandbox, subject)) == 1
    assert "Rejected" in applicant_told(sandbox, subject)[0]
