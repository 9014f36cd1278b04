"""The shipped flows' rules, at the stage level: only approved / rejected approval transitions
notify (and once), important messages become todos for the people they mention, and decisions
in project groups go to the OA project record."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.config.loader import Config, load_config
from sync_pipeline.pipeline.events.messages import (
    MESSAGE_VERSION,
    message_record,
    wanted,
    without_unmapped,
)
from sync_pipeline.records import EventKind, InboundEvent, Record
from sync_pipeline.stages.plan import plan_writes
from sync_pipeline.stages.rules import filter_batch
from sync_pipeline.stages.transform import transform
from tests.unit.config.test_examples import CONFIG_DIR, IM_VENDORS, SANDBOX_ENV, Directory

TODOS = "feishu_important_messages_to_oa_todos"
DECISIONS = "feishu_project_decisions_to_oa"
PROJECT_GROUP = {"id": "oc_p1", "name": "Project 1 group", "description": "Project P001"}
TEAM_GROUP = {"id": "oc_eng", "name": "Engineering team", "description": "Engineering team"}


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(CONFIG_DIR, SANDBOX_ENV)


class People:
    """Feishu user "ou_n" is OA user "n"; ou_199 has no OA account."""

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        number = user_id.removeprefix("ou_")
        return None if number == "199" else number

    def employee_no(self, system: str, user_id: str) -> str | None:
        return f"E{int(user_id.removeprefix('ou_')):05d}"


# -- approvals: only approved / rejected transitions notify, once --------------------------------
def approval(status: str, version: int, approvers: list[str]) -> Record:
    payload: dict[str, Any] = {
        "id": "8812",
        "title": "Leave",
        "template": "leave",
        "status": status,
        "applicant": "105",
        "current_approvers": approvers,
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": f"2026-03-02T09:{version:02d}:00Z",
        "form": {},
        "url": "http://127.0.0.1:18601/r/8812",
    }
    return Record("8812", payload["updated_at"], payload["updated_at"], payload)


def effects_over(config: Config, flow_name: str, history: list[Record]) -> dict[str, Any]:
    """Every distinct effect the flow plans as the approval moves through `history` (the
    effects table makes each key once, however often it is planned)."""
    flow = config.flows[flow_name]
    made: dict[str, Any] = {}
    for record in history:
        mapped = transform([record], flow.mapping, Directory())
        kept = filter_batch(mapped.records, flow.rules, {}).kept
        for write in plan_writes(flow.name, kept, flow.notify, {}, target="im/messages"):
            made.setdefault(write.effect_key, (record.payload["status"], write.notification))
    return made


HISTORIES = {
    "approved after an edit": (
        [("pending", ["101"]), ("pending", ["101"]), ("approved", []), ("approved", [])],
        ["approved"],
    ),
    "rejected at the second level": (
        [("pending", ["101"]), ("pending", ["102"]), ("rejected", [])],
        ["rejected"],
    ),
    "revoked while pending": ([("pending", ["101"]), ("revoked", [])], []),
    # The applicant heard of the approval; its revocation afterwards tells nobody anything.
    "approved, then revoked": (
        [("pending", ["101"]), ("approved", []), ("revoked", [])],
        ["approved"],
    ),
    "still pending": ([("pending", ["101"]), ("pending", ["101"])], []),
}


@pytest.mark.parametrize("vendor", IM_VENDORS)
@pytest.mark.parametrize("name", list(HISTORIES))
def test_only_an_approved_or_rejected_transition_notifies_the_applicant_once(
    config, vendor, name
) -> None:
    steps, notified = HISTORIES[name]
    history = [approval(status, n, approvers) for n, (status, approvers) in enumerate(steps)]

    made = effects_over(config, f"approvals_to_{vendor}", history)

    to_applicant = [status for status, write in made.values() if write.to == f"{vendor}-105"]
    assert to_applicant == notified


@pytest.mark.parametrize("vendor", IM_VENDORS)
def test_a_revoked_approval_notifies_nobody(config, vendor) -> None:
    made = effects_over(config, f"approvals_to_{vendor}", [approval("revoked", 1, [])])

    assert made == {}


@pytest.mark.parametrize("vendor", IM_VENDORS)
def test_each_approver_hears_of_a_pending_approval_once_however_often_it_changes(
    config, vendor
) -> None:
    history = [approval("pending", 1, ["101"]), approval("pending", 2, ["101"])]
    history.append(approval("pending", 3, ["101", "102"]))  # a co-approver added

    made = effects_over(config, f"approvals_to_{vendor}", history)

    assert sorted(write.to for _, write in made.values()) == [f"{vendor}-101", f"{vendor}-102"]


# -- messages -----------------------------------------------------------------------------------
def message(
    text: str,
    *,
    mentions: tuple[str, ...] = (),
    sender: str = "ou_103",
    group_info: dict[str, str] | None = PROJECT_GROUP,
) -> Record:
    data = {
        "message_id": "om_1",
        "sender": sender,
        "chat_id": group_info["id"] if group_info else "oc_p2p",
        "chat_type": "group" if group_info else "direct",
        "text": text,
        "flags": [w[1:] for w in text.split() if w.startswith("#")],
        "mentions": list(mentions),
        "sent_at": "2026-03-02T09:30:00Z",
    }
    event = InboundEvent(
        "sandbox_feishu", "feishu", "ev1", EventKind.MESSAGE, "2026-03-02T09:30:00Z", data
    )
    record = message_record(event)
    return Record(
        record.source_id,
        record.version,
        record.cursor_value,
        {**record.payload, "group_info": group_info},
    )


def planned(config: Config, flow_name: str, record: Record) -> list[tuple[str, str | None]]:
    """What the flow does with a message: [] if its rules do not want it."""
    flow = config.flows[flow_name]
    if not wanted(flow, record, People()):
        return []
    cleaned, _ = without_unmapped(flow, record, People())
    mapped = transform([cleaned], flow.mapping, People())
    assert mapped.dead == ()
    writes = plan_writes(flow.name, mapped.records, flow.notify, {}, target="oa/x")
    return [(w.notification.kind, w.notification.to) for w in writes]


@pytest.mark.parametrize(
    "text", ["#important please read", "the deadline moved", "URGENT: call me", "这个很紧急"]
)
def test_an_important_message_is_a_todo_for_each_person_it_mentions(config, text) -> None:
    record = message(text, mentions=("ou_101", "ou_102"))

    assert planned(config, TODOS, record) == [("todo", "101"), ("todo", "102")]


def test_an_ordinary_message_makes_no_todo(config) -> None:
    assert planned(config, TODOS, message("lunch?", mentions=("ou_101",))) == []


def test_an_ordinary_message_from_someone_without_an_oa_account_is_not_wanted(config) -> None:
    record = message("lunch?", sender="ou_199", mentions=("ou_199",))

    assert not wanted(config.flows[TODOS], record, People())


def test_an_important_message_from_someone_without_an_oa_account_is_wanted(config) -> None:
    """... so the pipeline dead-letters it, naming the sender."""
    record = message("#important", sender="ou_199", mentions=("ou_101",))

    assert wanted(config.flows[TODOS], record, People())


def test_a_mention_without_an_oa_account_is_left_out_with_a_reason(config) -> None:
    record = message("#important", mentions=("ou_101", "ou_199", "ou_102"))

    cleaned, reasons = without_unmapped(config.flows[TODOS], record, People())

    assert cleaned.payload["mentions"] == ["ou_101", "ou_102"]
    assert reasons == ["mentioned: no oa user for feishu user ou_199 (employee E00199)"]


def test_a_todo_opens_the_chat_it_came_from(config) -> None:
    flow = config.flows[TODOS]
    record = message("#important", mentions=("ou_101",))

    [mapped] = transform([record], flow.mapping, People()).records

    assert mapped.payload["url"] == "https://applink.feishu.cn/client/chat/open?openChatId=oc_p1"
    assert mapped.payload["creator"] == "103"


def test_a_decision_in_a_project_group_is_one_comment_on_that_project(config) -> None:
    record = message("#decision ship Friday", mentions=("ou_101",))

    assert planned(config, DECISIONS, record) == [("project_comment", "P001")]


@pytest.mark.parametrize(
    ("text", "group_info"),
    [
        ("#decision pizza Fridays", TEAM_GROUP),  # not a project's group
        ("#decision pizza Fridays", None),  # a direct message
        ("we decided nothing", PROJECT_GROUP),  # not tagged
    ],
)
def test_other_messages_are_not_decisions_of_a_project(config, text, group_info) -> None:
    assert planned(config, DECISIONS, message(text, group_info=group_info)) == []


def test_a_message_event_becomes_the_canonical_message() -> None:
    data = {
        "message_id": "om_9",
        "sender": "ou_1",
        "chat_id": "oc_5",
        "chat_type": "group",
        "text": "hi @Ann",
        "flags": [],
        "mentions": ["ou_2", "ou_2", ""],
        "sent_at": "2026-03-02T09:30:00Z",
    }
    event = InboundEvent("c", "feishu", "e", EventKind.MESSAGE, "2026-03-02T09:31:00Z", data)

    record = message_record(event)

    assert (record.source_id, record.cursor_value) == ("om_9", "2026-03-02T09:30:00Z")
    assert record.version == MESSAGE_VERSION  # whatever delivery brought it
    assert record.payload == {
        "id": "om_9",
        "sender": "ou_1",
        "chat": "oc_5",
        "chat_type": "group",
        "group": "oc_5",
        "text": "hi @Ann",
        "flags": [],
        "mentions": ["ou_2"],
        "sent_at": "2026-03-02T09:30:00Z",
    }


def test_a_direct_message_has_no_group() -> None:
    data = {"message_id": "1", "sender": "u", "chat_id": "", "chat_type": "direct", "text": "x"}
    event = InboundEvent("c", "wecom", "e", EventKind.MESSAGE, "2026-03-02T09:31:00Z", data)

    record = message_record(event)

    assert (record.payload["chat"], record.payload["group"]) == (None, None)
    assert record.payload["sent_at"] == "2026-03-02T09:31:00Z"  # the event's time stands in
