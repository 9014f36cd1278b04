"""Column types for what comes from outside, so that no content can make a state write fail.

The pipeline cleans records where they enter it (records.Record.cleaned, the decision is in
sync_pipeline/untrusted.py): a NUL or a lone surrogate becomes U+FFFD, everything else is kept
exactly. This module makes the same decision a property of the state layer, so that a value
that reached a write by another road (a vendor's error text, a webhook's event id, a user
name from a directory, a reason quoting a value) cannot fail it either:

- `CleanText`: text kept as sent but for what PostgreSQL refuses; with a `limit`, a long
  value is kept as a bounded excerpt (errors and reasons are read by people, not parsed);
- `OutsideId`: an id we key on or index (btree rows hold at most 2704 bytes): cleaned, and
  past MAX_ID_CHARS a prefix plus a digest of the whole, so distinct ids stay distinct. The
  pipeline dead-letters a record whose own id is that long before it is keyed anywhere;
- `json_text`: the engine's serializer for every jsonb value, which cleans every string in
  it (keys included) and turns a number JSON cannot carry (NaN) into null.

Reading gives the stored (clean) value back; the same bound parameter is cleaned the same way
in a WHERE clause, so a lookup by a value finds what a write of it stored.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from sync_pipeline.untrusted import bounded_id, clean_json, clean_text, excerpt

ERROR_CHARS = 1000  # a run's or an event's error: one clear reason, never a payload
REASON_CHARS = 2000  # a dead letter's reason may quote the value it is about


class CleanText(TypeDecorator[str]):
    """Outside text, kept as sent except what PostgreSQL refuses; bounded past `limit`."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if not isinstance(value, str):
            return value
        return clean_text(value) if self.limit is None else excerpt(value, self.limit)


class OutsideId(TypeDecorator[str]):
    """An outside id we key on: cleaned and bounded (untrusted.bounded_id)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return bounded_id(value) if isinstance(value, str) else value


def json_text(value: Any) -> str:
    """jsonb's serializer: `value` with every string cleaned, as JSON text."""
    return json.dumps(clean_json(value))
