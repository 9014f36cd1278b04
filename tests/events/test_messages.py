"""Chat messages into the OA, handled from recorded events against the real sandbox,
PostgreSQL and Redis: important messages become OA todos for the people they mention,
decisions in project groups are appended to the OA project record, and nothing is made twice.

Each event is what the webhook service records for a delivery (`inbound.record`), handled as
the `events.handle` task does (`events.handle`); the OA emulator's ledger shows what reached it.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, running_sandbox, seeded_store
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.registry import free_port_base
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.settings import load_settings
from sync_pipeline.state import deadletters, effects, inbound
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.migrate import migrate
from tests.conftest import ROOT

SEED = 7
WORLD = World(SEED)
PROJECT = WORLD.projects[0]  # P001; its group is "Project 1 group"
TODO = "/rest/ofs/ReceiveRequestInfoByJson"
COMMENT = "/api/proj/progress/comment"
TODO_FLOW = "feishu_important_messages_to_oa_todos"
DECISION_FLOW = "feishu_project_decisions_to_oa"
LEAVER = "E00060"  # has left the OA in this module's sandbox: no OA account
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    """One seeded sandbox server for the module; each test reads the ledger after its mark."""
    data = tmp_path_factory.mktemp("sandbox")
    port_base = free_port_base()
    store = seeded_store(data, port_base, seed=SEED, approvals=10, checkin_days=1)
    store.conn().execute(
        "DELETE FROM objects WHERE platform = 'oa' AND kind = 'user' AND id = ?",
        (oa_user_id(LEAVER),),
    )
    with running_sandbox(data, port_base) as client:
        client.store = store  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def rt(service_env: dict[str, str], sandbox: SandboxClient) -> Iterator[Runtime]:
    """A worker's runtime on this test's PostgreSQL schema and Redis db, with the shipped
    config pointed at the sandbox."""
    migrate(service_env["DATABASE_URL"])
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}
    runtime = build_runtime(load_settings(env), env)
    yield runtime
    runtime.session.close()
    runtime.redis.close()
    runtime.engine.dispose()
    gc.collect()  # migrate()'s engine holds its connection until collected


@pytest.fixture
def mark(sandbox: SandboxClient) -> int:
    return sandbox.last_seq()


def store(sandbox: SandboxClient) -> SandboxStore:
    found: SandboxStore = sandbox.store  # type: ignore[attr-defined]
    return found


def open_id(sandbox: SandboxClient, employee_no: str) -> str:
    users = store(sandbox).list("feishu", "user", equals={"employee_no": employee_no})
    return str(users[0]["open_id"])


def chat_id(sandbox: SandboxClient, name: str) -> str:
    return str(store(sandbox).list("feishu", "chat", equals={"name": name})[0]["chat_id"])


def feishu_message(
    sandbox: SandboxClient,
    text: str,
    *,
    sender: str = PROJECT.member_nos[0],
    mentions: tuple[str, ...] = (),
    group: str | None = "Project 1 group",
    message_id: str | None = None,
    event_id: str | None = None,
) -> InboundEvent:
    """What the webhook service decodes from Feishu's im.message.receive_v1."""
    number = next(_ids)
    message_id = message_id or f"om_test{number:04d}"
    return InboundEvent(
        connector="sandbox_feishu",
        vendor="feishu",
        event_id=event_id or f"ev_{message_id}_{number}",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "message_id": message_id,
            "sender": open_id(sandbox, sender),
            "chat_id": chat_id(sandbox, group) if group else "oc_p2p",
            "chat_type": "group" if group else "direct",
            "text": text,
            "flags": [word[1:].lower() for word in text.split() if word.startswith("#")],
            "mentions": [open_id(sandbox, no) for no in mentions],
            "sent_at": "2026-03-02T09:30:00Z",
        },
    )


def deliver(rt: Runtime, event: InboundEvent) -> EventStatus:
    """Record the delivery as the webhook service does, then handle it as the task does."""
    return handled(rt, event).status


