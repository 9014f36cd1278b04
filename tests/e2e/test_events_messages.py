"""End to end: a user posts in the IM (the sandbox's simulated user), the IM calls the webhook
service (`syncctl webhooks serve`, a real process), a real worker handles the event, and the
OA emulator's ledger shows the todos and project comments made, each exactly once. And the
shipped approval rule through the OA's change webhook: only an approved or rejected request
tells its applicant, once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.agora import callback_security as agora_security
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.state import deadletters, inbound
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import inbound_events
from tests.conftest import wait_for
from tests.e2e.spine import webhook_service

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
PROJECT = WORLD.projects[0]  # P001, whose group is "Project 1 group"
AUTHOR, ANN, BOB = PROJECT.member_nos[:3]
APPLICANT, FIRST, SECOND = "E00020", "E00021", "E00022"  # of the approvals
TODO = "/rest/ofs/ReceiveRequestInfoByJson"
COMMENT = "/api/proj/progress/comment"
DEADLINE_S = 60
AGORA_TODO_FLOW = "agora_important_messages_to_oa_todos"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=10, checkin_days=1) as client:
        client.store = SandboxStore(store_path(data))  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def webhooks(sandbox_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    """`syncctl webhooks serve` on a free port, with the OA, WeCom, Feishu and Agora calling
    it (WeCom sends callback cards only from an app with a callback URL)."""
    platforms = ("oa", "wecom", "feishu", "agora")
    with webhook_service(sandbox_env, sandbox, tmp_path / "webhooks.log", platforms) as url:
        yield url


@pytest.fixture
def mark(sandbox: SandboxClient) -> int:
    return sandbox.last_seq()


def store(sandbox: SandboxClient) -> SandboxStore:
    found: SandboxStore = sandbox.store  # type: ignore[attr-defined]
    return found


def feishu_chat(sandbox: SandboxClient, name: str) -> str:
    return str(store(sandbox).list("feishu", "chat", equals={"name": name})[0]["chat_id"])


def agora_group(sandbox: SandboxClient, name: str) -> str:
    return str(store(sandbox).list("agora", "group", equals={"groupname": name})[0]["groupid"])


def post_in_feishu(sandbox: SandboxClient, text: str, mentions: tuple[str, ...] = ()) -> Any:
    chat = feishu_chat(sandbox, "Project 1 group")
    action = {"kind": "message", "user": AUTHOR, "chat_id": chat, "text": text}
    return sandbox.press("feishu", {**action, "mentions": list(mentions)})


def oa_writes(sandbox: SandboxClient, endpoint: str, since: int) -> list[dict[str, Any]]:
    return [e["body"] for e in sandbox.ledger("oa", since_seq=since) if e["endpoint"] == endpoint]


def receivers(sandbox: SandboxClient, since: int) -> list[str]:
    return sorted(str(body["receiver"]) for body in oa_writes(sandbox, TODO, since))


def open_letters(env: dict[str, str], flow: str) -> list[deadletters.DeadLetter]:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return deadletters.open_letters(conn, flow)
    finally:
        engine.dispose()


def handled(env: dict[str, str], connector: str, count: int) -> list[inbound.StoredEvent]:
    """The connector's inbound events, once `count` of them are handled by the worker."""
    engine = engine_for(env["DATABASE_URL"])

    def done() -> list[inbound.StoredEvent] | None:
        with engine.connect() as conn:
            ids = conn.execute(
                sa.select(inbound_events.c.id).where(inbound_events.c.connector == connector)
            ).scalars()
            rows = [row for i in list(ids) if (row := inbound.get(conn, i)) is not None]
        finished = [r for r in rows if r.status is not EventStatus.QUEUED]
        return rows if len(finished) >= count else None

    try:
        found: list[inbound.StoredEvent] = wait_for(
            done, DEADLINE_S, what=f"{count} handled event(s) of {connector}"
        )
    finally:
        engine.dispose()
    return found


