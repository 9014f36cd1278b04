"""The sweeper sends again, from PostgreSQL, the work a dead worker or a lost message left
unfinished (pipeline/sweeper.py), and the effects are made once.

Work is sent again here by running the steps in this process, as the worker's tasks would run
them; `now` is moved past a lease or a bound instead of waiting for it.
"""

from __future__ import annotations

import collections
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import leases, steps, sweeper
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import cursors, idmap, locks, requests, runs
from sync_pipeline.state import leases as lease_rows
from sync_pipeline.state.leases import Leased
from sync_pipeline.state.requests import RequestKind, RequestStatus, WorkRequest
from sync_pipeline.state.schema import pages
from sync_pipeline.state.schema import runs as run_rows
from tests.conftest import wait_for
from tests.e2e.spine import expected_wecom_messages, wecom_sends_in
from tests.integration.sessions import blocked_by, holding_cursor_row, in_thread

FLOW = "approvals_to_wecom"
SEED, APPROVALS = 7, 10
DEAD = "gone-host:4242:a-task-of-a-killed-worker"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    """A sandbox of the test's own: WeCom drops a message it has seen (its duplicate check),
    so a second test's sends would not reach the ledger of a shared one."""
    data = tmp_path / "sandbox"
    with seeded_sandbox(data, seed=SEED, approvals=APPROVALS, checkin_days=1) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


def sends(sandbox: SandboxClient) -> collections.Counter[tuple[str, str, int]]:
    return collections.Counter(wecom_sends_in(sandbox.ledger("wecom")))


@dataclass
class Inline:
    """Sends work again the way the worker's tasks do it, in this process: each step runs
    under its lease and the commit follows; `sent` says what was sent, in order."""

    rt: Runtime
    sent: list[tuple[str, int]] = field(default_factory=list)

    def pull(self, flow: str, run_id: int) -> None:
        self.sent.append(("pull", run_id))
        queued: list[int] = []
        with leases.held(self.rt, Leased.RUN, run_id, "inline-pull") as mine:
            assert mine
            steps.pull(self.rt, run_id, queued.append)
        for page_id in queued:
            self._steps(run_id, page_id)

    def page(self, flow: str, run_id: int, page_id: int, status: str) -> None:
        self.sent.append((f"page {status}", page_id))
        self._steps(run_id, page_id)

    def commit(self, flow: str, run_id: int) -> None:
        self.sent.append(("commit", run_id))
        steps.commit(self.rt, run_id)

    def request(self, request: WorkRequest) -> None:
        self.sent.append(("request", request.id))
        run_id = steps.start_run(self.rt, FLOW, "manual", request_id=request.task_id)
        if run_id is not None:
            self.pull(FLOW, run_id)

    def _steps(self, run_id: int, page_id: int) -> None:
        with leases.held(self.rt, Leased.PAGE, page_id, "inline-step") as mine:
            assert mine
            steps.plan(self.rt, page_id)
            steps.write(self.rt, page_id)
        steps.commit(self.rt, run_id)


def pulled_but_lost(rt: Runtime) -> tuple[int, list[int]]:
    """A run whose pull stored its pages and whose page tasks the broker then lost."""
    run_id = steps.start_run(rt, FLOW, "schedule")
    assert run_id is not None
    lost: list[int] = []
    steps.pull(rt, run_id, lost.append)
    return run_id, lost


def db_now(rt: Runtime) -> datetime:
    with rt.engine.connect() as conn:
        return idmap.clock(conn)


def run_of(rt: Runtime, run_id: int) -> runs.Run:
    with rt.engine.connect() as conn:
        found = runs.get(conn, run_id)
    assert found is not None
    return found


def expected() -> collections.Counter[tuple[str, str, int]]:
    return expected_wecom_messages(World(SEED), APPROVALS)


