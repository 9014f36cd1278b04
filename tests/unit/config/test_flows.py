"""flows/*.yaml: every problem of a flow file, each with its key path and what was expected."""

from __future__ import annotations

import re

import pytest

from sync_pipeline.config.flow import Mode, ResyncConfig
from sync_pipeline.records import NotifyKind
from sync_pipeline.stages.dedupe import DedupeKey
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
)
from sync_pipeline.stages.transform import ConstField, FromField, UserField, ValueMapField

from .conftest import FLOW


def test_a_minimal_flow_loads_with_its_defaults_and_the_file_stem_as_name(tree) -> None:
    tree.flow("approvals_to_wecom")

    flow = tree.load().flows["approvals_to_wecom"]

    assert flow.name == "approvals_to_wecom"
    assert (flow.mode, flow.lookback_s, flow.page_size, flow.enabled) == (
        Mode.INCREMENTAL,
        300,
        100,
        True,
    )
    assert flow.dedupe_key == DedupeKey(fields=("source_id",))
    assert (flow.rules, flow.notify) == (None, ())
    assert flow.mapping.fields["applicant"] == UserField("applicant", "oa", "wecom")


def test_a_missing_required_key_prints_as_syncctl_check_shows_it(tree) -> None:
    path = tree.flow("x", source={"connector": "oa"})

    error = tree.error()

    assert error.problems == [("source.stream", "Missing data for required field.")]
    assert str(error) == f"{path}: source.stream: Missing data for required field."


def test_a_misspelt_key_is_an_error_not_ignored(tree) -> None:
    tree.flow("x", tigger={"interval_s": 60})

    assert ("tigger", "Unknown field.") in tree.error().problems


