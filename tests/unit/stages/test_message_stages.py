"""Stages over chat messages: extracting a project id, the paths a rule reads, and planning OA
todos and project comments with their effect keys."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sync_pipeline.records import NotifyKind, Record, WriteOp
from sync_pipeline.stages import Template
from sync_pipeline.stages.plan import NotifyRule, effect_key, plan_writes
from sync_pipeline.stages.rules import (
    AllOf,
    AnyOf,
    ChangedTo,
    Equals,
    Flag,
    In,
    Keywords,
    Not,
    Regex,
    Rule,
    paths,
)
from sync_pipeline.stages.transform import ExtractField, RecordMapping, transform

FLOW = "feishu_important_messages_to_oa_todos"
TARGET = "oa/todos"


class NoDirectory:
    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        return None

    def employee_no(self, system: str, user_id: str) -> str | None:
        return None


def message(message_id: str = "om_1", **payload: Any) -> Record:
    body = {"text": "we ship Friday", "mentioned": ["101", "102"], "project": "P001", **payload}
    return Record(message_id, "2026-03-02T09:30:00Z", "2026-03-02T09:30:00Z", body)


# -- extract ----------------------------------------------------------------------------------
PROJECT = RecordMapping(
    {"project": ExtractField("group_info.description", re.compile(r"\bP\d{3,}\b"), None)}
)


@pytest.mark.parametrize(
    ("group_info", "project"),
    [
        ({"description": "Project P001"}, "P001"),
        ({"description": "Project P0042, phase 2"}, "P0042"),
        ({"description": "Engineering team"}, None),
        (None, None),  # a direct message has no group
    ],
)
def test_a_project_id_is_taken_out_of_the_groups_description(group_info, project) -> None:
    record = Record("om_1", "v", "c", {"group_info": group_info})

    [mapped] = transform([record], PROJECT, NoDirectory()).records

    assert mapped.payload["project"] == project


def test_an_extract_with_a_group_returns_the_group() -> None:
    mapping = RecordMapping({"n": ExtractField("text", re.compile(r"ticket #(\d+)"))})
    record = Record("om_1", "v", "c", {"text": "see ticket #4521 please"})

    [mapped] = transform([record], mapping, NoDirectory()).records

    assert mapped.payload["n"] == "4521"


def test_no_match_without_a_default_is_a_dead_letter_naming_the_pattern() -> None:
    mapping = RecordMapping({"project": ExtractField("group_info.name", re.compile(r"P\d+"))})
    record = Record("om_1", "v", "c", {"group_info": {"name": "Lunch"}})

    result = transform([record], mapping, NoDirectory())

    assert result.records == ()
    [(dead, reason)] = result.dead
    assert dead is record
    assert reason == r"group_info.name has nothing matching 'P\\d+' (for project)"


# -- the paths a rule reads ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Equals("status", "approved"), ("status",)),
        (In("sender", ("a",)), ("sender",)),
        (ChangedTo("status", ("approved",)), ("status",)),
        (Keywords("text", ("budget",)), ("text",)),
        (Regex("title", re.compile("x")), ("title",)),
        (Flag("important"), ("flags",)),
        (
            AllOf((Flag("decision"), AnyOf((In("group", ("g",)), Not(Equals("project", None)))))),
            ("flags", "group", "project"),
        ),
    ],
)
def test_a_rule_names_every_path_it_reads(rule: Rule, expected: tuple[str, ...]) -> None:
    assert paths(rule) == expected


# -- planning todos and project comments ----------------------------------------------------
TODO = NotifyRule(when=None, kind=NotifyKind.TODO, to="mentioned")
COMMENT = NotifyRule(
    when=None,
    kind=NotifyKind.PROJECT_COMMENT,
    to="project",
    text=Template.parse("Decision: {text}"),
)


def test_a_message_plans_one_todo_per_mentioned_person() -> None:
    writes = plan_writes(FLOW, [message()], [TODO], {}, target=TARGET)

    assert [(w.op, w.notification.kind, w.notification.to) for w in writes] == [
        (WriteOp.CREATE, "todo", "101"),
        (WriteOp.CREATE, "todo", "102"),
    ]
    assert {w.source_id for w in writes} == {"om_1"}


def test_a_todos_key_is_derived_from_flow_message_kind_and_recipient() -> None:
    [first, _] = plan_writes(FLOW, [message()], [TODO], {}, target=TARGET)

    assert first.effect_key == effect_key(
        FLOW, TARGET, "om_1", "2026-03-02T09:30:00Z", "todo", "101"
    )


def test_a_message_delivered_twice_plans_the_same_keys() -> None:
    once = plan_writes(FLOW, [message()], [TODO], {}, target=TARGET)
    twice = plan_writes(FLOW, [message(), message()], [TODO], {}, target=TARGET)

    assert [w.effect_key for w in twice] == [w.effect_key for w in once]


def test_a_message_mentioning_nobody_plans_no_todo() -> None:
    assert plan_writes(FLOW, [message(mentioned=[])], [TODO], {}, target=TARGET) == []


def test_a_decision_plans_one_comment_to_its_project_with_the_rules_text() -> None:
    [write] = plan_writes(FLOW, [message()], [COMMENT], {}, target="oa/project_progress")

    assert (write.notification.kind, write.notification.to) == ("project_comment", "P001")
    assert write.notification.content["text"] == "Decision: we ship Friday"


def test_a_rule_without_when_applies_to_every_record_the_flow_keeps() -> None:
    guarded = NotifyRule(when=Flag("important"), kind=NotifyKind.TODO, to="mentioned")

    assert plan_writes(FLOW, [message()], [guarded], {}, target=TARGET) == []
    assert len(plan_writes(FLOW, [message()], [TODO], {}, target=TARGET)) == 2
