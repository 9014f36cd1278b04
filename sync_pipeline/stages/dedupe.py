"""Dedupe: drop records already written with the same content, and superseded copies.

Pages overlap by design (the cursor is read with `>=` minus a lookback window), so the same
record arrives again and again; only a change in content makes it worth a write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sync_pipeline.records import Record, content_hash
from sync_pipeline.stages import Template, as_text, lookup

SOURCE_ID = "source_id"  # the name that means Record.source_id in a dedupe key


@dataclass(frozen=True)
class DedupeKey:
    """Which records are "the same": a list of field names, or a template over them.

    Names are fields of the mapped payload, plus `source_id`. The default, the source id
    alone, is what the id map is keyed by.
    """

    fields: tuple[str, ...] = (SOURCE_ID,)
    template: Template | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self.template.names if self.template is not None else self.fields

    def of(self, record: Record) -> str:
        values = {**record.payload, SOURCE_ID: record.source_id}
        if self.template is not None:
            return self.template.render(values)
        return "|".join(as_text(lookup(values, name)) for name in self.fields)


BY_SOURCE_ID = DedupeKey()


@dataclass(frozen=True)
class DedupeResult:
    fresh: tuple[Record, ...]
    skipped: tuple[Record, ...]


def dedupe(
    batch: Sequence[Record], written: Mapping[str, str], key: DedupeKey = BY_SOURCE_ID
) -> DedupeResult:
    """Split a batch into records to write and records already written.

    `written` maps dedupe key -> content hash last written. A page can repeat a record
    that changed while we paged (lookback window), so the last copy in the batch wins.
    """
    keys = [key.of(record) for record in batch]
    last = dict(zip(keys, batch, strict=True))
    fresh: list[Record] = []
    skipped: list[Record] = []
    for record_key, record in zip(keys, batch, strict=True):
        superseded = last[record_key] is not record
        unchanged = written.get(record_key) == content_hash(record.payload)
        if superseded or unchanged:
            skipped.append(record)
        else:
            fresh.append(record)
    return DedupeResult(fresh=tuple(fresh), skipped=tuple(skipped))
