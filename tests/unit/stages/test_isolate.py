"""isolated: a record the stages raise on is set apart with its reason; the batch goes on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.records import Record
from sync_pipeline.stages import Template
from sync_pipeline.stages.dedupe import dedupe
from sync_pipeline.stages.isolate import isolated
from sync_pipeline.stages.transform import FromField, RecordMapping, TemplateField, transform


class NoOne:
    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        return None

    def employee_no(self, system: str, user_id: str) -> str | None:
        return None


MAPPING = RecordMapping(
    {
        "title": FromField("title"),
        "text": TemplateField(Template.parse("{title}: {form.reason}")),
    }
)


def nested(depth: int) -> Any:
    """A value nested deeper than Python recurses: a renderer or a hash raises on it."""
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def approval(source_id: str, reason: Any) -> Record:
    payload = {"title": f"Leave {source_id}", "form": {"reason": reason}}
    return Record(source_id, "v1", "2026-03-02T09:30:00Z", payload)


def stages(batch: Sequence[Record]) -> tuple[str, ...]:
    """transform, then dedupe (which hashes each payload): the source ids to write."""
    mapped = transform(batch, MAPPING, NoOne())
    return tuple(r.source_id for r in dedupe(mapped.records, {}).fresh)


def why(exc: Exception) -> str:
    return f"it could not be planned: {type(exc).__name__}"


def test_given_a_record_a_template_raises_on_then_it_alone_is_set_apart_with_the_reason() -> None:
    batch = [approval("1", "sick"), approval("2", nested(100_000)), approval("3", "move")]

    planned, dead = isolated(batch, stages, why)

    assert planned == ("1", "3")
    assert [(d.record.source_id, d.reason) for d in dead] == [
        ("2", "it could not be planned: RecursionError")
    ]


def test_a_record_set_apart_keeps_the_class_of_the_error_it_raised() -> None:
    _, dead = isolated([approval("1", nested(100_000))], stages, why)

    assert [d.error_class for d in dead] == ["RecursionError"]


def test_given_a_batch_the_stages_handle_then_nothing_is_set_apart() -> None:
    batch = [approval("1", "sick"), approval("2", ["nested", {"within": ["limits"]}])]

    assert isolated(batch, stages, why) == (("1", "2"), ())


def test_given_a_transient_error_then_it_propagates_and_no_record_is_blamed() -> None:
    def down(batch: Sequence[Record]) -> None:
        raise ServiceUnavailable("PostgreSQL", "postgresql://db/sync", "connection refused")

    with pytest.raises(ServiceUnavailable):
        isolated([approval("1", "sick")], down, why)
