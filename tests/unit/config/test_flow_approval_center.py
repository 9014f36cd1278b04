"""`send: approval_center` in a flow file: only to a target stream "approval_center", and with
no `to` (the instance's tasks name the approvers)."""

from __future__ import annotations

from sync_pipeline.stages.plan import NotifyKind

TARGET = {"connector": "wecom", "stream": "approval_center"}


def test_an_approval_center_rule_loads_without_recipients(tree) -> None:
    tree.flow("x", target=TARGET, notify=[{"send": "approval_center", "once_per": "status"}])

    [rule] = tree.load().flows["x"].notify

    assert rule.kind is NotifyKind.APPROVAL_CENTER
    assert rule.to is None


def test_an_approval_center_rule_with_recipients_is_refused(tree) -> None:
    tree.flow("x", target=TARGET, notify=[{"send": "approval_center", "to": "applicant"}])

    assert "notify.0.to: expected no recipients for approval_center" in str(tree.error())


def test_an_approval_center_rule_needs_the_approval_center_stream(tree) -> None:
    tree.flow("x", notify=[{"send": "approval_center"}])

    assert "expected target.stream approval_center" in str(tree.error())


def test_the_approval_center_stream_takes_no_card(tree) -> None:
    tree.flow("x", target=TARGET, notify=[{"send": "card", "to": "applicant"}])

    assert "expected approval_center for target.stream approval_center" in str(tree.error())