def handled(rt: Runtime, event: InboundEvent) -> inbound.StoredEvent:
    """The event's row once handled: its status and the account of what was done."""
    with rt.engine.begin() as conn:
        row_id = inbound.record(conn, event)
    assert row_id is not None, "the webhook service would have dropped this duplicate"
    events.handle(rt, row_id)
    with rt.engine.connect() as conn:
        stored = inbound.get(conn, row_id)
    assert stored is not None
    return stored


def writes(sandbox: SandboxClient, endpoint: str, since: int) -> list[dict[str, Any]]:
    return [e["body"] for e in sandbox.ledger("oa", since_seq=since) if e["endpoint"] == endpoint]


def todo_receivers(sandbox: SandboxClient, since: int) -> list[str]:
    return sorted(str(body["receiver"]) for body in writes(sandbox, TODO, since))


def open_letters(rt: Runtime, flow: str) -> list[deadletters.DeadLetter]:
    with rt.engine.connect() as conn:
        return deadletters.open_letters(conn, flow)


# -- important messages -> OA todos ---------------------------------------------------------
def test_an_important_message_makes_one_oa_todo_per_mentioned_person(rt, sandbox, mark) -> None:
    ann, bob = PROJECT.member_nos[1], PROJECT.member_nos[2]
    event = feishu_message(sandbox, "#important budget review moved", mentions=(ann, bob))

    status = deliver(rt, event)

    assert status is EventStatus.DONE
    assert todo_receivers(sandbox, mark) == sorted([oa_user_id(ann), oa_user_id(bob)])
    [first, _] = writes(sandbox, TODO, mark)
    assert first["flowid"] == event.data["message_id"]
    assert first["creator"] == oa_user_id(PROJECT.member_nos[0])
    assert first["requestname"] == "#important budget review moved"


def test_a_message_naming_a_configured_keyword_makes_todos_too(rt, sandbox, mark) -> None:
    ann = PROJECT.member_nos[1]

    deliver(rt, feishu_message(sandbox, "the deadline is Friday", mentions=(ann,)))

    assert todo_receivers(sandbox, mark) == [oa_user_id(ann)]


def test_an_ordinary_message_makes_nothing_and_is_ignored(rt, sandbox, mark) -> None:
    event = feishu_message(sandbox, "lunch at noon?", mentions=(PROJECT.member_nos[1],))

    status = deliver(rt, event)

    assert status is EventStatus.IGNORED
    assert sandbox.ledger("oa", since_seq=mark) == []


def test_an_ordinary_message_from_someone_without_an_oa_account_is_no_dead_letter(
    rt, sandbox, mark
) -> None:
    status = deliver(rt, feishu_message(sandbox, "see you", sender=LEAVER, mentions=(LEAVER,)))

    assert status is EventStatus.IGNORED
    assert open_letters(rt, TODO_FLOW) == []


def test_the_same_message_delivered_twice_makes_each_todo_once(rt, sandbox, mark) -> None:
    ann, bob = PROJECT.member_nos[1], PROJECT.member_nos[2]
    first = feishu_message(sandbox, "#important ship it", mentions=(ann, bob))
    # A second delivery under another event id (a vendor retry the webhook's dedupe missed).
    second = feishu_message(
        sandbox, "#important ship it", mentions=(ann, bob), message_id=first.data["message_id"]
    )

    deliver(rt, first)
    deliver(rt, second)

    assert todo_receivers(sandbox, mark) == sorted([oa_user_id(ann), oa_user_id(bob)])
    with rt.engine.connect() as conn:
        made = effects.done_for_source(conn, TODO_FLOW, first.data["message_id"], "todo")
    assert sorted(str(e.recipient) for e in made) == sorted([oa_user_id(ann), oa_user_id(bob)])


