"""The id map never goes back: of two writes of one source record, the version read later is
kept, whichever write lands last (a slow pull racing a webhook)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sync_pipeline.state import idmap
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate

EARLY = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
LATE = EARLY + timedelta(seconds=5)
PENDING = idmap.Link(
    "oa", "approvals", "R1", "wecom", "messages", None, "h-pending", "v-pending", {"s": "p"}, EARLY
)
APPROVED = replace(
    PENDING,
    content_hash="h-approved",
    source_version="v-approved",
    payload={"s": "a"},
    seen_at=LATE,
)


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    return engine_for(database_url)


def held(engine) -> idmap.Link:
    with engine.connect() as conn:
        return idmap.lookup(conn, ("oa", "approvals"), ("wecom", "messages"), ["R1"])["R1"]


def test_a_version_read_later_replaces_the_one_held(engine) -> None:
    with engine.begin() as conn:
        idmap.upsert(conn, "f", [PENDING])
        idmap.upsert(conn, "f", [APPROVED])

    assert (held(engine).source_version, held(engine).seen_at) == ("v-approved", LATE)


def test_a_version_read_earlier_never_replaces_the_one_held(engine) -> None:
    with engine.begin() as conn:
        idmap.upsert(conn, "f", [APPROVED])
        idmap.upsert(conn, "f", [replace(PENDING, target_id="card-1")])

    link = held(engine)
    assert (link.source_version, link.content_hash, link.payload) == (
        "v-approved",
        "h-approved",
        {"s": "a"},
    )
    assert link.seen_at == LATE
    assert link.target_id == "card-1"  # the object the slower write made is still known
