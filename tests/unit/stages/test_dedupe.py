"""dedupe: only records whose content changed since the last write go on."""

from __future__ import annotations

from typing import Any

from sync_pipeline.records import Record, content_hash
from sync_pipeline.stages import Template
from sync_pipeline.stages.dedupe import DedupeKey, dedupe


def record(source_id: str, **payload: Any) -> Record:
    return Record(source_id, "v", "c", payload)


def test_a_record_written_with_the_same_content_is_skipped() -> None:
    same = record("1", status="pending")

    result = dedupe([same], {"1": content_hash({"status": "pending"})})

    assert result.skipped == (same,)
    assert result.fresh == ()


def test_a_changed_or_new_record_is_fresh() -> None:
    changed, new = record("1", status="approved"), record("2", status="pending")

    result = dedupe([changed, new], {"1": content_hash({"status": "pending"})})

    assert result.fresh == (changed, new)


def test_given_two_copies_in_a_batch_the_last_wins() -> None:
    first, last = record("1", status="pending"), record("1", status="approved")

    result = dedupe([first, last], {})

    assert result.fresh == (last,)
    assert result.skipped == (first,)


def test_a_key_of_several_fields_tells_records_apart_by_all_of_them() -> None:
    key = DedupeKey(fields=("source_id", "status"))
    pending, approved = record("1", status="pending"), record("1", status="approved")

    result = dedupe([pending, approved], {"1|pending": content_hash(pending.payload)}, key)

    assert result.fresh == (approved,)
    assert result.skipped == (pending,)


def test_a_template_key_renders_from_the_payload_and_source_id() -> None:
    key = DedupeKey(template=Template.parse("{source_id}:{status}"))

    assert key.of(record("8812", status="approved")) == "8812:approved"
