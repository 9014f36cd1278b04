"""Planning `send: approval_center`: one write per approval state, following the instance the
id map knows, with no recipient of its own (its tasks name the approvers)."""

from __future__ import annotations

from typing import Any

from sync_pipeline.records import NotifyKind, Record, WriteOp
from sync_pipeline.stages.plan import NotifyRule, plan_writes

TO_CENTER = NotifyRule(when=None, kind=NotifyKind.APPROVAL_CENTER, to=None, once_per="stage")
TARGET = "sandbox_feishu/approval_center"


def mapped(stage: str = "pending|n1|ou_boss", **changes: Any) -> Record:
    payload: dict[str, Any] = {
        "title": "Annual leave",
        "status": "pending",
        "applicant": "ou_zhang",
        "approvers": ["ou_boss"],
        "stage": stage,
    }
    payload.update(changes)
    return Record("8812", "v1", "2026-03-02T09:30:00Z", payload)


def plan(*batch: Record, targets: dict[str, str] | None = None):
    return plan_writes("to_center", batch, (TO_CENTER,), targets or {}, target=TARGET)


def test_a_first_sync_creates_one_instance_with_no_recipient() -> None:
    [write] = plan(mapped())

    assert write.op is WriteOp.CREATE
    assert write.target_id is None
    assert write.notification.kind == "approval_center"
    assert write.notification.to is None
    assert write.notification.content["approvers"] == ["ou_boss"]


def test_a_later_state_follows_the_instance_the_id_map_holds() -> None:
    [write] = plan(mapped("pending|n2|ou_cfo"), targets={"8812": "handle-1"})

    assert write.op is WriteOp.UPDATE
    assert write.target_id == "handle-1"


def test_each_state_of_the_approval_gets_its_own_key_and_the_same_state_the_same_key() -> None:
    first = plan(mapped("pending|n1|ou_boss"))[0].effect_key
    again = plan(mapped("pending|n1|ou_boss", title="Annual leave, edited"))[0].effect_key
    moved = plan(mapped("pending|n2|ou_cfo"))[0].effect_key

    assert first == again
    assert moved != first