def test_every_problem_in_a_file_is_reported_at_once(tree) -> None:
    tree.flow("x", source={"connector": "oa"}, page_size=0, mode="sometimes", trigger={})

    keys = sorted(key for key, _ in tree.error().problems)

    assert keys == ["mode", "page_size", "source.stream", "trigger"]


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"name": "Approvals To WeCom"}, "name", "expected lower_snake_case"),
        (
            {"trigger": {"interval_s": 60, "cron": "* * * * *"}},
            "trigger",
            "exactly one of interval_s and cron",
        ),
        ({"trigger": {"cron": "61 * * * *"}}, "trigger.cron", "five-field cron expression"),
        ({"trigger": {"cron": "0 * * * * *"}}, "trigger.cron", "five-field cron expression"),
        ({"trigger": {"interval_s": "often"}}, "trigger.interval_s", "Not a valid integer."),
        ({"cursor_field": None}, "cursor_field", "expected a field name when mode is incremental"),
        ({"lookback_s": -1}, "lookback_s", "greater than or equal to 0"),
        ({"mapping": {"fields": {}}}, "mapping.fields", "Shorter than minimum length 1."),
        (
            {"mapping": {"fields": {"t": {"from": "title", "const": 1}}}},
            "mapping.fields.t",
            "expected exactly one of",
        ),
        (
            {"mapping": {"fields": {"t": {"form": "title"}}}},
            "mapping.fields.t",
            "expected exactly one of",
        ),
        (
            {"mapping": {"fields": {"t": {"from": "title", "defualt": 1}}}},
            "mapping.fields.t.defualt",
            "Unknown field.",
        ),
        (
            {"mapping": {"fields": {"t": {"from": "a b"}}}},
            "mapping.fields.t.from",
            "expected a field name or path",
        ),
        (
            {"mapping": {"fields": {"t": {"template": "Leave {title"}}}},
            "mapping.fields.t.template",
            "expected a template",
        ),
        (
            {"mapping": {"fields": {"t": {"template": "{title!r}"}}}},
            "mapping.fields.t.template",
            "expected a template",
        ),
        (
            {
                "mapping": {
                    "fields": {
                        "u": {"user": {"from": "a", "from_system": "sap", "to_system": "wecom"}}
                    }
                }
            },
            "mapping.fields.u.user.from_system",
            "expected oa, the source connector's system",
        ),
        (
            {"mapping": {"fields": {"s": {"value_map": {"from": "status"}}}}},
            "mapping.fields.s.value_map.map",
            "Missing data",
        ),
        (
            {"rules": {"any": [{"flag": "important"}, {"regex": "(unclosed"}]}},
            "rules.any.1.regex",
            "expected a valid regular expression",
        ),
        ({"rules": {"field": "status"}}, "rules", "expected exactly one of"),
        ({"rules": {"all": []}}, "rules.all", "Shorter than minimum length 1."),
        (
            {"rules": {"not": {"field": "status", "equals": 1, "in": [1]}}},
            "rules.not",
            "got equals, in",
        ),
        ({"rules": {"equals": "approved"}}, "rules.field", "Missing data for required field."),
        ({"dedupe_key": ["source_id", "stauts"]}, "dedupe_key", "expected a mapped field"),
        ({"dedupe_key": "{source_id}:{stauts}"}, "dedupe_key", "got stauts"),
        ({"two_way": True}, "two_way", "not implemented yet"),
        ({"ownership": {"status": "source"}}, "ownership", "not implemented yet"),
        ({"conflict": "newest_wins"}, "conflict", "not implemented yet"),
        ({"two_way": "sometimes"}, "two_way", "Not a valid boolean."),
        ({"notify": [{"when": {"flag": "x"}, "send": "card"}]}, "notify.0.to", "recipient"),
        (
            {"notify": [{"when": {"flag": "x"}, "send": "card", "to": "approvers"}]},
            "notify.0.to",
            "expected a mapped field",
        ),
        (
            {"notify": [{"when": {"flag": "x"}, "send": "fax", "to": "applicant"}]},
            "notify.0.send",
            "Must be one of",
        ),
        (
            {"notify": [{"when": {"flag": "x"}, "send": "update_card", "to": "applicant"}]},
            "notify.0.to",
            "expected no recipients",
        ),
        (
            {
                "notify": [
                    {
                        "when": {"flag": "x"},
                        "send": "message",
                        "to": "applicant",
                        "text": "{title} by {who}",
                    }
                ]
            },
            "notify.0.text",
            "got who",
        ),
        (
            {
                "notify": [
                    {
                        "when": {"field": "status", "changed_to": "approved"},
                        "send": "message",
                        "to": "applicant",
                    }
                ]
            },
            "notify.0.when",
            "expected no changed_to here",
        ),
    ],
)
def test_a_bad_flow_setting_is_named_with_what_was_expected(tree, changes, key, expected) -> None:
    tree.flow("x", **changes)

    problems = dict(tree.error().problems)

    assert key in problems, problems
    assert expected in problems[key]


# What a flow over chat messages maps: the names its rules read.
MESSAGE_MAPPING = {
    "fields": {
        name: {"from": name}
        for name in ("title", "status", "text", "sender", "department", "group", "flags")
    }
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"field": "status", "equals": "approved"}, Equals("status", "approved")),
        (
            {"field": "status", "in": ["approved", "rejected"]},
            In("status", ("approved", "rejected")),
        ),
        ({"field": "status", "changed_to": "approved"}, ChangedTo("status", ("approved",))),
        ({"keywords": ["budget", "deadline"]}, Keywords("text", ("budget", "deadline"))),
        (
            {"keywords": "urgent", "field": "title", "case_sensitive": True},
            Keywords("title", ("urgent",), True),
        ),
        ({"flag": "important"}, Flag("important")),
        ({"sender_in": ["zhangsan"]}, In("sender", ("zhangsan",))),
        ({"department_in": "Engineering"}, In("department", ("Engineering",))),
        ({"group_in": ["proj-alpha"]}, In("group", ("proj-alpha",))),
        (
            {"all": [{"group_in": ["proj-alpha"]}, {"not": {"flag": "draft"}}]},
            AllOf((In("group", ("proj-alpha",)), Not(Flag("draft")))),
        ),
        ({"any": [{"flag": "important"}]}, AnyOf((Flag("important"),))),
    ],
)
def test_each_rule_shape_builds_its_condition(tree, rule, expected) -> None:
    tree.flow("x", rules=rule, mapping=MESSAGE_MAPPING)

    assert tree.load().flows["x"].rules == expected


