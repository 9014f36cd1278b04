"""Each vendor's decoder, one test per fixture (tests/webhooks/fixtures/<vendor>/), asserting the
exact InboundEvent: the `data` fields are what records.py documents, no more, no less.

Fixtures are the decrypted plaintexts, shaped after the vendors' documented samples
(platform-apis.md §1.2, §2.2, §3.2, §6 and the OA webhook in sandbox/oa/webhook.py).
"""

from __future__ import annotations

import json

import pytest

from sync_pipeline.errors import Reason, Refused
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.webhooks import agora, dingtalk, feishu, oa, wecom
from sync_pipeline.webhooks.delivery import FOREIGN_BUTTON
from tests.webhooks.conftest import fixture_text

CARD_ACTION_FIELDS = {"user_id", "action", "source_id", "comment", "card"}
APPROVAL_FIELDS = {"source_id", "status", "version"}
MESSAGE_FIELDS = {
    "message_id",
    "sender",
    "chat_id",
    "chat_type",
    "text",
    "flags",
    "mentions",
    "sent_at",
}


def load(vendor: str, name: str) -> dict:
    return json.loads(fixture_text(vendor, name))


# -- OA ----------------------------------------------------------------------------------------
def test_oa_request_approved_is_approval_changed() -> None:
    event = oa.decode("oa", load("oa", "request__approved.json"), "1772443800")

    assert event == InboundEvent(
        connector="oa",
        vendor="oa",
        event_id="5f0c2a8e-3b8e-4a57-9a1c-2f7d9d3e8b11",
        kind=EventKind.APPROVAL_CHANGED,
        occurred_at="2026-03-02T09:30:00Z",
        data={"source_id": "R000042", "status": "approved", "version": "2026-03-02 17:30:00"},
    )


def test_oa_events_other_than_request_changes_are_ignored() -> None:
    assert oa.decode("oa", load("oa", "todo__pushed.json"), "1772443800") is None


def test_oa_request_change_without_an_event_id_is_malformed() -> None:
    payload = {k: v for k, v in load("oa", "request__approved.json").items() if k != "eventId"}

    with pytest.raises(Refused) as refused:
        oa.decode("oa", payload, "1772443800")

    assert refused.value.reason is Reason.MALFORMED


# -- WeCom -------------------------------------------------------------------------------------
def test_wecom_template_card_event_is_a_card_action_with_the_card_handles() -> None:
    event = wecom.decode("wc", fixture_text("wecom", "template_card_event.xml"))

    assert event == InboundEvent(
        connector="wc",
        vendor="wecom",
        event_id="zhang.wei7:1772443800:template_card_event:3f1c0e6b2a:reject:R000042",
        kind=EventKind.CARD_ACTION,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "user_id": "zhang.wei7",
            "action": "reject",
            "source_id": "R000042",
            "comment": "",
            "card": {
                "response_code": "hcUQkr4PDTbbUDu6dQxVcCuNDiJtyprRIxlkr1tprHw",
                "task_id": "3f1c0e6b2a",
            },
        },
    )


def test_wecom_sys_approval_change_is_approval_changed_with_its_status() -> None:
    event = wecom.decode("wc", fixture_text("wecom", "sys_approval_change.xml"))

    assert event is not None
    assert event.kind is EventKind.APPROVAL_CHANGED
    assert event.data == {
        "source_id": "202603020042",
        "status": "approved",
        "version": "1772443799|2|2",
    }
    assert event.event_id == "sys:1772443800:sys_approval_change:202603020042:1772443799|2|2"


def test_wecom_text_message_is_a_direct_message_with_its_flags() -> None:
    event = wecom.decode("wc", fixture_text("wecom", "text.xml"))

    assert event == InboundEvent(
        connector="wc",
        vendor="wecom",
        event_id="7353215234120093184",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "message_id": "7353215234120093184",
            "sender": "li.na3",
            "chat_id": "",
            "chat_type": "direct",
            "text": "Please file the Q2 budget #important",
            "flags": ["important"],
            "mentions": [],
            "sent_at": "2026-03-02T09:30:00Z",
        },
    )


