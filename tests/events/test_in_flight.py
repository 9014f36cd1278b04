"""An effect another attempt is making is not a failure (issue 10, point 7), against the real
sandbox, PostgreSQL and Redis: an event that finds its card being sent by another attempt
waits for that attempt's outcome, without spending its own tries, no longer than the effect's
in-flight window, and then settles from what the effect records. A vendor's rate limit leaves
no card looking as if someone were still sending it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.server import FAULT_CACHE_S
from sync_pipeline.errors import RateLimited
from sync_pipeline.pipeline import effects as effects_protocol
from sync_pipeline.pipeline import events
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import inbound
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import effects, inbound_events
from tests.conftest import wait_for
from tests.events.approval_scene import (
    WECOM_FLOW,
    approval_changed,
    new_approval,
    record,
    wecom_id,
    wecom_sends,
)

APPLICANT, APPROVER = "E00010", "E00011"
SEND = "wecom POST /cgi-bin/message/send"
SLOW_MS = 2500  # how long WeCom takes to answer a send while another attempt is waited for


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task handles its own event only, as when the events arrive far apart."""
    monkeypatch.setattr(events, "BATCH_LIMIT", 1)


def warmed(rt: Runtime, sandbox: SandboxClient) -> None:
    """Directories and tokens loaded, so the only WeCom calls left are the cards' sends."""
    request_id, _ = new_approval(sandbox, APPLICANT, [APPROVER])
    assert events.handle(rt, queue(rt, [request_id])[0]) is EventStatus.DONE


def queue(rt: Runtime, request_ids: list[str]) -> list[int]:
    rows = [record(rt, approval_changed(request_id)) for request_id in request_ids]
    assert all(row is not None for row in rows)
    return [row for row in rows if row is not None]


def stored(rt: Runtime, row: int) -> inbound.StoredEvent:
    with rt.engine.connect() as conn:
        found = inbound.get(conn, row)
    assert found is not None
    return found


def sends(sandbox: SandboxClient) -> int:
    """Message sends WeCom received, whether it accepted them or not."""
    return sandbox.calls("wecom").get(SEND, 0)


@contextmanager
def faulted(sandbox: SandboxClient, kind: str, **params: Any) -> Iterator[None]:
    sandbox.fault("wecom", kind, params=params)
    try:
        yield
    finally:
        sandbox.clear_faults("wecom")
        time.sleep(2 * FAULT_CACHE_S)  # the emulator's fault cache forgets it


@contextmanager
def sending(rt: Runtime, sandbox: SandboxClient, row: int) -> Iterator[None]:
    """Another attempt handles `row` in a thread of its own; the block runs while that
    attempt's card send is on its way to a slow WeCom, and the attempt ends with the block."""
    before = sends(sandbox)
    failure: list[BaseException] = []

    def handle() -> None:
        try:
            events.handle(rt, row)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failure.append(exc)

    other = threading.Thread(target=handle)
    with faulted(sandbox, "latency", ms=SLOW_MS):
        other.start()
        try:
            wait_for(lambda: sends(sandbox) > before, 30, interval_s=0.05, what="the other send")
            yield
        finally:
            other.join(timeout=60)  # its transactions end before the test's schema is dropped
    assert not failure, failure


def card_effect_status(rt: Runtime, request_id: str) -> str:
    with rt.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(effects.c.status).where(
                    effects.c.flow == WECOM_FLOW,
                    effects.c.source_id == request_id,
                    effects.c.kind == "card",
                )
            ).scalar_one()
        )


# -- a rate limit stops a batch ------------------------------------------------------------------
def test_given_a_rate_limit_stopped_a_batch_then_the_cards_it_never_tried_are_sent_at_once(
    rt, sandbox
) -> None:
    warmed(rt, sandbox)
    made = [new_approval(sandbox, APPLICANT, [APPROVER]) for _ in range(2)]
    rows = queue(rt, [request_id for request_id, _ in made])
    with faulted(sandbox, "ratelimit"), pytest.raises(RateLimited):
        events.handle(rt, rows[0])  # the first card is refused; the second is never tried

    status = events.handle(rt, rows[1])

    assert status is EventStatus.DONE
    assert wecom_sends(sandbox, made[1][1]) == [("card", wecom_id(APPROVER))]