# -- leases ------------------------------------------------------------------------------------
def test_a_live_lease_of_another_holder_keeps_the_work_from_a_second_one(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)

    with (
        leases.held(rt, Leased.PAGE, page_id, "first") as first,
        leases.held(rt, Leased.PAGE, page_id, "second") as second,
    ):
        assert (first, second) == (True, False)


def test_a_released_lease_is_free_for_the_next_step(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)
    with leases.held(rt, Leased.PAGE, page_id, "plan step") as planning:
        assert planning

    with leases.held(rt, Leased.PAGE, page_id, "write step") as writing:
        assert writing


def lease_until(rt: Runtime, page_id: int) -> datetime:
    with rt.engine.connect() as conn:
        until: datetime = conn.execute(
            sa.select(pages.c.lease_until).where(pages.c.id == page_id)
        ).scalar_one()
    return until


def test_a_held_lease_is_renewed_while_the_step_works(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)

    with leases.held(rt, Leased.PAGE, page_id, "slow step", lease_s=0.6):
        first = lease_until(rt, page_id)
        wait_for(lambda: lease_until(rt, page_id) > first, 10, interval_s=0.05, what="a beat")


def test_a_lease_let_go_in_a_transaction_its_heartbeat_waits_on_is_let_go_at_once(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)
    failed: list[BaseException] = []
    with leases.Lease(rt, Leased.PAGE, page_id, "slow step", lease_s=0.3) as lease:
        with rt.engine.begin() as conn:
            lease.take(conn)
        with rt.engine.connect() as conn, conn.begin():  # the step's last transaction
            conn.execute(sa.select(pages.c.id).where(pages.c.id == page_id).with_for_update())
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            wait_for(lambda: blocked_by(rt, pid) == 1, 10, 0.02, what="a beat waiting on the row")
            releasing = in_thread(lambda: lease.release(conn), failed)
            releasing.join(10)
            assert not releasing.is_alive(), "the release waited for the heartbeat"

    assert failed == []
    with rt.engine.connect() as conn:
        assert lease_rows.holder(conn, Leased.PAGE, page_id) is None


def lease_taken(conn: Connection, page_id: int, owner: str) -> bool:
    return lease_rows.take(conn, Leased.PAGE, page_id, owner, leases.LEASE_S)


def process_gone() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_lease_of_a_process_of_this_host_that_is_gone_is_taken_over_at_once(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)
    dead = f"{socket.gethostname()}:{process_gone()}:a-task-whose-pool-process-was-killed"
    with rt.engine.begin() as conn:
        assert lease_taken(conn, page_id, dead)

    with leases.held(rt, Leased.PAGE, page_id, leases.owner("its-redelivery")) as mine:
        assert mine


def test_a_live_lease_of_a_running_process_of_this_host_is_left_to_it(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)
    with rt.engine.begin() as conn:
        assert lease_taken(conn, page_id, leases.owner("a-step-still-working"))

    with leases.held(rt, Leased.PAGE, page_id, leases.owner("another-copy")) as mine:
        assert not mine


# -- what the sweeper sends again ------------------------------------------------------------
def test_a_page_whose_worker_died_mid_step_is_sent_again_once_its_lease_runs_out(
    rt, sandbox
) -> None:
    run_id, [dying, *rest] = pulled_but_lost(rt)
    inline = Inline(rt)
    for page_id in rest:
        inline.page(FLOW, run_id, page_id, "pulled")
    steps.plan(rt, dying)
    with rt.engine.begin() as conn:  # the worker writing it is SIGKILLed holding its lease
        assert lease_taken(conn, dying, DEAD)
    inline.sent.clear()

    early = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S / 2))
    late = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S + 1))

    assert (early.pages, late.pages) == (0, 1)
    assert ("page planned", dying) in inline.sent
    assert run_of(rt, run_id).status is runs.RunStatus.SUCCEEDED
    assert sends(sandbox) == expected()