def test_wecom_events_we_do_not_handle_are_ignored() -> None:
    assert wecom.decode("wc", fixture_text("wecom", "enter_agent.xml")) is None


def test_wecom_xml_with_a_dtd_is_malformed_before_any_entity_is_expanded() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>'

    with pytest.raises(Refused) as refused:
        wecom.decode("wc", bomb)

    assert refused.value.reason is Reason.MALFORMED


# -- DingTalk ----------------------------------------------------------------------------------
SENT_AT = 1772443801.0


def test_dingtalk_finished_instance_is_approval_changed_with_its_result() -> None:
    event = dingtalk.decode("dt", load("dingtalk", "bpms_instance_change__finish.json"), SENT_AT)

    assert event == InboundEvent(
        connector="dt",
        vendor="dingtalk",
        event_id="bpms_instance_change:a1b2c3d4-0001-4c2d-9e8f-000000000042:finish|agree|1772443800000",
        kind=EventKind.APPROVAL_CHANGED,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "source_id": "a1b2c3d4-0001-4c2d-9e8f-000000000042",
            "status": "approved",
            "version": "finish|agree|1772443800000",
        },
    )


def test_dingtalk_started_task_is_approval_changed_without_a_status() -> None:
    event = dingtalk.decode("dt", load("dingtalk", "bpms_task_change__start.json"), SENT_AT)

    assert event is not None
    assert event.data == {
        "source_id": "a1b2c3d4-0001-4c2d-9e8f-000000000042",
        "status": None,
        "version": "task 70000000421|start||1772400000000",
    }


def test_dingtalk_card_callback_takes_the_action_id_and_the_params() -> None:
    event = dingtalk.decode("dt", load("dingtalk", "card_callback.json"), SENT_AT)

    assert event is not None
    assert event.kind is EventKind.CARD_ACTION
    assert event.occurred_at == "2026-03-02T09:30:01Z"
    assert event.data == {
        "user_id": "0112345678901234",
        "action": "reject",
        "source_id": "R000042",
        "comment": "dates overlap",
        "card": {"out_track_id": "sync-5e1f0c2d9a8b7c6d"},
    }


def test_dingtalk_card_callback_has_the_same_event_id_however_often_it_comes() -> None:
    first = dingtalk.decode("dt", load("dingtalk", "card_callback.json"), SENT_AT)
    again = dingtalk.decode("dt", load("dingtalk", "card_callback.json"), SENT_AT + 30)

    assert first is not None
    assert again is not None
    assert first.event_id == again.event_id


@pytest.mark.parametrize("name", ["check_url.json", "user_add_org.json"])
def test_dingtalk_check_url_and_unhandled_events_are_ignored(name: str) -> None:
    assert dingtalk.decode("dt", load("dingtalk", name), SENT_AT) is None


# -- Feishu ------------------------------------------------------------------------------------
def test_feishu_card_action_takes_the_button_value_and_the_form_comment() -> None:
    event = feishu.decode("fs", load("feishu", "card_action_trigger.json"))

    assert event == InboundEvent(
        connector="fs",
        vendor="feishu",
        event_id="f7984f25108f8137722bb63cee927e66",
        kind=EventKind.CARD_ACTION,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "user_id": "ou_3a1f2b4c5d6e7f8091a2b3c4d5e6f708",
            "action": "approve",
            "source_id": "R000042",
            "comment": "approved, enjoy",
            "card": {
                "open_message_id": "om_x100b5e1e8f1c2d3e4f",
                "open_chat_id": "oc_5ad11d72b830411d72b836c20",
                "token": "c-295ee57216a5dc9de90fefd0aadb4b1d7d337fc7",
            },
        },
    )