# -- another attempt is sending the card ---------------------------------------------------------
def test_given_another_attempt_is_sending_the_card_then_the_event_waits_without_spending_a_try(
    rt, sandbox, alone
) -> None:
    warmed(rt, sandbox)
    request_id, _ = new_approval(sandbox, APPLICANT, [APPROVER])
    first, second = queue(rt, [request_id, request_id])
    resent: list[tuple[int, float]] = []

    with sending(rt, sandbox, first):
        status = events.handle(rt, second, resend=lambda row, wait: resent.append((row, wait)))

    assert status is EventStatus.QUEUED
    assert [row for row, _ in resent] == [second]
    assert 0 < resent[0][1] <= effects_protocol.IN_FLIGHT_POLL_S
    assert stored(rt, second).attempts == 0


def test_given_an_event_out_of_tries_then_waiting_for_another_attempt_does_not_fail_it(
    rt, sandbox, alone
) -> None:
    warmed(rt, sandbox)
    request_id, _ = new_approval(sandbox, APPLICANT, [APPROVER])
    first, second = queue(rt, [request_id, request_id])
    with rt.engine.begin() as conn:  # rate-limited on every try but its last
        conn.execute(
            inbound_events.update()
            .where(inbound_events.c.id == second)
            .values(attempts=events.MAX_ATTEMPTS - 1)
        )

    with sending(rt, sandbox, first):
        status = events.handle(rt, second, resend=lambda row, wait: None)

    assert status is EventStatus.QUEUED
    assert stored(rt, second).status is EventStatus.QUEUED


def test_given_the_other_attempt_sent_the_card_then_the_waiting_event_settles_done(
    rt, sandbox, alone
) -> None:
    warmed(rt, sandbox)
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    first, second = queue(rt, [request_id, request_id])
    with sending(rt, sandbox, first):
        events.handle(rt, second, resend=lambda row, wait: None)

    status = events.handle(rt, second)

    assert status is EventStatus.DONE
    assert stored(rt, second).status is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


def test_given_a_card_refused_by_a_rate_limit_is_being_sent_again_then_no_other_event_sends_it(
    rt, sandbox, alone
) -> None:
    warmed(rt, sandbox)
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    first, second, third = queue(rt, [request_id, request_id, request_id])
    with faulted(sandbox, "ratelimit"), pytest.raises(RateLimited):
        events.handle(rt, first)

    with sending(rt, sandbox, second):
        before = sends(sandbox)
        status = events.handle(rt, third, resend=lambda row, wait: None)
        sent_meanwhile = sends(sandbox) - before

    assert (status, sent_meanwhile) == (EventStatus.QUEUED, 0)
    assert events.handle(rt, third) is EventStatus.DONE
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]


def test_given_the_attempt_sending_a_card_died_then_an_event_waits_no_longer_than_the_window(
    rt, sandbox, alone
) -> None:
    warmed(rt, sandbox)
    request_id, title = new_approval(sandbox, APPLICANT, [APPROVER])
    first, second = queue(rt, [request_id, request_id])
    with faulted(sandbox, "ratelimit"), pytest.raises(RateLimited):
        events.handle(rt, first)
    lost = timedelta(seconds=effects_protocol.IN_FLIGHT_S + 1)
    with rt.engine.begin() as conn:  # a worker took it again and died, a window ago
        conn.execute(
            effects.update()
            .where(effects.c.flow == WECOM_FLOW, effects.c.source_id == request_id)
            .values(
                status="pending",
                created_at=sa.func.now() - lost,
                updated_at=sa.func.now() - lost,
            )
        )

    status = events.handle(rt, second)

    assert status is EventStatus.DONE  # sent again under WeCom's duplicate check
    assert card_effect_status(rt, request_id) == "done"
    assert wecom_sends(sandbox, title) == [("card", wecom_id(APPROVER))]
