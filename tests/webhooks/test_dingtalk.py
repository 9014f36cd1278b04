"""DingTalk event subscription from the sandbox's emulator into the webhook service."""

from __future__ import annotations

from tests.webhooks.conftest import im_user, send_card


def test_check_url_is_answered_with_the_encrypted_success(sandbox, service) -> None:
    result = sandbox.press("dingtalk", {"kind": "check_url"})

    assert result["acknowledged"] == [True]
    assert service.rows("dingtalk") == []


def test_a_pressed_card_button_is_recorded_once_and_enqueued_once(
    sandbox, service, connectors
) -> None:
    dingtalk = connectors["dingtalk"]
    user = im_user(dingtalk, "E00002")
    card = send_card(dingtalk, user, "R000042")

    pressed = sandbox.press(
        "dingtalk",
        {
            "kind": "card_action",
            "out_track_id": card.target_id,
            "user_id": user,
            "action_id": "approve",
            "params": {"source_id": "R000042", "comment": "fine by me"},
        },
    )

    assert pressed["acknowledged"] == [True]
    [row] = service.wait_rows("dingtalk", 1)
    assert row.event.kind.value == "card_action"
    assert row.event.data == {
        "user_id": user,
        "action": "approve",
        "source_id": "R000042",
        "comment": "fine by me",
        "card": {"out_track_id": card.target_id},
    }
    assert service.wait_enqueued(1) == 1


def test_a_refused_task_records_the_task_and_the_finished_instance(sandbox, service) -> None:
    from sync_pipeline.devtools.sandbox.dingtalk import instance_id_for
    from sync_pipeline.devtools.sandbox.world import World

    world = World(7)
    pending = next(a for a in world.approvals(20) if a.state == "pending")
    instance = instance_id_for(world, pending)

    result = sandbox.press(
        "dingtalk",
        {"kind": "bpms_task_change", "process_instance_id": instance, "decision": "refuse"},
    )

    assert result["acknowledged"] == [True]
    task, finished = service.wait_rows("dingtalk", 2)
    assert (task.event.data["source_id"], task.event.data["status"]) == (instance, None)
    assert (finished.event.data["source_id"], finished.event.data["status"]) == (
        instance,
        "rejected",
    )
    assert service.wait_enqueued(2) == 2