def test_a_lapsed_lease_is_sent_again_once_not_at_every_sweep(rt) -> None:
    _, [page_id, *_] = pulled_but_lost(rt)
    with rt.engine.begin() as conn:
        assert lease_taken(conn, page_id, DEAD)
    recorder = Inline(rt)
    later = db_now(rt) + timedelta(seconds=leases.LEASE_S + 1)

    first = sweeper.sweep(rt, recorder, now=later)
    second = sweeper.sweep(rt, recorder, now=later)

    assert (first.pages, second.pages) == (1, 0)


def test_a_run_whose_page_tasks_were_lost_is_sent_again_once_it_stood_still(rt, sandbox) -> None:
    run_id, lost = pulled_but_lost(rt)
    inline = Inline(rt)

    soon = sweeper.sweep(rt, inline, now=db_now(rt))
    still = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=sweeper.STILL_S + 1))

    assert (soon.stalled, still.stalled) == (0, 1)
    assert [page_id for what, page_id in inline.sent if what.startswith("page")] == lost
    assert run_of(rt, run_id).status is runs.RunStatus.SUCCEEDED
    assert sends(sandbox) == expected()


def test_a_pull_whose_worker_died_is_resumed_and_its_pages_made_once(rt, sandbox) -> None:
    run_id = steps.start_run(rt, FLOW, "schedule")
    assert run_id is not None
    with rt.engine.begin() as conn:  # killed before it read a page
        assert lease_rows.take(conn, Leased.RUN, run_id, DEAD, leases.LEASE_S)
    inline = Inline(rt)

    swept = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=leases.LEASE_S + 1))

    assert swept.pulls == 1
    assert inline.sent[0] == ("pull", run_id)
    assert run_of(rt, run_id).status is runs.RunStatus.SUCCEEDED
    assert sends(sandbox) == expected()


def test_a_finished_run_is_never_sent_again(rt) -> None:
    run_id = steps.run_inline(rt, FLOW, "schedule")
    assert run_id is not None
    inline = Inline(rt)

    swept = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(hours=2))

    assert swept == sweeper.Swept()


# -- work requests -----------------------------------------------------------------------------
def recorded_run(rt: Runtime) -> WorkRequest:
    """`syncctl run FLOW` as dispatch.send_request records it; its message then lost."""
    task = requests.Task("pull.start", "pull", (FLOW, "manual", False))
    with rt.engine.begin() as conn:
        return requests.record(conn, RequestKind.RUN, FLOW, task)


def request_now(rt: Runtime, request_id: int) -> WorkRequest:
    with rt.engine.connect() as conn:
        found = requests.get(conn, request_id)
    assert found is not None
    return found


def test_a_request_no_worker_began_is_sent_again_under_its_task_id_and_runs_once(
    rt, sandbox
) -> None:
    request = recorded_run(rt)
    inline = Inline(rt)

    soon = sweeper.sweep(rt, inline, now=db_now(rt))
    later = sweeper.sweep(
        rt, inline, now=db_now(rt) + timedelta(seconds=sweeper.REQUEST_START_S + 1)
    )
    late_copy = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)

    assert (soon.requests, later.requests) == (0, 1)
    started = request_now(rt, request.id)
    assert started.status is RequestStatus.STARTED
    assert started.run_id is not None
    assert run_of(rt, started.run_id).status is runs.RunStatus.SUCCEEDED
    assert late_copy is None  # the lost message, delivered after all, opens no second run
    with rt.engine.connect() as conn:
        assert runs.totals(conn, FLOW).runs == 1
    assert sends(sandbox) == expected()


def test_a_request_sent_again_waits_twice_as_long_before_the_next_send(rt) -> None:
    request = recorded_run(rt)
    with rt.engine.begin() as conn:
        requests.mark_sent(conn, request.id)  # sent twice: the next send waits 2 bounds
    inline = Inline(rt)
    bound = sweeper.REQUEST_START_S

    one = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=bound + 1))
    two = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=2 * bound + 1))

    assert (one.requests, two.requests) == (0, 1)