def test_a_redelivered_task_finds_the_event_handled_and_does_nothing(rt, sandbox, mark) -> None:
    event = feishu_message(sandbox, "#important", mentions=(PROJECT.member_nos[1],))
    with rt.engine.begin() as conn:
        row_id = inbound.record(conn, event)
    assert row_id is not None
    events.handle(rt, row_id)

    again = events.handle(rt, row_id)

    assert again is EventStatus.DONE
    assert len(writes(sandbox, TODO, mark)) == 1


def test_a_mention_without_an_oa_account_is_a_dead_letter_and_the_rest_get_todos(
    rt, sandbox, mark
) -> None:
    ann = PROJECT.member_nos[1]
    event = feishu_message(sandbox, "#important read this", mentions=(ann, LEAVER))

    status = deliver(rt, event)

    assert status is EventStatus.DONE
    assert todo_receivers(sandbox, mark) == [oa_user_id(ann)]
    [letter] = open_letters(rt, TODO_FLOW)
    assert letter.source_id == event.data["message_id"]
    assert letter.reason == (
        f"mentioned: no oa user for feishu user {open_id(sandbox, LEAVER)} (employee {LEAVER})"
    )


def test_an_important_message_from_someone_without_an_oa_account_is_a_dead_letter(
    rt, sandbox, mark
) -> None:
    event = feishu_message(sandbox, "#important", sender=LEAVER, mentions=(PROJECT.member_nos[1],))

    deliver(rt, event)

    assert writes(sandbox, TODO, mark) == []
    [letter] = open_letters(rt, TODO_FLOW)
    assert letter.reason == (
        f"no oa user for feishu user {open_id(sandbox, LEAVER)} (employee {LEAVER})"
    )


# -- decisions in project groups -> the OA project record --------------------------------------
def test_a_decision_in_a_project_group_is_appended_to_that_projects_record(
    rt, sandbox, mark
) -> None:
    status = deliver(rt, feishu_message(sandbox, "#decision we ship on Friday"))

    assert status is EventStatus.DONE
    [comment] = writes(sandbox, COMMENT, mark)
    record = store(sandbox).get("oa", "progress", comment["recordId"])
    assert record is not None
    assert record["projectId"] == PROJECT.id
    made = record["comments"][-1]
    assert made["authorId"] == oa_user_id(PROJECT.member_nos[0])
    assert made["content"].startswith("Decision in Project 1 group: #decision we ship on Friday")


def test_a_decision_outside_a_project_group_is_ignored(rt, sandbox, mark) -> None:
    engineering = WORLD.groups[0]  # a department's group: no project
    event = feishu_message(
        sandbox, "#decision pizza on Fridays", sender=engineering.member_nos[0], group=None
    )

    assert deliver(rt, event) is EventStatus.IGNORED
    department = feishu_message(
        sandbox, "#decision pizza", sender=engineering.member_nos[0], group=engineering.name
    )
    assert deliver(rt, department) is EventStatus.IGNORED
    assert sandbox.ledger("oa", since_seq=mark) == []


def test_a_decision_delivered_twice_is_appended_once(rt, sandbox, mark) -> None:
    first = feishu_message(sandbox, "#decision freeze the API")
    second = feishu_message(
        sandbox, "#decision freeze the API", message_id=first.data["message_id"]
    )

    deliver(rt, first)
    deliver(rt, second)

    assert len(writes(sandbox, COMMENT, mark)) == 1


def test_an_important_decision_mentioning_people_goes_to_both_flows(rt, sandbox, mark) -> None:
    ann = PROJECT.member_nos[1]
    event = feishu_message(sandbox, "#decision #important new scope", mentions=(ann,))

    stored = handled(rt, event)

    assert todo_receivers(sandbox, mark) == [oa_user_id(ann)]
    assert len(writes(sandbox, COMMENT, mark)) == 1
    assert stored.error == (
        f"{TODO_FLOW}: 1 written, 0 dead-lettered; {DECISION_FLOW}: 1 written, 0 dead-lettered"
    )