def test_an_important_feishu_message_becomes_a_todo_for_each_mentioned_person(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    post_in_feishu(sandbox, "#important budget review moved to Friday", (ANN, BOB))

    wait_for(lambda: len(oa_writes(sandbox, TODO, mark)) >= 2, DEADLINE_S, what="two todos")
    [event] = handled(sandbox_env, "sandbox_feishu", 1)
    assert event.status is EventStatus.DONE
    assert receivers(sandbox, mark) == sorted([oa_user_id(ANN), oa_user_id(BOB)])


def test_an_important_feishu_message_mentioning_the_bot_makes_todos_for_people_only(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    post_in_feishu(sandbox, "#important the audit starts Monday", ("bot", ANN))

    [event] = handled(sandbox_env, "sandbox_feishu", 1)
    assert event.status is EventStatus.DONE
    assert receivers(sandbox, mark) == [oa_user_id(ANN)]
    assert open_letters(sandbox_env, "feishu_important_messages_to_oa_todos") == []


def test_a_decision_in_a_project_group_reaches_the_oa_project_record_once(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    sandbox.fault("feishu", "duplicate_webhook")  # Feishu delivers the event twice

    pressed = post_in_feishu(sandbox, "#decision we ship on Friday")

    assert len(pressed["delivered"]) == 2
    wait_for(lambda: oa_writes(sandbox, COMMENT, mark), DEADLINE_S, what="a project comment")
    [event] = handled(sandbox_env, "sandbox_feishu", 1)  # the second delivery was not recorded
    assert event.status is EventStatus.DONE
    [comment] = oa_writes(sandbox, COMMENT, mark)
    record = store(sandbox).get("oa", "progress", comment["recordId"])
    assert record is not None
    assert record["projectId"] == PROJECT.id
    assert record["comments"][-1]["authorId"] == oa_user_id(AUTHOR)


def test_an_ordinary_feishu_message_reaches_nothing_in_the_oa(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    post_in_feishu(sandbox, "lunch at noon?", (ANN,))

    [event] = handled(sandbox_env, "sandbox_feishu", 1)
    assert event.status is EventStatus.IGNORED
    assert sandbox.ledger("oa", since_seq=mark) == []


def test_an_important_agora_group_message_becomes_todos_for_its_mentions(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    sandbox.press(
        "agora",
        {
            "kind": "message",
            "from": AUTHOR.lower(),
            "to": agora_group(sandbox, "Project 1 group"),
            "chat_type": "groupchat",
            "msg": "#important the demo moved to Monday",
            "ext": {"em_at_list": [ANN.lower(), BOB.lower()]},
        },
    )

    wait_for(lambda: len(oa_writes(sandbox, TODO, mark)) >= 2, DEADLINE_S, what="two todos")
    [event] = handled(sandbox_env, "sandbox_agora", 1)
    assert event.status is EventStatus.DONE
    assert receivers(sandbox, mark) == sorted([oa_user_id(ANN), oa_user_id(BOB)])


def post_in_agora(sandbox: SandboxClient, text: str, **message: Any) -> Any:
    return sandbox.press(
        "agora", {"kind": "message", "from": AUTHOR.lower(), "msg": text, **message}
    )


def agora_callback(env: dict[str, str], **fields: Any) -> dict[str, Any]:
    """A post-delivery callback as Agora signs it (the sandbox's own crypto), sent now."""
    app_key = f"{env['SANDBOX_AGORA_ORG_NAME']}#{env['SANDBOX_AGORA_APP_NAME']}"
    call_id, stamp = f"{app_key}_{uuid.uuid4()}", int(time.time() * 1000)
    secret = env["SANDBOX_AGORA_CALLBACK_SECRET"]
    return {
        "callId": call_id,
        "eventType": "chat",
        "timestamp": stamp,
        "msg_id": str(stamp),
        "securityVersion": "1.0.0",
        "security": agora_security(call_id, secret, stamp),
        "appkey": app_key,
        **fields,
    }


def test_an_echo_of_ours_replayed_with_an_important_body_makes_no_todo(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    # Agora reports the notifications we send back to us (from "admin"): acknowledged, ignored.
    echo = agora_callback(
        sandbox_env,
        chat_type="chat",
        to=AUTHOR.lower(),
        payload={"ext": {}, "bodies": [{"type": "txt", "msg": 'Your request "Leave": Approved.'}]},
        **{"from": "admin"},
    )
    url = f"{webhooks}/webhooks/sandbox_agora"
    assert requests.post(url, json=echo, timeout=10).status_code == 200
    # Whoever saw it sends its signed envelope again around a body of their own: the security
    # hash covers callId and timestamp only.
    group = agora_group(sandbox, "Project 1 group")
    forged = {
        **echo,
        "from": AUTHOR.lower(),
        "chat_type": "groupchat",
        "group_id": group,
        "to": group,
        "payload": {
            "ext": {"em_at_list": [ANN.lower()]},
            "bodies": [{"type": "txt", "msg": "#important approve the vendor's invoice"}],
        },
    }

    requests.post(url, json=forged, timeout=10)
    post_in_agora(
        sandbox,
        "#important the real one",
        to=group,
        chat_type="groupchat",
        ext={"em_at_list": [BOB.lower()]},
    )

    wait_for(lambda: oa_writes(sandbox, TODO, mark), DEADLINE_S, what="the genuine todo")
    rows = handled(sandbox_env, "sandbox_agora", 2)
    assert sorted((r.event.kind.value, r.status.value) for r in rows) == [
        ("message", "done"),  # the genuine message
        ("unhandled", "ignored"),  # the echo, whose callId the forgery could not take again
    ]
    assert receivers(sandbox, mark) == [oa_user_id(BOB)]


def test_an_important_one_to_one_agora_message_makes_its_todo_without_a_dead_letter(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    post_in_agora(
        sandbox, "#important sign the contract", to=ANN.lower(), ext={"em_at_list": [ANN.lower()]}
    )

    wait_for(lambda: oa_writes(sandbox, TODO, mark), DEADLINE_S, what="a todo")
    [event] = handled(sandbox_env, "sandbox_agora", 1)
    assert event.status is EventStatus.DONE
    [todo] = oa_writes(sandbox, TODO, mark)
    assert str(todo["receiver"]) == oa_user_id(ANN)
    assert open_letters(sandbox_env, AGORA_TODO_FLOW) == []


def test_an_ordinary_one_to_one_agora_message_is_ignored_not_dead_lettered(
    sandbox_env, sandbox, webhooks, sandbox_worker, mark
) -> None:
    post_in_agora(sandbox, "lunch at noon?", to=ANN.lower())

    [event] = handled(sandbox_env, "sandbox_agora", 1)
    assert event.status is EventStatus.IGNORED
    assert open_letters(sandbox_env, AGORA_TODO_FLOW) == []
    assert sandbox.ledger("oa", since_seq=mark) == []


# -- approvals: only approved / rejected transitions notify -------------------------------------
def applicant_told(sandbox: SandboxClient, title: str) -> list[dict[str, Any]]:
    """The WeCom text messages to the applicant about the request titled `title`."""
    userid = sandbox_wecom.userid_for(WORLD.person(APPLICANT))
    return [
        e["body"]
        for e in sandbox.ledger("wecom")
        if e["body"].get("msgtype") == "text"
        and e["body"].get("touser") == userid
        and title in json.dumps(e["body"], ensure_ascii=False)
    ]


def settled(env: dict[str, str], at_least: int) -> None:
    """Wait until the worker has handled every recorded OA event, and there are that many."""
    engine = engine_for(env["DATABASE_URL"])

    def done() -> bool:
        with engine.connect() as conn:
            statuses = list(
                conn.execute(
                    sa.select(inbound_events.c.status).where(
                        inbound_events.c.connector == "sandbox_oa"
                    )
                ).scalars()
            )
        return len(statuses) >= at_least and EventStatus.QUEUED.value not in statuses

    try:
        wait_for(done, DEADLINE_S, what=f"{at_least} OA events handled")
    finally:
        engine.dispose()


def test_only_a_decided_approval_tells_its_applicant_and_only_once(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    passed_on = sandbox.create_approval(
        applicant=APPLICANT, approvers=[FIRST, SECOND], title="Leave passed on, then withdrawn"
    )
    sandbox.transition(passed_on["requestId"], "approve", FIRST)  # pending, at SECOND now
    sandbox.transition(passed_on["requestId"], "revoke", APPLICANT)
    sandbox.fault("oa", "duplicate_webhook")  # the OA delivers the rejection twice
    rejected = sandbox.create_approval(
        applicant=APPLICANT, approvers=[FIRST], title="Leave turned down"
    )
    sandbox.transition(rejected["requestId"], "reject", FIRST)

    wait_for(lambda: applicant_told(sandbox, "Leave turned down"), DEADLINE_S, what="the rejection")
    settled(sandbox_env, at_least=5)
    [told] = applicant_told(sandbox, "Leave turned down")
    assert told["text"]["content"].startswith('Your request "Leave turned down": Rejected.')
    assert applicant_told(sandbox, "Leave passed on, then withdrawn") == []
    assert second_deliveries(sandbox_env, "sandbox_oa") >= 2  # the duplicates did arrive


def second_deliveries(env: dict[str, str], connector: str) -> int:
    """Deliveries the webhook service turned away as already seen (duplicates, replays)."""
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            counted = inbound.refusals(conn)
    finally:
        engine.dispose()
    return sum(n for (name, _), n in counted.items() if name == connector)
