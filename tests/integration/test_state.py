"""State tables behave as DESIGN.md requires: cursors, fences, effects, pages, locks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from sync_pipeline.errors import CursorRegression, StaleFence
from sync_pipeline.records import EventKind, InboundEvent, Record
from sync_pipeline.state import cursors, deadletters, effects, idmap, inbound, locks, pages, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    return engine_for(database_url)


def record(n: int, cursor: str) -> Record:
    return Record(f"R{n}", f"v{n}", cursor, {"id": f"R{n}"})


def test_cursor_moves_forward_with_the_current_fence(engine) -> None:
    with engine.begin() as conn:
        fence = cursors.next_fence(conn, "f")
        cursors.advance(conn, "f", fence, "2026-01-02T00:00:00Z")

    with engine.begin() as conn:
        assert cursors.get(conn, "f").cursor == "2026-01-02T00:00:00Z"


def test_cursor_never_moves_backwards(engine) -> None:
    with engine.begin() as conn:
        fence = cursors.next_fence(conn, "f")
        cursors.advance(conn, "f", fence, "2026-01-02T00:00:00Z")

    with pytest.raises(CursorRegression), engine.begin() as conn:
        cursors.advance(conn, "f", fence, "2026-01-01T00:00:00Z")


def test_an_older_fence_cannot_commit(engine) -> None:
    with engine.begin() as conn:
        old = cursors.next_fence(conn, "f")
        new = cursors.next_fence(conn, "f")

    with pytest.raises(StaleFence) as caught, engine.begin() as conn:
        cursors.advance(conn, "f", old, "2026-01-02T00:00:00Z")

    assert caught.value.current == new
    with engine.begin() as conn:
        assert cursors.get(conn, "f").cursor is None


def test_admin_reset_moves_back_and_fences_out_running_pulls(engine) -> None:
    with engine.begin() as conn:
        fence = cursors.next_fence(conn, "f")
        cursors.advance(conn, "f", fence, "2026-05-01T00:00:00Z")
        cursors.reset(conn, "f", None)

    with engine.begin() as conn:
        assert cursors.get(conn, "f").cursor is None
        with pytest.raises(StaleFence):
            cursors.advance(conn, "f", fence, "2026-06-01T00:00:00Z")


def test_claiming_an_effect_twice_keeps_one_row_and_counts_attempts(engine) -> None:
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["k1"])
        claimed = effects.claim(conn, "f", "wecom", ["k1"])

    assert claimed["k1"].status is effects.EffectStatus.PENDING
    assert claimed["k1"].attempts == 2


def test_a_done_effect_is_never_changed_again(engine) -> None:
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["k1"])
        effects.finish(conn, "k1", effects.EffectStatus.DONE, vendor_ref="msg-1")
        effects.finish(conn, "k1", effects.EffectStatus.FAILED, error="late failure")
        again = effects.claim(conn, "f", "wecom", ["k1"])

    assert again["k1"].status is effects.EffectStatus.DONE
    assert again["k1"].vendor_ref == "msg-1"
    assert again["k1"].attempts == 1


def test_a_card_effect_keeps_what_it_is_and_the_vendors_handles(engine) -> None:
    about = {"k1": effects.About(source_id="R1", kind="card", recipient="u1")}
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["k1"], about)
        effects.finish(
            conn, "k1", effects.EffectStatus.DONE, "msg-1", detail={"response_code": "rc"}
        )

    with engine.begin() as conn:
        (card,) = effects.done_for_source(conn, "f", "R1", kind="card")
    assert (card.recipient, card.vendor_ref, card.detail) == (
        "u1",
        "msg-1",
        {"response_code": "rc"},
    )


def event(event_id: str) -> InboundEvent:
    return InboundEvent(
        "oa", "oa", event_id, EventKind.APPROVAL_CHANGED, "2026-01-01T00:00:00Z", {"source_id": "1"}
    )


def test_an_inbound_event_is_recorded_once_per_vendor_event_id(engine) -> None:
    with engine.begin() as conn:
        first = inbound.record(conn, event("e-1"))
        again = inbound.record(conn, event("e-1"))

    assert first is not None
    assert again is None
    with engine.begin() as conn:
        stored = inbound.get(conn, first)
    assert stored is not None
    assert stored.event == event("e-1")
    assert stored.status is inbound.EventStatus.QUEUED


def test_refused_deliveries_are_counted_per_connector_and_reason(engine) -> None:
    with engine.begin() as conn:
        inbound.refuse(conn, "oa", "bad_signature")
        inbound.refuse(conn, "oa", "bad_signature")
        inbound.refuse(conn, "oa", "stale")

    with engine.begin() as conn:
        assert inbound.refusals(conn) == {("oa", "bad_signature"): 2, ("oa", "stale"): 1}


def test_pages_commit_in_order_even_when_finished_out_of_order(engine) -> None:
    with engine.begin() as conn:
        run_id = runs.start(conn, "f", "test", 1, None)
        first = pages.store(conn, run_id, "f", 0, [record(1, "2026-01-01T00:00:00Z")], "t1")
        second = pages.store(conn, run_id, "f", 1, [record(2, "2026-01-02T00:00:00Z")], None)
        pages.mark_done(conn, second, 1, 0, 0)

        assert pages.commit_ready(conn, run_id) == (0, None)

        pages.mark_done(conn, first, 1, 0, 0)
        assert pages.commit_ready(conn, run_id) == (2, "2026-01-02T00:00:00Z")
        assert pages.all_committed(conn, run_id)


def test_storing_a_page_twice_returns_the_same_page(engine) -> None:
    with engine.begin() as conn:
        run_id = runs.start(conn, "f", "test", 1, None)
        first = pages.store(conn, run_id, "f", 0, [record(1, "a")], None)
        again = pages.store(conn, run_id, "f", 0, [record(1, "a")], None)

    assert first == again


def test_run_counters_add_up_and_finish_once(engine) -> None:
    with engine.begin() as conn:
        run_id = runs.start(conn, "f", "test", 1, None)
        runs.add_counts(conn, run_id, pulled=5, written=3)
        runs.add_counts(conn, run_id, pulled=2, skipped=2)
        assert runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED, cursor_after="c")
        assert not runs.finish(conn, run_id, runs.RunStatus.FAILED)
        run = runs.get(conn, run_id)

    assert run is not None
    assert run.status is runs.RunStatus.SUCCEEDED
    assert run.counts["pulled"] == 7
    assert run.counts["written"] == 3


def test_id_map_upsert_replaces_the_hash_and_keeps_the_target(engine) -> None:
    link = idmap.Link("oa", "approvals", "R1", "wecom", "messages", "m1", "h1", "v1")
    with engine.begin() as conn:
        idmap.upsert(conn, "f", [link])
        idmap.upsert(conn, "f", [replace(link, content_hash="h2", target_id=None)])
        found = idmap.lookup(conn, ("oa", "approvals"), ("wecom", "messages"), ["R1", "R2"])

    assert list(found) == ["R1"]
    assert found["R1"].content_hash == "h2"
    assert found["R1"].target_id == "m1"


def test_same_dead_letter_is_kept_once(engine) -> None:
    item = ("R1", {"id": "R1"}, "no wecom user for OA user 105", "RecordError")
    with engine.begin() as conn:
        assert deadletters.add(conn, "f", None, [item]) == 1
        assert deadletters.add(conn, "f", None, [item]) == 0
        assert deadletters.count_open(conn, "f") == 1


def test_flow_lock_is_exclusive_and_released_only_by_its_holder(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    token = locks.acquire(client, "f", ttl_s=30)

    assert token is not None
    assert locks.acquire(client, "f", ttl_s=30) is None
    assert not locks.release(client, "f", "someone-else")
    assert locks.release(client, "f", token)
    assert locks.acquire(client, "f", ttl_s=30) is not None


def test_concurrent_directory_refreshes_of_one_system_do_not_collide(engine) -> None:
    """Pages of one run refresh the directory on several workers at once."""
    import threading

    from sync_pipeline.connectors.base import DirectoryUser
    from sync_pipeline.pipeline import directory

    users = [DirectoryUser(str(n), f"E{n}", f"u{n}@x.cn", None, f"U{n}") for n in range(200)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def refresh() -> None:
        try:
            barrier.wait()
            with engine.begin() as conn:
                directory.replace_users(conn, "oa", users)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with engine.connect() as conn:
        assert len(directory.load_snapshot(conn, ["oa"]).by_user) == 200


def test_an_engine_is_shared_within_a_process_and_never_inherited_across_a_fork(
    database_url: str,
) -> None:
    import os

    from sync_pipeline.state import db

    first = engine_for(database_url)
    assert engine_for(database_url) is first
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child, as a Celery prefork child would be
        os.close(read)
        os.write(write, b"new" if engine_for(database_url) is not first else b"inherited")
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 16) == b"new"
    assert len({key[1:] for key in db._engines}) <= db.ENGINES_KEPT
