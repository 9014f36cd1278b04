"""Stream "approval_center" of the Feishu and DingTalk connectors against their emulators: an
OA approval mirrored as an instance with tasks for its current approvers, kept current as it
moves (a new node, a decision, a withdrawal), each write safe to repeat."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import ConnectorContext, TargetView
from sync_pipeline.connectors.dingtalk import DingTalkConnector
from sync_pipeline.connectors.feishu import FeishuConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import DingTalkEmulator
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.errors import ConfigError, QuotaExhausted
from sync_pipeline.records import Notification, WriteOp, WriteRequest, WriteResult, WriteStatus
from tests.connectors.conftest import connector_config, seeded

STREAM = "approval_center"
CALLBACK = "http://127.0.0.1:9/webhooks/feishu?callback=quick_approval"


def content(applicant: str, approvers: list[str], **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "Annual leave, 3 days",
        "status": "pending",
        "url": "https://oa.example/r/8812",
        "node": "n1",
        "applicant": applicant,
        "approvers": approvers,
        "last_operator": None,
        "created_at": "2026-03-01T08:00:00Z",
        "updated_at": "2026-03-01T08:00:00Z",
        "form": {"days": 3, "reason": "family"},
    }
    payload.update(changes)
    return payload


def request(payload: dict[str, Any], key: str, target_id: str | None = None) -> WriteRequest:
    return WriteRequest(
        effect_key=key,
        source_id="8812",
        op=WriteOp.UPDATE if target_id else WriteOp.CREATE,
        notification=Notification.from_json(
            {"kind": "approval_center", "to": None, "content": payload}
        ),
        target_id=target_id,
    )


# -- Feishu ------------------------------------------------------------------------------------
@pytest.fixture
def feishu(serve, store: SandboxStore) -> FeishuEmulator:
    return seeded(serve, FeishuEmulator, store, approvals=10)


@pytest.fixture
def feishu_users(feishu: FeishuEmulator) -> list[str]:
    return [u["open_id"] for u in feishu.store.list("feishu", "user", limit=4)]


@pytest.fixture
def to_feishu(feishu: FeishuEmulator, ctx: ConnectorContext) -> FeishuConnector:
    creds = feishu.credentials()
    config = connector_config(
        Vendor.FEISHU,
        feishu,
        {
            "app_id": creds["app_id"],
            "app_secret": creds["app_secret"],
            "action_callback_token": creds["verification_token"],
            "action_callback_key": creds["encrypt_key"],
        },
        {"approval_center": {"approval_code": "oa", "action_callback_url": CALLBACK}},
    )
    return FeishuConnector(config, ctx)


def held(feishu: FeishuEmulator) -> dict[str, Any]:
    found = feishu.store.get("feishu", "external_instance", "8812")
    assert found is not None
    return found


def tasks(feishu: FeishuEmulator) -> list[tuple[str, str]]:
    return [(t["open_id"], t["status"]) for t in held(feishu)["task_list"]]


def sync_feishu(to_feishu: FeishuConnector, payload: dict[str, Any], key: str) -> WriteResult:
    target = "8812" if key != "k1" else None
    return to_feishu.write(STREAM, request(payload, key, target))


def test_feishu_a_new_approval_becomes_an_instance_with_a_task_per_approver(
    feishu, to_feishu, feishu_users
) -> None:
    applicant, boss, deputy = feishu_users[:3]

    result = sync_feishu(to_feishu, content(applicant, [boss, deputy]), "k1")

    assert result.status is WriteStatus.DONE
    assert result.target_id == "8812"
    instance = held(feishu)
    assert (instance["status"], instance["open_id"]) == ("PENDING", applicant)
    assert instance["form"] == [
        {"name": "days", "value": "3"},
        {"name": "reason", "value": "family"},
    ]
    assert tasks(feishu) == [(boss, "PENDING"), (deputy, "PENDING")]


def test_feishu_tasks_offer_quick_approval_naming_the_request_and_approver(
    feishu, to_feishu, feishu_users
) -> None:
    sync_feishu(to_feishu, content(feishu_users[0], [feishu_users[1]]), "k1")

    [task] = held(feishu)["task_list"]

    assert [c["action_type"] for c in task["action_configs"]] == ["APPROVE", "REJECT"]
    assert json.loads(task["action_context"]) == {"source_id": "8812", "open_id": feishu_users[1]}
    definition = feishu.store.get("feishu", "external_approval", "oa")
    assert definition is not None
    assert definition["external"]["action_callback_url"] == CALLBACK
    assert (
        definition["external"]["action_callback_token"]
        == feishu.credentials()["verification_token"]
    )


def test_feishu_a_new_node_closes_the_approvers_task_and_opens_the_next(
    feishu, to_feishu, feishu_users
) -> None:
    applicant, boss, cfo = feishu_users[:3]
    sync_feishu(to_feishu, content(applicant, [boss]), "k1")

    moved = content(
        applicant, [cfo], node="n2", last_operator=boss, updated_at="2026-03-01T09:00:00Z"
    )
    sync_feishu(to_feishu, moved, "k2")

    assert tasks(feishu) == [(boss, "APPROVED"), (cfo, "PENDING")]
    assert held(feishu)["status"] == "PENDING"


def test_feishu_a_decision_finishes_the_instance_and_closes_every_task(
    feishu, to_feishu, feishu_users
) -> None:
    applicant, boss, deputy = feishu_users[:3]
    sync_feishu(to_feishu, content(applicant, [boss, deputy]), "k1")

    rejected = content(
        applicant, [], status="rejected", last_operator=deputy, updated_at="2026-03-01T09:00:00Z"
    )
    sync_feishu(to_feishu, rejected, "k2")

    assert held(feishu)["status"] == "REJECTED"
    assert held(feishu)["end_time"] > 0
    assert tasks(feishu) == [(boss, "DONE"), (deputy, "REJECTED")]


def test_feishu_a_withdrawn_request_is_canceled(feishu, to_feishu, feishu_users) -> None:
    sync_feishu(to_feishu, content(feishu_users[0], [feishu_users[1]]), "k1")

    sync_feishu(to_feishu, content(feishu_users[0], [], status="revoked"), "k2")

    assert held(feishu)["status"] == "CANCELED"
    assert tasks(feishu) == [(feishu_users[1], "DONE")]


def test_feishu_the_same_write_twice_leaves_the_same_instance(
    feishu, to_feishu, feishu_users
) -> None:
    payload = content(feishu_users[0], [feishu_users[1]])
    sync_feishu(to_feishu, payload, "k1")
    first = held(feishu)

    sync_feishu(to_feishu, payload, "k1")

    again = held(feishu)
    assert {k: v for k, v in again.items() if k != "_synced_ms"} == {
        k: v for k, v in first.items() if k != "_synced_ms"
    }
    assert len(feishu.store.list("feishu", "external_instance")) == 1


def test_feishu_the_definition_is_made_once_per_process(feishu, to_feishu, feishu_users) -> None:
    sync_feishu(to_feishu, content(feishu_users[0], [feishu_users[1]]), "k1")
    sync_feishu(to_feishu, content(feishu_users[0], [feishu_users[2]], node="n2"), "k2")

    made = [e for e in feishu.store.ledger("feishu") if e.endpoint.endswith("external_approvals")]

    assert len(made) == 1


def test_feishu_an_approval_without_a_link_is_a_dead_letter(to_feishu, feishu_users) -> None:
    result = sync_feishu(to_feishu, content(feishu_users[0], [feishu_users[1]], url=None), "k1")

    assert result.status is WriteStatus.REJECTED
    assert "url" in result.reason


def test_feishu_an_approver_the_tenant_does_not_know_is_a_dead_letter(
    to_feishu, feishu_users
) -> None:
    result = sync_feishu(to_feishu, content(feishu_users[0], ["ou_nobody"]), "k1")

    assert result.status is WriteStatus.REJECTED
    assert "1390001" in result.reason


def test_feishu_without_an_approval_center_option_the_stream_is_a_config_error(
    feishu, ctx, feishu_users
) -> None:
    creds = feishu.credentials()
    config = connector_config(
        Vendor.FEISHU, feishu, {"app_id": creds["app_id"], "app_secret": creds["app_secret"]}
    )

    with pytest.raises(ConfigError, match="approval_center"):
        FeishuConnector(config, ctx).write(
            STREAM, request(content(feishu_users[0], [feishu_users[1]]), "k1")
        )


# -- Feishu, read back (connectors.base.ReadsBack: `syncctl reconcile`) ------------------------
def test_feishu_reads_back_what_a_write_left(feishu, to_feishu, feishu_users) -> None:
    applicant, boss, deputy = feishu_users[:3]
    written = request(content(applicant, [deputy, boss]), "k1")
    to_feishu.write(STREAM, written)

    found = to_feishu.read_back(STREAM, [written, replace(written, source_id="absent")])

    open_tasks = ",".join(sorted([boss, deputy]))
    expected = TargetView("8812", (("status", "PENDING"), ("open_tasks", open_tasks)))
    assert found == {"8812": expected}
    assert to_feishu.expected_view(STREAM, written) == expected


def test_feishus_check_names_only_the_instances_not_as_pushed(
    feishu, to_feishu, feishu_users
) -> None:
    payload = content(feishu_users[0], [feishu_users[1]])
    to_feishu.write(STREAM, request(payload, "k1"))
    later = request({**payload, "updated_at": "2026-03-02T08:00:00Z"}, "k2")
    unknown = replace(request(payload, "k3"), source_id="9999")

    assert to_feishu.suspects(STREAM, [request(payload, "k1")]) == set()
    assert to_feishu.suspects(STREAM, [later, unknown]) == {"8812", "9999"}


def test_feishu_a_removed_instance_is_neither_read_back_nor_listed(
    feishu, to_feishu, feishu_users
) -> None:
    to_feishu.write(STREAM, request(content(feishu_users[0], [feishu_users[1]]), "k1"))
    assert [v.target_id for v in to_feishu.list_back(STREAM, None, 50).views] == ["8812"]

    result = to_feishu.remove_back(STREAM, "8812", request({"at": "2026-03-03T08:00:00Z"}, "k2"))

    assert result.status is WriteStatus.DONE
    assert held(feishu)["status"] == "DELETED"
    assert to_feishu.read_back(STREAM, [request({}, "k1")]) == {}
    assert to_feishu.list_back(STREAM, None, 50).views == ()


# -- DingTalk ----------------------------------------------------------------------------------
@pytest.fixture
def ding(serve, store: SandboxStore) -> DingTalkEmulator:
    return seeded(serve, DingTalkEmulator, store, approvals=10)


@pytest.fixture
def ding_users(ding: DingTalkEmulator) -> list[str]:
    return [u["userid"] for u in ding.store.list("dingtalk", "user", limit=4)]


@pytest.fixture
def connect_ding(ding: DingTalkEmulator, ctx: ConnectorContext) -> Callable[[], DingTalkConnector]:
    creds = ding.credentials()
    config = connector_config(
        Vendor.DINGTALK,
        ding,
        {"app_key": creds["appKey"], "app_secret": creds["appSecret"]},
        {"agent_id": creds["agentId"], "process_centre": {"name": "OA approvals"}},
    )
    return lambda: DingTalkConnector(config, ctx)


def pc_tasks(ding: DingTalkEmulator) -> list[tuple[str, str, str]]:
    found = ding.store.list("dingtalk", "pc_task", time_field="created_ms")
    return [(t["userId"], t["status"], t["result"]) for t in found]


def pc_instance(ding: DingTalkEmulator) -> dict[str, Any]:
    [found] = ding.store.list("dingtalk", "pc_instance")
    return found


def test_dingtalk_a_new_approval_becomes_an_instance_with_a_todo_per_approver(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, deputy = ding_users[:3]

    result = connect_ding().write(STREAM, request(content(applicant, [boss, deputy]), "k1"))

    assert result.status is WriteStatus.DONE
    instance = pc_instance(ding)
    assert (instance["originatorUserId"], instance["status"]) == (applicant, "RUNNING")
    assert pc_tasks(ding) == [(boss, "RUNNING", ""), (deputy, "RUNNING", "")]
    assert json.loads(result.target_id or "")["i"] == instance["processInstanceId"]


def test_dingtalk_the_schema_is_found_by_name_before_one_is_saved(
    ding, connect_ding, ding_users
) -> None:
    connect_ding().write(STREAM, request(content(ding_users[0], [ding_users[1]]), "k1"))
    other = content(ding_users[0], [ding_users[1]])

    connect_ding().write(
        STREAM,
        WriteRequest(
            "k9", "8813", WriteOp.CREATE, Notification.from_json({"kind": STREAM, "content": other})
        ),
    )

    assert len(ding.store.list("dingtalk", "pc_schema")) == 1


def test_dingtalk_a_new_node_completes_the_approvers_todo_and_opens_the_next(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, cfo = ding_users[:3]
    first = connect_ding().write(STREAM, request(content(applicant, [boss]), "k1"))

    moved = content(applicant, [cfo], node="n2", last_operator=boss)
    connect_ding().write(STREAM, request(moved, "k2", first.target_id))

    assert pc_tasks(ding) == [(boss, "COMPLETED", "agree"), (cfo, "RUNNING", "")]


def test_dingtalk_a_decision_finishes_the_instance_and_cancels_the_others_todos(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, deputy = ding_users[:3]
    first = connect_ding().write(STREAM, request(content(applicant, [boss, deputy]), "k1"))

    decided = content(applicant, [], status="rejected", last_operator=boss)
    connect_ding().write(STREAM, request(decided, "k2", first.target_id))

    assert (pc_instance(ding)["status"], pc_instance(ding)["result"]) == ("COMPLETED", "refuse")
    assert pc_tasks(ding) == [(boss, "COMPLETED", "refuse"), (deputy, "CANCELED", "")]


def test_dingtalk_a_withdrawn_request_terminates_the_instance(
    ding, connect_ding, ding_users
) -> None:
    first = connect_ding().write(STREAM, request(content(ding_users[0], [ding_users[1]]), "k1"))

    withdrawn = content(ding_users[0], [], status="revoked", last_operator=ding_users[0])
    connect_ding().write(STREAM, request(withdrawn, "k2", first.target_id))

    assert pc_instance(ding)["status"] == "TERMINATED"
    assert pc_tasks(ding) == [(ding_users[1], "CANCELED", "")]


def test_dingtalk_a_repeated_write_makes_no_second_instance_or_todo(
    ding, connect_ding, ding_users
) -> None:
    payload = content(ding_users[0], [ding_users[1]])
    connect_ding().write(STREAM, request(payload, "k1"))
    calls_before = len(ding.store.ledger("dingtalk"))

    # A retry of the same effect: the id map never heard of the first attempt's instance.
    connect_ding().write(STREAM, request(payload, "k1"))

    assert len(ding.store.list("dingtalk", "pc_instance")) == 1
    assert len(ding.store.ledger("dingtalk")) == calls_before


def test_dingtalk_a_write_that_stopped_part_way_resumes_without_repeating(
    ding, connect_ding, ding_users, store
) -> None:
    applicant, boss, cfo = ding_users[:3]
    first = connect_ding().write(STREAM, request(content(applicant, [boss]), "k1"))
    moved = content(applicant, [cfo], node="n2", last_operator=boss)
    store.set_setting("dingtalk", "monthly_quota", "1")  # the close goes through, then 90020
    with pytest.raises(QuotaExhausted):
        connect_ding().write(STREAM, request(moved, "k2", first.target_id))
    store.set_setting("dingtalk", "monthly_quota", "0")

    connect_ding().write(STREAM, request(moved, "k2", first.target_id))

    closes = [e for e in ding.store.ledger("dingtalk") if e.endpoint.endswith("tasks PUT")]
    assert len(closes) == 1
    assert pc_tasks(ding) == [(boss, "COMPLETED", "agree"), (cfo, "RUNNING", "")]


def test_dingtalk_an_approval_without_a_link_is_a_dead_letter(connect_ding, ding_users) -> None:
    result = connect_ding().write(
        STREAM, request(content(ding_users[0], [ding_users[1]], url=None), "k1")
    )

    assert result.status is WriteStatus.REJECTED
    assert "url" in result.reason


# -- DingTalk, read back (connectors.base.ReadsBack: `syncctl reconcile`) ----------------------
def test_dingtalk_reads_back_whose_todos_are_open_on_the_instance(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, deputy = ding_users[:3]
    planned = request(content(applicant, [boss, deputy]), "k1")
    written = replace(planned, target_id=connect_ding().write(STREAM, planned).target_id)
    instance = pc_instance(ding)["processInstanceId"]

    found = connect_ding().read_back(STREAM, [written])

    expected = TargetView(instance, (("open_tasks", f"n1/{boss},n1/{deputy}"),))
    assert found == {instance: expected}
    assert connect_ding().expected_view(STREAM, written) == expected


def test_dingtalk_a_todo_closed_behind_our_back_is_read_back_closed(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, deputy = ding_users[:3]
    planned = request(content(applicant, [boss, deputy]), "k1")
    written = replace(planned, target_id=connect_ding().write(STREAM, planned).target_id)
    [task] = [t for t in ding.store.list("dingtalk", "pc_task") if t["userId"] == boss]
    ding.store.put("dingtalk", "pc_task", str(task["taskId"]), {**task, "status": "CANCELED"})

    [held] = connect_ding().read_back(STREAM, [written]).values()

    assert held.as_dict()["open_tasks"] == f"n1/{deputy}"


def test_dingtalk_a_repair_opens_the_closed_todo_again_on_the_same_instance(
    ding, connect_ding, ding_users
) -> None:
    applicant, boss, deputy = ding_users[:3]
    planned = request(content(applicant, [boss, deputy]), "k1")
    written = replace(planned, target_id=connect_ding().write(STREAM, planned).target_id)
    [task] = [t for t in ding.store.list("dingtalk", "pc_task") if t["userId"] == boss]
    ding.store.put("dingtalk", "pc_task", str(task["taskId"]), {**task, "status": "CANCELED"})
    connector = connect_ding()
    [held] = connector.read_back(STREAM, [written]).values()

    fixed = connector.write(
        STREAM, connector.repair_request(STREAM, replace(written, effect_key="r1"), held)
    )

    assert fixed.status is WriteStatus.DONE
    assert len(ding.store.list("dingtalk", "pc_instance")) == 1
    assert sorted(pc_tasks(ding)) == sorted(
        [(boss, "CANCELED", ""), (deputy, "RUNNING", ""), (boss, "RUNNING", "")]
    )
    [again] = connector.read_back(STREAM, [replace(written, target_id=fixed.target_id)]).values()
    assert again == connector.expected_view(STREAM, written)
