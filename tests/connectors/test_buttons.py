"""Each vendor's card buttons: what the card builder encodes, the webhook parses back to the
same decision on the same record; a value we did not make parses to nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_pipeline.connectors.base import Decision
from sync_pipeline.connectors.buttons import ButtonValue, decision_values
from sync_pipeline.connectors.buttons import agora as agora_buttons
from sync_pipeline.connectors.buttons import dingtalk as dingtalk_buttons
from sync_pipeline.connectors.buttons import feishu as feishu_buttons
from sync_pipeline.connectors.buttons import feishu_approval as quick
from sync_pipeline.connectors.buttons import wecom as wecom_buttons


def through_wecom(value: ButtonValue) -> ButtonValue | None:
    return wecom_buttons.parse(wecom_buttons.encode(value))  # the callback's EventKey


def through_feishu(value: ButtonValue) -> ButtonValue | None:
    return feishu_buttons.parse(feishu_buttons.encode(value))  # action.value


def through_feishu_as_text(value: ButtonValue) -> ButtonValue | None:
    return feishu_buttons.parse(json.dumps(feishu_buttons.encode(value)))  # a JSON string


def through_dingtalk(value: ButtonValue) -> ButtonValue | None:
    """The template's button sends its action and the card's source_id variable back."""
    params = {"action": value.decision.value, **dingtalk_buttons.encode(value.source_id)}
    return dingtalk_buttons.parse({"actionIds": [value.decision.value], "params": params})


def through_agora(value: ButtonValue) -> ButtonValue | None:
    """The client app sends the pressed button's action and source_id as customExts."""
    button = agora_buttons.encode(value, "Approve")
    return agora_buttons.parse({"action": button["action"], "source_id": button["source_id"]})


ROUND_TRIPS: list[Callable[[ButtonValue], ButtonValue | None]] = [
    through_wecom,
    through_feishu,
    through_feishu_as_text,
    through_dingtalk,
    through_agora,
]
values = st.builds(ButtonValue, st.sampled_from(Decision), st.text(min_size=1, max_size=64))


@pytest.mark.parametrize("round_trip", ROUND_TRIPS, ids=lambda f: f.__name__)
@given(value=values)
def test_a_button_value_comes_back_as_it_was_encoded(
    round_trip: Callable[[ButtonValue], ButtonValue | None], value: ButtonValue
) -> None:
    assert round_trip(value) == value


@pytest.mark.parametrize("source_id", ["8812", "a:reject", "reject:", ":", "approve:x:y"])
@pytest.mark.parametrize("decision", list(Decision))
def test_given_an_id_with_colons_the_wecom_key_keeps_its_decision(
    decision: Decision, source_id: str
) -> None:
    assert through_wecom(ButtonValue(decision, source_id)) == ButtonValue(decision, source_id)


def test_a_card_offers_approve_then_reject_on_its_record() -> None:
    assert decision_values("8812") == [
        (ButtonValue(Decision.APPROVE, "8812"), "Approve"),
        (ButtonValue(Decision.REJECT, "8812"), "Reject"),
    ]


@pytest.mark.parametrize("key", ["open", "approve", "approve:", "vote:8812", ":8812", ""])
def test_wecom_refuses_a_key_it_did_not_make(key: str) -> None:
    assert wecom_buttons.parse(key) is None


@pytest.mark.parametrize(
    "value",
    [
        "approve",
        "{not json",
        "[1, 2]",
        {"action": "vote", "source_id": "8812"},
        {"action": "approve"},
        {"action": "approve", "source_id": ""},
        {"action": "approve", "source_id": 8812},
        None,
        "[" * 100_000,
    ],
)
def test_feishu_refuses_a_value_it_did_not_make(value: Any) -> None:
    assert feishu_buttons.parse(value) is None


@pytest.mark.parametrize(
    "private",
    [
        None,
        {},
        {"actionIds": ["open"], "params": {"source_id": "8812"}},
        {"actionIds": ["approve"], "params": {}},
        {"params": {"action": "approve", "source_id": ["8812"]}},
    ],
)
def test_dingtalk_refuses_a_press_it_did_not_make(private: Any) -> None:
    assert dingtalk_buttons.parse(private) is None


def test_dingtalk_takes_the_first_action_id_when_params_name_no_action() -> None:
    private = {"actionIds": ["reject", "approve"], "params": {"source_id": "8812"}}

    assert dingtalk_buttons.parse(private) == ButtonValue(Decision.REJECT, "8812")


@pytest.mark.parametrize(
    "exts", [{}, {"action": "approve"}, {"action": "like", "source_id": "8812"}]
)
def test_agora_refuses_a_press_it_did_not_make(exts: dict[str, str]) -> None:
    assert agora_buttons.parse(exts) is None


@given(st.builds(quick.QuickContext, st.text(max_size=64), st.text(max_size=64)))
def test_a_feishu_quick_action_context_comes_back_as_it_was_encoded(
    context: quick.QuickContext,
) -> None:
    assert quick.parse(quick.encode(context)) == context


def test_feishu_quick_actions_offered_are_the_decisions_read_back() -> None:
    offered = [action["action_type"] for action in quick.QUICK_ACTIONS]

    assert [quick.decision(a) for a in offered] == [Decision.APPROVE, Decision.REJECT]


@pytest.mark.parametrize("action_type", ["CUSTOM", "approve", "", None])
def test_feishu_quick_refuses_an_action_it_did_not_offer(action_type: Any) -> None:
    assert quick.decision(action_type) is None


@pytest.mark.parametrize(
    "context", [None, "", "{not json", "[1]", '{"source_id": 7}', "[" * 100_000]
)
def test_a_feishu_quick_context_not_ours_says_nothing(context: Any) -> None:
    assert quick.parse(context) == quick.QuickContext("", "")