def test_a_request_the_worker_turned_away_is_never_sent_again(rt) -> None:
    request = recorded_run(rt)
    busy = steps.start_run(rt, FLOW, "schedule")  # another pull holds the flow
    assert busy is not None
    assert steps.start_run(rt, FLOW, "manual", request_id=request.task_id) is None
    inline = Inline(rt)

    swept = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(seconds=1))
    later = sweeper.sweep(rt, inline, now=db_now(rt) + timedelta(hours=2))

    assert request_now(rt, request.id).status is RequestStatus.TURNED_AWAY
    assert swept.requests == later.requests == 0


def test_a_request_is_begun_once_however_many_copies_of_its_task_arrive(rt) -> None:
    task = requests.Task("admin.replay_dead_letters", "admin", (FLOW, None))
    with rt.engine.begin() as conn:
        request = requests.record(conn, RequestKind.REPLAY, FLOW, task)

    with rt.engine.begin() as conn:
        begun = [requests.start(conn, request.task_id) for _ in range(3)]

    assert begun == [True, False, False]
    assert request_now(rt, request.id).status is RequestStatus.STARTED


def test_a_request_whose_first_copy_died_holding_the_flows_lock_is_opened_by_the_next(
    rt,
) -> None:
    request = recorded_run(rt)
    # The first copy took the flow's lock under the request's task id, then was killed.
    assert locks.acquire(rt.redis, FLOW, steps.LOCK_TTL_S, token=request.task_id)

    run_id = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)

    assert run_id is not None
    assert request_now(rt, request.id).run_id == run_id


def test_a_copy_of_a_request_whose_run_still_runs_goes_on_with_that_run(rt) -> None:
    request = recorded_run(rt)
    opened = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)

    again = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)  # a redelivery

    assert again == opened is not None
    assert [run.id for run in pulls_of(rt)] == [opened]


def test_a_copy_of_a_request_whose_run_has_ended_does_nothing(rt) -> None:
    request = recorded_run(rt)
    opened = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)
    assert opened is not None
    steps.fail_run(rt, opened, RuntimeError("the run ended"))  # its lock is let go

    again = steps.start_run(rt, FLOW, "manual", request_id=request.task_id)

    assert again is None
    assert [run.id for run in pulls_of(rt)] == [opened]
    assert locks.holder(rt.redis, FLOW) is None


def test_two_copies_of_a_request_starting_at_once_open_one_run(rt) -> None:
    request = recorded_run(rt)
    with rt.engine.begin() as conn:
        cursors.next_fence(conn, FLOW)  # the flow's cursor row, for the test to hold
    opened: list[int | None] = []
    failed: list[BaseException] = []
    start = partial(steps.start_run, rt, FLOW, "manual", request_id=request.task_id)
    with holding_cursor_row(rt, FLOW) as pid:  # both copies get as far as taking a fence
        copies = [in_thread(lambda: opened.append(start()), failed) for _ in range(2)]
        wait_for(lambda: blocked_by(rt, pid) == 2, 30, 0.05, what="both copies waiting")
    for copy in copies:
        copy.join(60)

    assert failed == []
    [run] = pulls_of(rt)
    assert sorted(opened, key=str) == sorted([run.id, None], key=str)
    assert run.status is runs.RunStatus.RUNNING
    assert request_now(rt, request.id).run_id == run.id


def pulls_of(rt: Runtime) -> list[runs.Run]:
    """Every run of the flow, running or not, oldest first."""
    with rt.engine.connect() as conn:
        ids = conn.execute(
            sa.select(run_rows.c.id).where(run_rows.c.flow == FLOW).order_by(run_rows.c.id)
        ).scalars()
        return [found for run_id in ids if (found := runs.get(conn, run_id)) is not None]