def test_feishu_group_message_names_its_mentions_by_open_id_and_by_name_in_the_text() -> None:
    event = feishu.decode("fs", load("feishu", "im_message_receive_v1.json"))

    assert event == InboundEvent(
        connector="fs",
        vendor="feishu",
        event_id="5e3702a84e847582be8db7fb73283c02",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:29:59Z",
        data={
            "message_id": "om_5ce6d572455d361153b7cb51da133945",
            "sender": "ou_3a1f2b4c5d6e7f8091a2b3c4d5e6f708",
            "chat_id": "oc_5ce6d572455d361153b7xx51da133945",
            "chat_type": "group",
            "text": "@Wang Fang budget approved #Decision",
            "flags": ["decision"],
            "mentions": ["ou_7d8a6e6df7621556ce0d21922b676706"],
            "sent_at": "2026-03-02T09:29:59Z",
        },
    )


def test_feishu_message_leaves_a_mention_of_the_app_out_of_its_mentions() -> None:
    event = feishu.decode("fs", load("feishu", "im_message_receive_v1__at_bot.json"))

    assert event is not None
    assert event.data["mentions"] == ["ou_7d8a6e6df7621556ce0d21922b676706"]
    assert event.data["text"] == "@OA Sync @Wang Fang the audit starts Monday #important"


def test_feishu_message_with_ten_mentions_replaces_each_placeholder_whole() -> None:
    payload = load("feishu", "im_message_receive_v1.json")
    message = payload["event"]["message"]
    person = message["mentions"][0]
    message["mentions"] = [
        {**person, "key": f"@_user_{n}", "name": f"Person {chr(64 + n)}"} for n in range(1, 11)
    ]
    message["content"] = json.dumps({"text": "@_user_1 and @_user_10 agree"})

    event = feishu.decode("fs", payload)

    assert event is not None
    assert event.data["text"] == "@Person A and @Person J agree"


@pytest.mark.parametrize("mentions", [5, "@_user_1", {"key": "@_user_1"}, None])
def test_feishu_message_whose_mentions_are_not_a_list_has_none(mentions) -> None:
    payload = load("feishu", "im_message_receive_v1.json")
    payload["event"]["message"]["mentions"] = mentions

    event = feishu.decode("fs", payload)

    assert event is not None
    assert event.data["mentions"] == []


def test_feishu_approval_instance_is_approval_changed_with_the_canonical_status() -> None:
    event = feishu.decode("fs", load("feishu", "approval_instance.json"))

    assert event == InboundEvent(
        connector="fs",
        vendor="feishu",
        event_id="41b5f371157e3c5bd2a0b3d1a0b36c1e",
        kind=EventKind.APPROVAL_CHANGED,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "source_id": "81D31358-93AF-92D6-7425-01A5D67C4E71",
            "status": "approved",
            "version": "1772443800000:APPROVED",
        },
    )


def test_feishu_approval_task_is_approval_changed_without_an_instance_status() -> None:
    event = feishu.decode("fs", load("feishu", "approval_task.json"))

    assert event is not None
    assert event.data["status"] is None
    assert event.data["source_id"] == "81D31358-93AF-92D6-7425-01A5D67C4E71"


def test_feishu_events_we_do_not_handle_are_ignored() -> None:
    assert feishu.decode("fs", load("feishu", "contact_user_created_v3.json")) is None


# -- Agora -------------------------------------------------------------------------------------
def test_agora_group_text_message_takes_mentions_from_em_at_list() -> None:
    event = agora.decode("ag", load("agora", "chat__txt_groupchat.json"))

    assert event == InboundEvent(
        connector="ag",
        vendor="agora",
        event_id="61234567#890123_1b9f4b2e-3c5d-4e6f-8a9b-0c1d2e3f4a5b",
        kind=EventKind.MESSAGE,
        occurred_at="2026-03-02T09:30:00Z",
        data={
            "message_id": "1235827632195768364",
            "sender": "e00002",
            "chat_id": "215387296088065",
            "chat_type": "group",
            "text": "Vendor chosen: Acme #decision #Important",
            "flags": ["decision", "important"],
            "mentions": ["e00003", "e00007"],
            "sent_at": "2026-03-02T09:30:00Z",
        },
    )


