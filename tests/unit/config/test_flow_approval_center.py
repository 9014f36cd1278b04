"""`send: approval_center` in a flow file: only to a target stream "approval_center", and with
no `to` (the instance's tasks name the approvers)."""

from __future__ import annotations

import copy

import pytest

from sync_pipeline.records import NotifyKind

from .conftest import CONNECTORS, FLOW

TARGET = {"connector": "feishu", "stream": "approval_center"}


@pytest.fixture
def tree(tree):
    """The config tree with a Feishu connector, whose approval center the flows write."""
    feishu = {
        "vendor": "feishu",
        "base_url": "http://127.0.0.1:18604",
        "credentials": {"app_id": {"env": "OA_APPID"}, "app_secret": {"env": "OA_SECRET"}},
        "options": {"approval_center": {"approval_code": "oa"}},
    }
    tree.connectors({**CONNECTORS, "feishu": feishu})
    return tree


def to_feishu() -> dict[str, object]:
    """The flow with its users mapped to Feishu, the target's vendor."""
    flow = copy.deepcopy(FLOW)
    flow["mapping"]["fields"]["applicant"]["user"]["to_system"] = "feishu"
    return flow


def test_an_approval_center_rule_loads_without_recipients(tree) -> None:
    tree.flow(
        "x", to_feishu(), target=TARGET, notify=[{"send": "approval_center", "once_per": "status"}]
    )

    [rule] = tree.load().flows["x"].notify

    assert rule.kind is NotifyKind.APPROVAL_CENTER
    assert rule.to is None


def test_an_approval_center_rule_with_recipients_is_refused(tree) -> None:
    tree.flow(
        "x", to_feishu(), target=TARGET, notify=[{"send": "approval_center", "to": "applicant"}]
    )

    assert "notify.0.to: expected no recipients for approval_center" in str(tree.error())


def test_an_approval_center_rule_needs_the_approval_center_stream(tree) -> None:
    tree.flow("x", notify=[{"send": "approval_center"}])

    assert "expected target.stream approval_center" in str(tree.error())


def test_the_approval_center_stream_takes_no_card(tree) -> None:
    tree.flow("x", to_feishu(), target=TARGET, notify=[{"send": "card", "to": "applicant"}])

    assert "expected approval_center for target.stream approval_center" in str(tree.error())
