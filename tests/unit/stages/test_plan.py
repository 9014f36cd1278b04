"""plan_writes: which notifications an approval change produces, with deterministic keys."""

from __future__ import annotations

import re
from typing import Any

from sync_pipeline.records import NotifyKind, Record, WriteOp
from sync_pipeline.stages import Template
from sync_pipeline.stages.plan import NotifyRule, effect_key, plan_writes
from sync_pipeline.stages.rules import Equals, In

CARD_TO_APPROVERS = NotifyRule(
    when=Equals("status", "pending"), kind=NotifyKind.CARD, to="approvers", once_per="status"
)
RESULT_TO_APPLICANT = NotifyRule(
    when=In("status", ("approved", "rejected")),
    kind=NotifyKind.MESSAGE,
    to="applicant",
    text=Template.parse('Your request "{title}": {status}.'),
    once_per="status",
)
RULES = (CARD_TO_APPROVERS, RESULT_TO_APPLICANT)
TARGET = "sandbox_wecom/messages"


def mapped(
    source_id: str = "8812", version: str = "2026-03-02T09:30:00Z", **changes: Any
) -> Record:
    """An approval after transform: users are WeCom ids."""
    payload: dict[str, Any] = {
        "title": "Annual leave",
        "text": "Annual leave: waiting for your decision",
        "url": "https://oa.example/r/8812",
        "status": "pending",
        "applicant": "zhangsan",
        "approvers": ["boss"],
    }
    payload.update(changes)
    return Record(source_id, version, version, payload)


def plan(
    *batch: Record, rules: tuple[NotifyRule, ...] = RULES, targets: dict[str, str] | None = None
):
    return plan_writes("approvals_to_wecom", batch, rules, targets or {}, target=TARGET)


def test_a_new_pending_approval_sends_a_card_to_each_current_approver() -> None:
    writes = plan(mapped(approvers=["boss", "cfo"]))

    assert [(w.op, w.notification.kind, w.notification.to) for w in writes] == [
        (WriteOp.CREATE, "card", "boss"),
        (WriteOp.CREATE, "card", "cfo"),
    ]
    assert writes[0].notification.content["title"] == "Annual leave"
    assert writes[0].source_id == "8812"


def test_a_final_decision_sends_the_applicant_a_message_with_the_rules_text() -> None:
    [write] = plan(mapped(status="approved", approvers=[]))

    assert (write.notification.kind, write.notification.to) == ("message", "zhangsan")
    assert write.notification.content["text"] == 'Your request "Annual leave": approved.'


def test_a_change_that_matters_to_nobody_sends_nothing() -> None:
    assert plan(mapped(status="revoked", approvers=[])) == []


def test_the_effect_key_is_sha256_hex_of_flow_target_source_state_kind_and_recipient() -> None:
    [write] = plan(mapped())

    assert re.fullmatch(r"[0-9a-f]{64}", write.effect_key)
    assert write.effect_key == effect_key(
        "approvals_to_wecom", TARGET, "8812", "pending", "card", "boss"
    )


def test_a_redelivered_batch_derives_the_same_keys() -> None:
    batch = (mapped("1"), mapped("2", status="rejected"))

    assert [w.effect_key for w in plan(*batch)] == [w.effect_key for w in plan(*batch)]


def test_an_edit_that_keeps_the_state_keeps_the_key_so_nobody_is_notified_twice() -> None:
    before = plan(mapped(version="2026-03-02T09:30:00Z"))
    edited = plan(mapped(version="2026-03-02T11:00:00Z", title="Annual leave (4 days)"))

    assert [w.effect_key for w in edited] == [w.effect_key for w in before]


def test_a_new_approver_or_a_new_state_gets_a_new_key() -> None:
    [first] = plan(mapped(approvers=["boss"]))
    [forwarded] = plan(mapped(approvers=["cfo"]))
    [decided] = plan(mapped(status="approved", approvers=[]))

    assert len({first.effect_key, forwarded.effect_key, decided.effect_key}) == 3


def test_without_once_per_the_records_version_is_the_state() -> None:
    rule = NotifyRule(when=Equals("status", "pending"), kind=NotifyKind.CARD, to="approvers")

    [before] = plan(mapped(version="1"), rules=(rule,))
    [edited] = plan(mapped(version="2"), rules=(rule,))

    assert before.effect_key != edited.effect_key


def test_a_recipient_listed_twice_gets_one_write() -> None:
    assert len(plan(mapped(approvers=["boss", "boss"]))) == 1


def test_two_rules_producing_the_same_effect_give_one_write() -> None:
    also_pending = NotifyRule(
        when=In("status", ("pending",)), kind=NotifyKind.CARD, to="approvers", once_per="status"
    )

    assert len(plan(mapped(), rules=(CARD_TO_APPROVERS, also_pending))) == 1


def test_a_card_update_targets_the_card_the_id_map_knows() -> None:
    rule = NotifyRule(when=Equals("status", "approved"), kind=NotifyKind.UPDATE_CARD, to=None)

    [write] = plan(mapped(status="approved"), rules=(rule,), targets={"8812": "msg-77"})

    assert (write.op, write.target_id, write.notification.to) == (WriteOp.UPDATE, "msg-77", None)


def test_a_card_update_without_a_card_sent_plans_nothing() -> None:
    rule = NotifyRule(when=Equals("status", "approved"), kind=NotifyKind.UPDATE_CARD, to=None)

    assert plan(mapped(status="approved"), rules=(rule,)) == []