def test_agora_card_action_custom_message_is_a_card_action() -> None:
    event = agora.decode("ag", load("agora", "chat__custom_card_action.json"))

    assert event is not None
    assert event.kind is EventKind.CARD_ACTION
    assert event.data == {
        "user_id": "e00002",
        "action": "approve",
        "source_id": "R000042",
        "comment": "",
        "card": {"card_msg_id": "1235827632195760000"},
    }


def test_agora_custom_exts_given_only_as_a_list_of_maps_are_merged() -> None:
    callback = load("agora", "chat__custom_card_action.json")
    del callback["payload"]["bodies"][0]["v2:customExts"]

    event = agora.decode("ag", callback)

    assert event is not None
    assert (event.data["action"], event.data["source_id"]) == ("approve", "R000042")


def unhandled(name: str) -> tuple[EventKind, str, dict[str, object]]:
    callback = load("agora", name)
    event = agora.decode("ag", callback)
    assert event.event_id == callback["callId"]  # kept, so the callId is never taken again
    return event.kind, event.occurred_at, dict(event.data)


def test_agora_message_from_the_app_admin_is_our_own_echo_and_not_handled() -> None:
    assert unhandled("chat__txt_from_admin.json") == (
        EventKind.UNHANDLED,
        "2026-03-02T09:30:00Z",
        {"reason": "our own message, reported back"},
    )


def test_agora_custom_exts_that_are_neither_a_map_nor_a_list_carry_no_button_of_ours() -> None:
    callback = load("agora", "chat__custom_card_action.json")
    body = callback["payload"]["bodies"][0]
    del body["v2:customExts"]
    body["customExts"] = 5

    event = agora.decode("ag", callback)

    assert event is not None
    assert (event.kind, dict(event.data)) == (EventKind.UNHANDLED, {"reason": FOREIGN_BUTTON})


def test_agora_message_carrying_our_effect_key_is_our_own_echo_whoever_sent_it() -> None:
    _, _, data = unhandled("chat__txt_with_our_effect_key.json")

    assert data == {"reason": "our own message, reported back"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("chat_offline__txt.json", "an offline copy of a message"),
        ("chat__img.json", "a message type we do not handle"),
    ],
)
def test_agora_offline_copies_and_other_message_types_are_not_handled(name, reason) -> None:
    kind, _, data = unhandled(name)

    assert (kind, data) == (EventKind.UNHANDLED, {"reason": reason})


# -- every kind carries exactly the documented fields --------------------------------------------
@pytest.mark.parametrize(
    ("decoded", "fields"),
    [
        (lambda: oa.decode("c", load("oa", "request__approved.json"), "1"), APPROVAL_FIELDS),
        (
            lambda: wecom.decode("c", fixture_text("wecom", "template_card_event.xml")),
            CARD_ACTION_FIELDS,
        ),
        (
            lambda: wecom.decode("c", fixture_text("wecom", "sys_approval_change.xml")),
            APPROVAL_FIELDS,
        ),
        (lambda: wecom.decode("c", fixture_text("wecom", "text.xml")), MESSAGE_FIELDS),
        (
            lambda: dingtalk.decode("c", load("dingtalk", "card_callback.json"), 1.0),
            CARD_ACTION_FIELDS,
        ),
        (
            lambda: feishu.decode("c", load("feishu", "card_action_trigger.json")),
            CARD_ACTION_FIELDS,
        ),
        (lambda: feishu.decode("c", load("feishu", "im_message_receive_v1.json")), MESSAGE_FIELDS),
        (lambda: agora.decode("c", load("agora", "chat__txt_groupchat.json")), MESSAGE_FIELDS),
        (
            lambda: agora.decode("c", load("agora", "chat__custom_card_action.json")),
            CARD_ACTION_FIELDS,
        ),
        (lambda: agora.decode("c", load("agora", "chat__img.json")), {"reason"}),
    ],
)
def test_decoded_data_has_exactly_the_fields_records_py_documents(decoded, fields) -> None:
    event = decoded()

    assert event is not None
    assert set(event.data) == fields
    assert InboundEvent.from_json(json.loads(json.dumps(event.as_json()))) == event
