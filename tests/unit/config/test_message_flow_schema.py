"""Flow config for event-driven flows over chat messages: webhook-only triggers, rules that
must name mapped fields, extract mappings, and notify kinds that write OA todos and project
comments."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sync_pipeline.records import NotifyKind
from sync_pipeline.stages import Template
from sync_pipeline.stages.rules import Flag
from sync_pipeline.stages.transform import ExtractField, TemplateField

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
        "project": {
            "extract": {"from": "group_info.description", "regex": r"P\d+", "default": None}
        },
    }
    messages_tree.flow("x", MESSAGE_FLOW, mapping={"fields": fields})

    spec = messages_tree.load().flows["x"].mapping.fields["project"]

    assert spec == ExtractField("group_info.description", re.compile(r"P\d+"), default=None)


def test_an_extract_with_a_bad_regex_is_named(messages_tree) -> None:
    fields = {
        **MESSAGE_FLOW["mapping"]["fields"],
        "project": {"extract": {"from": "group_info.description", "regex": "P(\\d+"}},
    }

    found = problems(messages_tree, mapping={"fields": fields})

    assert "expected a valid regular expression" in found["mapping.fields.project.extract.regex"]


def test_a_template_may_fall_back_to_a_default_when_a_name_has_no_value(messages_tree) -> None:
    url = {"template": "https://chat.example.com/c/{chat}", "default": "https://chat.example.com/"}
    fields = {**MESSAGE_FLOW["mapping"]["fields"], "url": url}
    messages_tree.flow("x", MESSAGE_FLOW, mapping={"fields": fields})

    spec = messages_tree.load().flows["x"].mapping.fields["url"]

    assert spec == TemplateField(
        Template.parse("https://chat.example.com/c/{chat}"), default="https://chat.example.com/"
    )


NO_CONVERSATION = "a one-to-one WeCom or Agora Chat message names no conversation (chat)"
NO_GROUP = "a one-to-one message has no group"


@pytest.mark.parametrize(
    ("spec", "gap"),
    [
        ({"template": "https://chat.example.com/c/{chat}"}, NO_CONVERSATION),
        ({"value_map": {"from": "chat", "map": {"x": "y"}}}, NO_CONVERSATION),
        ({"from": "group"}, NO_GROUP),
        ({"from": "group_info.name"}, NO_GROUP),
        ({"extract": {"from": "group_info.description", "regex": "P[0-9]+"}}, NO_GROUP),
    ],
)
def test_a_message_mapping_that_needs_what_a_one_to_one_message_lacks_is_refused_at_load(
    messages_tree, spec, gap
) -> None:
    fields = {**MESSAGE_FLOW["mapping"]["fields"], "where": spec}

    found = problems(messages_tree, mapping={"fields": fields})

    assert found["mapping.fields.where"] == (
        f"expected a default: {gap}, and every such message would be a dead letter"
    )


def test_a_message_mapping_with_defaults_for_what_may_be_missing_loads(messages_tree) -> None:
    fields = {
        **MESSAGE_FLOW["mapping"]["fields"],
        "url": {"template": "https://c/{chat}", "default": "https://c/"},
        "group_name": {"from": "group_info.name", "default": ""},
    }
    messages_tree.flow("x", MESSAGE_FLOW, mapping={"fields": fields})

    assert set(messages_tree.load().flows["x"].mapping.fields) >= {"url", "group_name"}
