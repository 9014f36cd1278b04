"""No content can make a state write fail (issue 9): whatever text a vendor, a webhook or a
directory sends (a NUL, a lone surrogate, a right-to-left mark, a megabyte), every state table
stores it, cleaned as sync_pipeline/untrusted.py decides, and a lookup by the same value finds it.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_pipeline.connectors.base import DirectoryUser
from sync_pipeline.pipeline import directory
from sync_pipeline.records import EventKind, InboundEvent, Record
from sync_pipeline.state import deadletters, effects, idmap, inbound, pages, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.untrusted import bounded_id, clean_json, clean_text

# Code points each layer below us refuses or treats specially, beside any other.
HOSTILE = ["\x00", "\ud800", "\udfff", "\u200f", "\u202e", "\ufeff", *"*_[]()<>#@`~|\\"]
characters = st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE))
short_text = st.text(characters, max_size=40)
# Now and then a megabyte: a row, a key and a log line must all survive one.
text = st.one_of(short_text, short_text.map(lambda t: (t or "L") * (1_000_000 // len(t or "L"))))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(width=16) | short_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=12,
)
POISON = "a\x00b\ud800c"  # what stopped every approvals flow (issue 9), always tried first
EXAMPLES = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def engine(base_urls: tuple[str, str]):
    """One migrated schema for every example of the module (examples use ids of their own)."""
    from sync_pipeline.state.db import with_search_path

    schema = f"t_content_{uuid.uuid4().hex[:8]}"
    admin = engine_for(base_urls[1])
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = with_search_path(base_urls[1], schema)
    migrate(url)
    yield engine_for(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def kept(value: Any) -> Any:
    """What a state table gives back for a JSON value: cleaned, with NaN as null."""
    return clean_json(value)


def unique(value: str) -> str:
    return f"{uuid.uuid4().hex[:8]}{value}"


@EXAMPLES
@given(source_id=short_text, version=text, payload=json_values)
@example(source_id=POISON, version=POISON, payload={POISON: float("nan")})
def test_given_any_content_a_page_stores_it_and_gives_it_back_cleaned(
    engine, source_id: str, version: str, payload: Any
) -> None:
    record = Record(unique(source_id), version, "2026-01-01T00:00:00Z", {"v": payload})
    with engine.begin() as conn:
        run_id = runs.start(conn, "f", "test", 1, None)
        page_id = pages.store(conn, run_id, "f", 0, [record], next_token=version)
        stored = pages.get(conn, page_id)

    [back] = stored.records
    assert back.source_id == clean_text(record.source_id)
    assert back.version == clean_text(version)
    assert back.payload == {"v": kept(payload)}


@EXAMPLES
@given(source_id=text, target_id=text, payload=json_values)
@example(source_id=POISON, target_id=POISON * 100, payload=POISON)
def test_given_any_ids_and_payload_the_id_map_keeps_a_link_found_by_the_same_id(
    engine, source_id: str, target_id: str, payload: Any
) -> None:
    source_id = unique(source_id)
    link = idmap.Link(
        "oa", "approvals", source_id, "im", "messages", target_id, "h", "v", {"v": payload}
    )
    with engine.begin() as conn:
        idmap.upsert(conn, "f", [link])
        found = idmap.lookup(conn, ("oa", "approvals"), ("im", "messages"), [source_id])

    [back] = found.values()
    assert back.source_id == bounded_id(source_id)
    assert back.target_id == bounded_id(target_id)
    assert back.payload == {"v": kept(payload)}


@EXAMPLES
@given(source_id=text, reason=text, record=json_values)
@example(source_id=POISON, reason=POISON, record=POISON)
def test_given_any_content_a_dead_letter_is_kept_once(
    engine, source_id: str, reason: str, record: Any
) -> None:
    flow = unique("f")
    letter = (source_id, {"record": record}, reason, "RecordError")
    with engine.begin() as conn:
        first = deadletters.add(conn, flow, None, [letter])
        again = deadletters.add(conn, flow, None, [letter])
        [stored] = deadletters.open_letters(conn, flow)

    assert (first, again) == (1, 0)
    assert stored.source_id == bounded_id(source_id)
    assert stored.record == {"record": kept(record)}
    assert stored.reason.startswith(clean_text(reason[:100]))


@EXAMPLES
@given(error=text)
@example(error=POISON)
def test_given_any_error_text_a_run_finishes_with_it_bounded(engine, error: str) -> None:
    with engine.begin() as conn:
        run_id = runs.start(conn, "f", "test", 1, None)
        runs.finish(conn, run_id, runs.RunStatus.FAILED, error=error)
        run = runs.get(conn, run_id)

    assert run is not None
    assert run.error is not None
    assert run.error.startswith(clean_text(error[:100]))
    assert len(run.error) < 1100


@EXAMPLES
@given(source_id=text, recipient=text, vendor_ref=text, detail=json_values)
@example(source_id=POISON, recipient=POISON, vendor_ref=POISON, detail=POISON)
def test_given_any_vendor_answer_an_effect_records_it(
    engine, source_id: str, recipient: str, vendor_ref: str, detail: Any
) -> None:
    key = unique("k")
    about = effects.About(source_id=source_id, kind="card", recipient=recipient)
    with engine.begin() as conn:
        effects.claim(conn, "f", "im", [key], {key: about})
        effects.finish(
            conn,
            key,
            effects.EffectStatus.FAILED,
            vendor_ref,
            error=vendor_ref,
            detail={"d": detail},
        )
        stored = effects.get(conn, [key])[key]

    assert stored.status is effects.EffectStatus.FAILED
    assert stored.vendor_ref == bounded_id(vendor_ref)
    assert stored.recipient == bounded_id(recipient)


@EXAMPLES
@given(event_id=text, data=json_values)
@example(event_id=POISON, data=POISON)
def test_given_any_event_id_and_data_an_inbound_event_is_recorded_once(
    engine, event_id: str, data: Any
) -> None:
    event = InboundEvent("c", "oa", unique(event_id), EventKind.MESSAGE, "t", {"d": data})
    with engine.begin() as conn:
        first = inbound.record(conn, event)
        again = inbound.record(conn, event)
        assert first is not None
        stored = inbound.get(conn, first)

    assert again is None
    assert stored is not None
    assert stored.event.data == {"d": kept(data)}


@EXAMPLES
@given(user_id=text, employee_no=text, email=text, name=text)
@example(user_id=POISON, employee_no=POISON, email=POISON, name=POISON)
def test_given_any_directory_entry_the_directory_keeps_it(
    engine, user_id: str, employee_no: str, email: str, name: str
) -> None:
    system = unique("im")
    person = DirectoryUser(user_id, employee_no, email, email, name)
    with engine.begin() as conn:
        assert directory.replace_users(conn, system, [person]) == 1
