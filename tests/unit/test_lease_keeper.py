"""One thread per process renews every lease held in it (pipeline/leases.py, `keep`): the
steps' leases and the inbound events'. A renewal is a plain callable here; what it renews in
PostgreSQL is tested with the leases themselves (tests/integration/test_sweeper.py,
tests/events/test_leases.py)."""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from sync_pipeline.pipeline import leases
from tests.conftest import wait_for

EVERY_S = 0.02


class Renewals:
    """Counts each lease's renewals; `answer` says what a renewal returns (or raises)."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.threads: set[str] = set()

    def of(self, name: str, answer: Callable[[int], bool] = lambda _: True) -> Callable[[], bool]:
        def renew() -> bool:
            self.count[name] += 1
            self.threads.add(threading.current_thread().name)
            return answer(self.count[name])

        return renew


@pytest.fixture
def renewals() -> Renewals:
    return Renewals()


def test_one_thread_renews_every_lease_kept_in_a_process(renewals: Renewals) -> None:
    kept = [leases.keep(renewals.of(name), EVERY_S, name) for name in ("a", "b", "c")]
    try:
        wait_for(
            lambda: all(renewals.count[n] >= 2 for n in "abc"), 10, 0.01, what="two renewals each"
        )
    finally:
        for renewal in kept:
            renewal.stop()

    assert renewals.threads == {"leases"}
    assert [t.name for t in threading.enumerate()].count("leases") == 1


def test_a_stopped_lease_is_renewed_no_more(renewals: Renewals) -> None:
    stopped = leases.keep(renewals.of("stopped"), EVERY_S, "stopped")
    wait_for(lambda: renewals.count["stopped"] >= 1, 10, 0.01, what="a renewal")
    stopped.stop()
    at_stop = renewals.count["stopped"]
    other = leases.keep(renewals.of("other"), EVERY_S, "other")
    try:
        wait_for(lambda: renewals.count["other"] >= 3, 10, 0.01, what="the other's renewals")
    finally:
        other.stop()

    assert renewals.count["stopped"] == at_stop


def test_a_lease_taken_over_is_renewed_no_more_and_said_so(
    renewals: Renewals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=leases.__name__)
    lost = leases.keep(renewals.of("lost", lambda n: n < 2), EVERY_S, "page 7")
    other = leases.keep(renewals.of("other"), EVERY_S, "other")
    try:
        wait_for(lambda: renewals.count["lost"] >= 2, 10, 0.01, what="the lease lost")
        at_loss = renewals.count["other"]
        wait_for(lambda: renewals.count["other"] >= at_loss + 3, 10, 0.01, what="more renewals")
    finally:
        lost.stop()
        other.stop()

    assert renewals.count["lost"] == 2
    assert "the lease of page 7 was taken over; its work goes on" in caplog.messages


def test_a_renewal_that_fails_is_tried_again_at_its_next_turn(
    renewals: Renewals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=leases.__name__)

    def database_away_once(n: int) -> bool:
        if n == 1:
            raise ConnectionError("the database is away")
        return True

    flaky = leases.keep(renewals.of("flaky", database_away_once), EVERY_S, "run 3")
    try:
        wait_for(lambda: renewals.count["flaky"] >= 3, 10, 0.01, what="renewals after a failure")
    finally:
        flaky.stop()

    assert any("renewing the lease of run 3 failed" in m for m in caplog.messages)


def test_a_forked_child_renews_its_own_leases_on_a_thread_of_its_own(
    renewals: Renewals,
) -> None:
    """A worker's pool process is forked from a parent whose renewing thread it does not
    have: its leases are renewed all the same."""
    parents = leases.keep(renewals.of("parent's"), EVERY_S, "parent's")
    wait_for(lambda: renewals.count["parent's"] >= 1, 10, 0.01, what="the parent's thread")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its renewals through the pipe, then leave at once
        code = 1
        try:
            three = threading.Event()
            beats: list[int] = []

            def renew() -> bool:
                beats.append(os.write(write, b"."))
                if len(beats) >= 3:
                    three.set()
                return True

            childs = leases.keep(renew, EVERY_S, "child's")
            code = 0 if three.wait(10) else 1
            childs.stop()
        finally:
            os._exit(code)
    os.close(write)
    try:
        _, status = os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as pipe:
            reported = pipe.read()
    finally:
        parents.stop()

    assert os.waitstatus_to_exitcode(status) == 0
    assert len(reported) >= 3
