"""End to end: the OA's change webhook and the IMs' card callbacks go through the webhook
service (`syncctl webhooks serve`, a real process) to a real worker, and the sandbox's ledgers
show every effect made exactly once: a card for a new approval, the OA decision of a press on
a WeCom, Feishu or DingTalk card, the card updated in place, and the applicant told, also when
the vendors deliver twice or out of order, or a webhook is lost and the schedule repairs it; and
a request decided in the OA's own web page updates the card too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox import dingtalk as sandbox_dingtalk
from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import inbound_events
from tests.conftest import next_second, syncctl, wait_for
from tests.e2e.spine import webhook_service
from tests.events.approval_scene import entries, oa_actions

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPLICANT, APPROVER = "E00010", "E00011"
DEADLINE_S = 90
CALLBACKS = ("oa", "wecom", "dingtalk", "feishu")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=10, checkin_days=1) as client:
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def webhooks(sandbox_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    """`syncctl webhooks serve` on a free port, every platform of the sandbox calling it."""
    with webhook_service(sandbox_env, sandbox, tmp_path / "webhooks.log", CALLBACKS) as url:
        yield url


# -- helpers ----------------------------------------------------------------------------------
def new_approval(
    sandbox: SandboxClient, approvers: tuple[str, ...] = (APPROVER,)
) -> tuple[str, str]:
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=list(approvers), title=title)
    return str(made["requestId"]), title


def wecom_card(sandbox: SandboxClient, title: str) -> Mapping[str, Any]:
    userid = sandbox_wecom.userid_for(WORLD.person(APPROVER))

    def found() -> Mapping[str, Any] | None:
        for entry in entries(sandbox, "wecom", title):
            body = entry["body"]
            if body.get("msgtype") == "template_card" and body.get("touser") == userid:
                card: Mapping[str, Any] = body["template_card"]
                return card
        return None

    card: Mapping[str, Any] = wait_for(found, DEADLINE_S, what=f"the WeCom card of {title}")
    return card


def applicant_told(sandbox: SandboxClient, title: str) -> list[Mapping[str, Any]]:
    userid = sandbox_wecom.userid_for(WORLD.person(APPLICANT))
    return [
        e
        for e in entries(sandbox, "wecom", title)
        if e["body"].get("msgtype") == "text" and e["body"].get("touser") == userid
    ]


def oa_events(env: dict[str, str], request_id: str) -> list[str]:
    """The statuses of the OA change events recorded for a request."""
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(inbound_events.c.status).where(
                        inbound_events.c.connector == "sandbox_oa",
                        inbound_events.c.data["source_id"].astext == request_id,
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def settled(env: dict[str, str]) -> None:
    """Wait until the worker has handled every recorded event (none left queued)."""
    engine = engine_for(env["DATABASE_URL"])

    def none_queued() -> bool:
        with engine.connect() as conn:
            statuses = list(conn.execute(sa.select(inbound_events.c.status)).scalars())
        return bool(statuses) and EventStatus.QUEUED.value not in statuses

    try:
        wait_for(none_queued, DEADLINE_S, what="every event handled")
    finally:
        engine.dispose()


# -- the OA's change webhook --------------------------------------------------------------------
def test_a_new_approval_reaches_its_approver_as_a_card_through_the_oa_webhook(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    sandbox.fault("oa", "duplicate_webhook")  # the OA delivers every change twice

    request_id, title = new_approval(sandbox)

    card = wecom_card(sandbox, title)
    settled(sandbox_env)
    assert card["button_list"][0]["key"] == f"approve:{request_id}"
    cards = [e for e in entries(sandbox, "wecom", title) if e["endpoint"] == "message/send"]
    assert len(cards) == 1
    shown = syncctl("status", "--json", env=sandbox_env)
    [flow] = [f for f in json.loads(shown.stdout) if f["flow"] == "approvals_to_wecom"]
    assert (flow["last_run"], flow["cursor"]) == (None, None)  # no pull ran, none moved
    assert flow["last_event"]["trigger"] == "webhook"


def test_webhooks_out_of_order_end_in_the_oas_final_state(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    sandbox.fault("oa", "out_of_order", params={"delay_ms": 3000})
    request_id, title = new_approval(sandbox)  # its "created" webhook is held back ...
    sandbox.clear_faults("oa")
    sandbox.transition(request_id, "approve", by=APPROVER)  # ... and overtaken by "approved"

    wait_for(lambda: applicant_told(sandbox, title), DEADLINE_S, what="the applicant told")
    wait_for(
        lambda: len(oa_events(sandbox_env, request_id)) == 2, DEADLINE_S, what="the late webhook"
    )
    settled(sandbox_env)

    sends = [e for e in entries(sandbox, "wecom", title) if e["endpoint"] == "message/send"]
    assert len(sends) == 1  # the result only: nobody is asked to decide a decided request
    assert len(applicant_told(sandbox, title)) == 1


def test_an_approval_whose_webhook_was_lost_is_caught_by_the_next_run(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    sandbox.settings("oa", {"webhook_url": "http://127.0.0.1:1/lost"})
    request_id, title = new_approval(sandbox)
    next_second()

    result = syncctl("run", "approvals_to_wecom", "--wait", "--timeout", "120", env=sandbox_env)

    assert result.returncode == 0, result.stdout + result.stderr
    card = wecom_card(sandbox, title)
    assert card["button_list"][0]["key"] == f"approve:{request_id}"
    assert oa_events(sandbox_env, request_id) == []  # nothing came by webhook


def test_a_request_approved_in_the_oas_web_page_updates_the_wecom_card_to_say_who_approved(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    request_id, title = new_approval(sandbox)
    wecom_card(sandbox, title)
    mark = sandbox.last_seq()
    userid = sandbox_wecom.userid_for(WORLD.person(APPROVER))

    sandbox.transition(request_id, "approve", by=APPROVER)  # in the OA, not on the card

    def updates() -> list[Mapping[str, Any]]:
        return [
            e["body"]
            for e in sandbox.ledger("wecom", since_seq=mark)
            if e["endpoint"] == "message/update_template_card" and e["body"]["userids"] == [userid]
        ]

    wait_for(updates, DEADLINE_S, what="the card updated")
    wait_for(lambda: applicant_told(sandbox, title), DEADLINE_S, what="the applicant told")
    settled(sandbox_env)
    name = WORLD.person(APPROVER).name
    assert [u["button"] for u in updates()] == [{"replace_name": f"Approved by {name}"}]
    assert len(applicant_told(sandbox, title)) == 1


# -- presses on cards -------------------------------------------------------------------------
def test_a_wecom_press_approves_in_the_oa_updates_the_card_and_tells_the_applicant(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    request_id, title = new_approval(sandbox)
    card = wecom_card(sandbox, title)
    sandbox.fault("wecom", "duplicate_webhook")  # WeCom delivers the press twice

    pressed = sandbox.press(
        "wecom",
        {
            "kind": "button",
            "task_id": card["task_id"],
            "userid": sandbox_wecom.userid_for(WORLD.person(APPROVER)),
            "key": f"approve:{request_id}",
        },
    )

    wait_for(lambda: applicant_told(sandbox, title), DEADLINE_S, what="the applicant told")
    settled(sandbox_env)
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    updates = [
        e["body"]
        for e in sandbox.ledger("wecom")
        if e["endpoint"] == "message/update_template_card"
        and e["body"]["response_code"] == pressed["response_code"]
    ]
    name = WORLD.person(APPROVER).name
    assert [u["button"]["replace_name"] for u in updates] == [f"Approved by {name}"]
    assert len(applicant_told(sandbox, title)) == 1


def test_a_feishu_press_approves_in_the_oa_and_patches_the_card(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    request_id, title = new_approval(sandbox)

    def card() -> Mapping[str, Any] | None:
        sent = [e for e in entries(sandbox, "feishu", title) if e["body"].get("msg_type")]
        return sent[0]["body"] if sent else None

    message = wait_for(card, DEADLINE_S, what="the Feishu card")

    sandbox.press(
        "feishu",
        {
            "kind": "card_action",
            "message_id": message["message_id"],
            "user": APPROVER,
            "value": {"action": "approve", "source_id": request_id},
        },
    )

    def patched() -> list[Mapping[str, Any]]:
        return [
            e
            for e in sandbox.ledger("feishu")
            if e["endpoint"].startswith("PATCH")
            and e["body"].get("message_id") == message["message_id"]
        ]

    wait_for(patched, DEADLINE_S, what="the Feishu card patched")
    settled(sandbox_env)
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    [patch] = patched()
    assert f"Approved by {WORLD.person(APPROVER).name}" in patch["body"]["content"]


def test_a_dingtalk_press_approves_in_the_oa_and_updates_the_card(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    request_id, title = new_approval(sandbox)
    next_second()
    result = syncctl("run", "approvals_to_dingtalk", "--wait", "--timeout", "120", env=sandbox_env)
    assert result.returncode == 0, result.stdout + result.stderr
    userid = sandbox_dingtalk.userid_for(WORLD.person(APPROVER))
    [created] = [
        e["body"]
        for e in entries(sandbox, "dingtalk", title)
        if e["endpoint"] == "card/instances/createAndDeliver" and e["body"]["spaceId"] == userid
    ]
    track = created["outTrackId"]

    sandbox.press(
        "dingtalk",
        {
            "kind": "card_action",
            "out_track_id": track,
            "user_id": userid,
            "action_id": "approve",
            "params": {"action": "approve", "source_id": request_id},
        },
    )

    def updated() -> list[Mapping[str, Any]]:
        return [
            e["body"]["cardData"]["cardParamMap"]
            for e in sandbox.ledger("dingtalk")
            if e["endpoint"] == "card/instances" and e["body"].get("outTrackId") == track
        ]

    wait_for(updated, DEADLINE_S, what="the DingTalk card updated")
    settled(sandbox_env)
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    [params] = updated()
    assert params["status_label"] == f"Approved by {WORLD.person(APPROVER).name}"