# -- Agora Chat ----------------------------------------------------------------------------------
AGORA_TODO_FLOW = "agora_important_messages_to_oa_todos"


def agora_message(text: str, *, group: str | None, mentions: tuple[str, ...] = ()) -> InboundEvent:
    """What the webhook service decodes from Agora's post-delivery callback: a one-to-one
    message (group None) names no conversation."""
    number = next(_ids)
    return InboundEvent(
        connector="sandbox_agora",
        vendor="agora",
        event_id=f"app#key_call-{number}",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "message_id": f"12345678900{number:04d}",
            "sender": PROJECT.member_nos[0].lower(),
            "chat_id": group or "",
            "chat_type": "group" if group else "direct",
            "text": text,
            "flags": [word[1:].lower() for word in text.split() if word.startswith("#")],
            "mentions": [no.lower() for no in mentions],
            "sent_at": "2026-03-02T09:30:00Z",
        },
    )


def test_an_important_agora_group_message_makes_todos_for_its_mentions(rt, sandbox, mark) -> None:
    group = store(sandbox).list("agora", "group", equals={"groupname": "Project 1 group"})[0]
    ann, bob = PROJECT.member_nos[1], PROJECT.member_nos[2]
    event = agora_message("#important budget frozen", group=group["groupid"], mentions=(ann, bob))

    assert deliver(rt, event) is EventStatus.DONE
    assert todo_receivers(sandbox, mark) == sorted([oa_user_id(ann), oa_user_id(bob)])
    assert {w["pcurl"] for w in writes(sandbox, TODO, mark)} == {
        f"https://chat.example.com/conversations/{group['groupid']}"
    }


def test_an_agora_message_sent_again_under_a_new_call_and_time_makes_each_todo_once(
    rt, sandbox, mark
) -> None:
    group = store(sandbox).list("agora", "group", equals={"groupname": "Project 1 group"})[0]
    ann = PROJECT.member_nos[1]
    first = agora_message("#important budget frozen", group=group["groupid"], mentions=(ann,))
    # Agora re-sends a callback it counts as failed: a callId and a time of its own.
    again = agora_message("#important budget frozen", group=group["groupid"], mentions=(ann,))
    later = {"sent_at": "2026-03-02T09:30:07Z"}
    again = replace(again, data={**again.data, "message_id": first.data["message_id"], **later})

    deliver(rt, first)
    deliver(rt, again)

    assert todo_receivers(sandbox, mark) == [oa_user_id(ann)]


def test_an_ordinary_one_to_one_agora_message_is_ignored_not_dead_lettered(
    rt, sandbox, mark
) -> None:
    event = agora_message("lunch at noon?", group=None, mentions=(PROJECT.member_nos[1],))

    assert deliver(rt, event) is EventStatus.IGNORED
    assert open_letters(rt, AGORA_TODO_FLOW) == []
    assert sandbox.ledger("oa", since_seq=mark) == []


def test_an_important_one_to_one_agora_message_makes_its_todo_linking_to_the_app(
    rt, sandbox, mark
) -> None:
    ann = PROJECT.member_nos[1]

    status = deliver(rt, agora_message("#important sign it today", group=None, mentions=(ann,)))

    assert status is EventStatus.DONE
    assert open_letters(rt, AGORA_TODO_FLOW) == []
    [todo] = writes(sandbox, TODO, mark)
    assert (todo["receiver"], todo["pcurl"]) == (oa_user_id(ann), "https://chat.example.com/")


def test_a_message_from_a_connector_no_flow_reads_is_ignored(rt, sandbox, mark) -> None:
    event = InboundEvent(
        connector="sandbox_dingtalk",
        vendor="dingtalk",
        event_id="dt-1",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:30:00Z",
        data={"message_id": "m1", "sender": "u1", "chat_id": "", "chat_type": "direct"},
    )

    stored = handled(rt, event)

    assert stored.status is EventStatus.IGNORED
    assert stored.error == "no enabled flow takes messages from sandbox_dingtalk by webhook"