def test_a_regex_rule_is_compiled_once_at_load(tree) -> None:
    tree.flow("x", rules={"regex": r"(?i)\bdecided\b"}, mapping=MESSAGE_MAPPING)

    assert tree.load().flows["x"].rules == Regex("text", re.compile(r"(?i)\bdecided\b"))


def test_mapping_specs_keep_their_order_and_defaults(tree) -> None:
    fields = {
        "kind": {"const": "approval"},
        "url": {"from": "url", "default": None},
        "label": {"value_map": {"from": "status", "map": {"approved": "OK"}, "default": "?"}},
    }
    tree.flow("x", mapping={"fields": fields})

    mapping = tree.load().flows["x"].mapping

    assert list(mapping.fields) == ["kind", "url", "label"]
    assert mapping.fields["kind"] == ConstField("approval")
    assert mapping.fields["url"] == FromField("url", default=None)
    assert mapping.fields["label"] == ValueMapField("status", {"approved": "OK"}, default="?")


def test_given_two_way_settings_each_is_refused_as_not_implemented_rather_than_ignored(
    tree,
) -> None:
    tree.flow(
        "x", two_way=True, conflict="newest_wins", ownership={"status": "source", "title": "target"}
    )

    problems = dict(tree.error().problems)

    assert set(problems) == {"two_way", "conflict", "ownership"}
    assert all(p.startswith("not implemented yet: flows sync one way") for p in problems.values())


def test_given_two_way_false_as_written_the_flow_loads(tree) -> None:
    tree.flow("x", two_way=False)

    assert "x" in tree.load().flows


def test_notify_rules_load_in_order(tree) -> None:
    notify = [
        {"when": {"field": "status", "equals": "pending"}, "send": "card", "to": "applicant"},
        {
            "when": {"field": "status", "equals": "approved"},
            "send": "update_card",
            "once_per": "status",
        },
    ]
    tree.flow("x", notify=notify)

    rules = tree.load().flows["x"].notify

    assert [(r.kind, r.to, r.once_per) for r in rules] == [
        (NotifyKind.CARD, "applicant", None),
        (NotifyKind.UPDATE_CARD, None, "status"),
    ]


def test_a_cron_trigger_and_a_full_mode_flow_need_no_cursor(tree) -> None:
    tree.flow("x", trigger={"cron": "*/5 * * * *", "webhook": True}, mode="full", cursor_field=None)

    flow = tree.load().flows["x"]

    assert (flow.trigger.cron, flow.trigger.interval_s, flow.trigger.webhook) == (
        "*/5 * * * *",
        None,
        True,
    )
    assert flow.cursor_field is None


def test_the_flow_template_is_valid(tree) -> None:
    """Guards the other tests: FLOW itself must load."""
    tree.flow("x", FLOW)

    assert "x" in tree.load().flows


def test_a_flow_without_a_resync_block_resyncs_at_half_the_vendors_limits(tree) -> None:
    tree.flow("x")

    assert tree.load().flows["x"].resync == ResyncConfig(quota_share=0.5)


def test_a_resync_block_sets_the_share_of_the_limits_a_resync_may_use(tree) -> None:
    tree.flow("x", resync={"quota_share": 0.25})

    assert tree.load().flows["x"].resync.quota_share == 0.25


@pytest.mark.parametrize("share", [0, -0.5, 1.5, "half"])
def test_a_resync_share_outside_zero_to_one_is_refused(tree, share) -> None:
    tree.flow("x", resync={"quota_share": share})

    assert [key for key, _ in tree.error().problems] == ["resync.quota_share"]


def test_a_misspelt_resync_key_is_refused(tree) -> None:
    tree.flow("x", resync={"quota": 0.5})

    assert ("resync.quota", "Unknown field.") in tree.error().problems
