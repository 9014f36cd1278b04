"""Flow config for event-driven flows over chat messages: webhook-only triggers, rules that
must name mapped fields, extract mappings, and notify kinds that write OA todos and project
comments."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sync_pipeline.stages.plan import NotifyKind
from sync_pipeline.stages.rules import Flag
from sync_pipeline.stages.transform import ExtractField

from .conftest import ENV

MESSAGE_FLOW: dict[str, Any] = {
    "source": {"connector": "wecom", "stream": "messages"},
    "target": {"connector": "oa", "stream": "todos"},
    "trigger": {"webhook": True},
    "cursor_field": "sent_at",
    "mapping": {
        "fields": {
            "text": {"from": "text"},
            "flags": {"from": "flags", "default": []},
            "mentioned": {"user": {"from": "mentions", "from_system": "wecom", "to_system": "oa"}},
        }
    },
    "rules": {"flag": "important"},
    "notify": [{"send": "todo", "to": "mentioned"}],
}


@pytest.fixture
def messages_tree(tree):
    """The config tree with one flow from WeCom messages to OA todos."""
    tree.flow("x", MESSAGE_FLOW)
    return tree


def problems(tree, **changes: Any) -> dict[str, str]:
    tree.flow("x", MESSAGE_FLOW, **changes)
    return dict(tree.error(ENV).problems)


def test_a_flow_over_messages_loads_with_a_webhook_only_trigger(messages_tree) -> None:
    flow = messages_tree.load().flows["x"]

    assert (flow.trigger.interval_s, flow.trigger.cron, flow.trigger.webhook) == (
        None,
        None,
        True,
    )
    assert flow.rules == Flag("important")
    [todo] = flow.notify
    assert (todo.when, todo.kind, todo.to) == (None, NotifyKind.TODO, "mentioned")


def test_a_flow_with_neither_schedule_nor_webhook_is_refused(messages_tree) -> None:
    found = problems(messages_tree, trigger={"webhook": False})

    assert "or webhook: true alone" in found["trigger"]


def test_a_flow_with_two_schedules_is_refused(messages_tree) -> None:
    found = problems(messages_tree, trigger={"interval_s": 60, "cron": "* * * * *"})

    assert found["trigger"] == "expected exactly one of interval_s and cron"


@pytest.mark.parametrize(
    ("rules", "bad"),
    [
        ({"field": "stauts", "equals": "approved"}, "stauts"),
        ({"group_in": ["oc_1"]}, "group"),  # sender_in and friends read a fixed field
        (
            {"all": [{"keywords": ["budget"]}, {"not": {"field": "form.days", "equals": 1}}]},
            "form.days",
        ),
    ],
)
def test_a_rule_must_read_fields_the_mapping_produces(messages_tree, rules, bad) -> None:
    found = problems(messages_tree, rules=rules)

    assert found["rules"] == f"expected a mapped field (flags, mentioned, text); got {bad}"


def test_a_flag_rule_reads_the_mapped_flags(messages_tree) -> None:
    messages_tree.flow("x", MESSAGE_FLOW, rules={"flag": "decision"})

    assert messages_tree.load().flows["x"].rules == Flag("decision")


def test_a_notify_condition_must_read_fields_the_mapping_produces(messages_tree) -> None:
    notify = [{"when": {"field": "importance", "equals": 1}, "send": "todo", "to": "mentioned"}]

    found = problems(messages_tree, notify=notify)

    assert found["notify.0.when"].endswith("got importance")


def test_an_empty_flag_is_refused(messages_tree) -> None:
    found = problems(messages_tree, rules={"flag": ""})

    assert "rules.flag" in found


def test_a_todo_needs_a_target_that_takes_todos(messages_tree) -> None:
    target = {"connector": "wecom", "stream": "messages"}

    found = problems(messages_tree, target=target)

    assert found["notify.0.send"] == "expected target.stream todos for send: todo"


def test_a_target_that_takes_todos_takes_nothing_else(messages_tree) -> None:
    notify = [{"send": "message", "to": "mentioned"}]

    found = problems(messages_tree, notify=notify)

    assert found["notify.0.send"] == "expected todo for target.stream todos"


def test_a_project_comment_needs_the_project_progress_stream(messages_tree) -> None:
    notify = [{"send": "project_comment", "to": "mentioned"}]

    found = problems(messages_tree, notify=notify)

    assert found["notify.0.send"] == (
        "expected target.stream project_progress for send: project_comment"
    )


def test_an_extract_mapping_builds_its_pattern_once(messages_tree) -> None:
    fields = {
        **MESSAGE_FLOW["mapping"]["fields"],
        "project": {"extract": {"from": "group_info.description", "regex": r"P\d+"}},
    }
    messages_tree.flow("x", MESSAGE_FLOW, mapping={"fields": fields})

    spec = messages_tree.load().flows["x"].mapping.fields["project"]

    assert spec == ExtractField("group_info.description", re.compile(r"P\d+"))


def test_an_extract_with_a_bad_regex_is_named(messages_tree) -> None:
    fields = {
        **MESSAGE_FLOW["mapping"]["fields"],
        "project": {"extract": {"from": "group_info.description", "regex": "P(\\d+"}},
    }

    found = problems(messages_tree, mapping={"fields": fields})

    assert "expected a valid regular expression" in found["mapping.fields.project.extract.regex"]
