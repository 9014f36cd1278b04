"""resolve: two-way merges field by field; our own echoes are dropped."""

from __future__ import annotations

from typing import Any

import pytest

from sync_pipeline.records import Record
from sync_pipeline.stages.resolve import Conflict, Policy, Side, TargetState, resolve

BASE = {"title": "Fix login", "status": "open", "owner": "zhangsan"}


def change(version: str = "2026-03-02T10:00:00Z", **fields: Any) -> Record:
    return Record("t1", version, version, {**BASE, **fields})


def target(version: str = "2026-03-02T09:00:00Z", synced: Any = BASE, **fields: Any) -> TargetState:
    return TargetState(payload={**BASE, **fields}, version=version, synced=synced)


def test_given_no_target_object_the_record_is_written_whole() -> None:
    record = change(status="done")

    result = resolve([record], {}, Policy.SOURCE_WINS, {})

    assert result.to_write == (record,)


def test_a_record_equal_to_what_we_last_synced_is_our_echo_and_dropped() -> None:
    echo = change()  # the source holds exactly what we wrote there

    result = resolve([echo], {"t1": target(status="done")}, Policy.SOURCE_WINS, {})

    assert result.to_write == ()
    assert result.skipped == (echo,)


def test_a_change_the_target_already_has_is_skipped() -> None:
    record = change(status="done")

    result = resolve([record], {"t1": target(status="done")}, Policy.SOURCE_WINS, {})

    assert result.skipped == (record,)


def test_concurrent_edits_of_different_fields_are_both_kept() -> None:
    record = change(status="done")  # the source changed status
    state = target(owner="lisi")  # meanwhile the target changed owner

    result = resolve([record], {"t1": state}, Policy.TARGET_WINS, {})

    [written] = result.to_write
    assert written.payload == {**BASE, "status": "done", "owner": "lisi"}


@pytest.mark.parametrize(
    ("policy", "source_version", "written_status"),
    [
        (Policy.SOURCE_WINS, "2026-03-02T08:00:00Z", "done"),
        (Policy.TARGET_WINS, "2026-03-02T10:00:00Z", None),
        (Policy.NEWEST_WINS, "2026-03-02T10:00:00Z", "done"),  # source newer
        (Policy.NEWEST_WINS, "2026-03-02T08:00:00Z", None),  # target newer
        (Policy.NEWEST_WINS, "2026-03-02T09:00:00Z", None),  # a tie keeps the target
    ],
)
def test_given_both_sides_changed_a_field_the_policy_decides(
    policy, source_version, written_status
) -> None:
    record = change(source_version, status="done")
    state = target("2026-03-02T09:00:00Z", status="blocked")

    result = resolve([record], {"t1": state}, policy, {})

    assert [r.payload["status"] for r in result.to_write] == (
        [written_status] if written_status else []
    )
    assert result.conflicts == ()


def test_newest_wins_compares_revision_numbers_as_numbers() -> None:
    record = change("10", status="done")

    result = resolve([record], {"t1": target("9", status="blocked")}, Policy.NEWEST_WINS, {})

    assert [r.payload["status"] for r in result.to_write] == ["done"]


def test_given_manual_policy_a_field_both_changed_is_a_conflict_and_not_written() -> None:
    record = change(status="done")

    result = resolve([record], {"t1": target(status="blocked")}, Policy.MANUAL, {})

    assert result.conflicts == (Conflict(record, "status", "done", "blocked"),)
    assert result.to_write == ()
    assert result.skipped == ()


def test_given_manual_policy_fields_without_conflict_are_still_written() -> None:
    record = change(status="done", title="Fix login on iOS")

    result = resolve([record], {"t1": target(status="blocked")}, Policy.MANUAL, {})

    [written] = result.to_write
    assert written.payload["title"] == "Fix login on iOS"
    assert written.payload["status"] == "blocked"
    assert [c.field for c in result.conflicts] == ["status"]


def test_a_field_the_target_owns_is_never_overwritten_from_the_source() -> None:
    record = change(owner="wangwu")

    result = resolve([record], {"t1": target()}, Policy.SOURCE_WINS, {"owner": Side.TARGET})

    assert result.to_write == ()


def test_a_field_the_source_owns_wins_even_over_a_target_edit() -> None:
    record = change(status="done")
    state = target(status="blocked")

    result = resolve([record], {"t1": state}, Policy.TARGET_WINS, {"status": Side.SOURCE})

    assert [r.payload["status"] for r in result.to_write] == ["done"]


def test_given_a_pair_never_synced_every_difference_is_settled_by_the_policy() -> None:
    record = change(status="done")
    state = target(synced=None, status="blocked")

    assert resolve([record], {"t1": state}, Policy.TARGET_WINS, {}).to_write == ()
    assert resolve([record], {"t1": state}, Policy.SOURCE_WINS, {}).to_write != ()
