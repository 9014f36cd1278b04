"""rules: which records and events sync, and the batch filter built on them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sync_pipeline.records import Record
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
    evaluate,
    filter_batch,
)

MESSAGE: dict[str, Any] = {
    "id": "m1",
    "sender": "zhangsan",
    "group": "proj-alpha",
    "department": ["Engineering", "Sales"],
    "text": "We DECIDED to ship on Friday",
    "flags": ["decision"],
    "sent_at": "2026-03-02T09:30:00Z",
}


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (Equals("sender", "zhangsan"), True),
        (Equals("sender", "lisi"), False),
        (Equals("missing.path", None), False),
        (In("group", ("proj-alpha", "proj-beta")), True),
        (In("department", ("Sales",)), True),  # any of a list value
        (In("department", ("HR",)), False),
        (In("missing", ("x",)), False),
        (Keywords("text", ("decided",)), True),  # case-insensitive by default
        (Keywords("text", ("decided",), case_sensitive=True), False),
        (Keywords("text", ("cancel", "postpone")), False),
        (Regex("text", re.compile(r"ship on \w+day")), True),
        (Regex("text", re.compile(r"^ship")), False),
        (Flag("decision"), True),
        (Flag("important"), False),
        (AllOf((Equals("sender", "zhangsan"), Flag("decision"))), True),
        (AllOf((Equals("sender", "zhangsan"), Flag("important"))), False),
        (AnyOf((Flag("important"), Flag("decision"))), True),
        (AnyOf((Flag("important"), Equals("sender", "lisi"))), False),
        (Not(Flag("important")), True),
    ],
)
def test_given_a_message_a_rule_holds_or_not(rule: Rule, expected: bool) -> None:
    assert evaluate(rule, MESSAGE) is expected


# -- only approved/rejected transitions notify --------------------------------------------

DECIDED = ChangedTo("status", ("approved", "rejected"))


@pytest.mark.parametrize(
    ("before", "now", "notifies"),
    [
        ("pending", "approved", True),
        ("pending", "rejected", True),
        (None, "approved", True),  # first seen already decided: nobody was told yet
        ("approved", "approved", False),  # re-read, or edited after the decision
        ("pending", "pending", False),
        ("approved", "revoked", False),
        ("pending", "revoked", False),
    ],
)
def test_only_approved_or_rejected_transitions_notify(before, now, notifies) -> None:
    previous = None if before is None else {"status": before}

    assert evaluate(DECIDED, {"status": now}, previous) is notifies


# -- messages marked important or containing configured keywords --------------------------

IMPORTANT_OR_KEYWORDS = AnyOf((Flag("important"), Keywords("text", ("deadline", "budget"))))


@pytest.mark.parametrize(
    ("flags", "text", "syncs"),
    [
        (["important"], "lunch?", True),
        ([], "The Budget is approved", True),
        ([], "new deadline: Friday", True),
        ([], "lunch?", False),
        (["decision"], "lunch?", False),
    ],
)
def test_messages_marked_important_or_with_keywords_sync(flags, text, syncs) -> None:
    assert evaluate(IMPORTANT_OR_KEYWORDS, {"flags": flags, "text": text}) is syncs


# -- messages in a project group tagged as decisions ---------------------------------------

PROJECT_DECISIONS = AllOf((In("group", ("proj-alpha", "proj-beta")), Flag("decision")))


@pytest.mark.parametrize(
    ("group", "flags", "syncs"),
    [
        ("proj-alpha", ["decision"], True),
        ("proj-beta", ["important", "decision"], True),
        ("proj-alpha", [], False),
        ("random-chat", ["decision"], False),
        (None, ["decision"], False),  # a direct message
    ],
)
def test_decisions_in_project_groups_sync(group, flags, syncs) -> None:
    assert evaluate(PROJECT_DECISIONS, {"group": group, "flags": flags}) is syncs


# -- the batch filter -----------------------------------------------------------------------


def record(source_id: str, status: str) -> Record:
    return Record(source_id, "v", "c", {"status": status})


def test_the_filter_reads_each_records_previous_payload_by_source_id() -> None:
    batch = [record("1", "approved"), record("2", "approved"), record("3", "pending")]
    previous = {"1": {"status": "pending"}, "2": {"status": "approved"}}

    result = filter_batch(batch, DECIDED, previous)

    assert [r.source_id for r in result.kept] == ["1"]
    assert [r.source_id for r in result.skipped] == ["2", "3"]


def test_without_a_rule_every_record_is_kept() -> None:
    batch = [record("1", "approved"), record("2", "revoked")]

    result = filter_batch(batch, None, {})

    assert result.kept == tuple(batch)
    assert result.skipped == ()
