"""A full resync (pipeline/resync.py): everything a flow covers read again beside its pulls,
page by page from a checkpoint in PostgreSQL, through the one id map and effect protocol.

The resync runs in this process, as the worker's `admin.resync` task runs it; a worker killed
mid-page is a checkpoint that fails once, after the page's effects were made.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import leases, resync, steps, sweeper
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.settings import load_settings
from sync_pipeline.state import controls, cursors, idmap, migrate, resyncs, runs
from sync_pipeline.state import leases as lease_rows
from sync_pipeline.state.leases import Leased
from sync_pipeline.state.requests import WorkRequest
from sync_pipeline.state.resyncs import Resync, ResyncStatus
from tests.conftest import ROOT
from tests.e2e.spine import expected_wecom_messages, wecom_sends_in

FLOW = "approvals_to_wecom"
SEED, APPROVALS, PAGE_SIZE = 7, 10, 3
DEAD = "gone-host:4242:a-resync-of-a-killed-worker"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    data = tmp_path / "sandbox"
    with seeded_sandbox(data, seed=SEED, approvals=APPROVALS, checkin_days=1) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


@pytest.fixture
def rt(service_env: dict[str, str], sandbox: SandboxClient) -> Runtime:
    """A worker's runtime on this test's database and the sandbox, the shipped config with
    the flow paging PAGE_SIZE records at a time (so a resync has several pages)."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}
    built = build_runtime(load_settings(env), env)
    flow = dataclasses.replace(built.config.flows[FLOW], page_size=PAGE_SIZE)
    config = dataclasses.replace(built.config, flows={**built.config.flows, FLOW: flow})
    return dataclasses.replace(built, config=config)


def sends(sandbox: SandboxClient) -> collections.Counter[tuple[str, str, int]]:
    return collections.Counter(wecom_sends_in(sandbox.ledger("wecom")))


def wecom_calls(sandbox: SandboxClient) -> int:
    """Calls made to WeCom's `message/send` (its duplicate check hides a second send from the
    ledger, not from this count)."""
    return sum(n for key, n in sandbox.calls("wecom").items() if "message/send" in key)


def expected() -> collections.Counter[tuple[str, str, int]]:
    return expected_wecom_messages(World(SEED), APPROVALS)


def asked(rt: Runtime, *, dry_run: bool = False) -> Resync:
    """`syncctl resync FLOW` as the command line records it."""
    with rt.engine.begin() as conn:
        found = resyncs.start(conn, FLOW, None, "operator", dry_run=dry_run)
    assert found is not None
    return found


def now_of(rt: Runtime, resync_id: int) -> Resync:
    with rt.engine.connect() as conn:
        found = resyncs.get(conn, resync_id)
    assert found is not None
    return found


def no_wait(seconds: float) -> None:
    """The pacing's sleep, skipped: these tests are about what is made, not how fast."""


def resynced(rt: Runtime, *, dry_run: bool = False) -> Resync:
    return resync.run_resync(rt, asked(rt, dry_run=dry_run).id, sleep=no_wait)


# -- what a resync makes -----------------------------------------------------------------------
def test_a_resync_of_a_fully_synced_flow_sends_nothing_new(rt, sandbox) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    calls_before = wecom_calls(sandbox)

    done = resynced(rt)

    assert done.status is ResyncStatus.SUCCEEDED
    assert done.counts.read == APPROVALS
    assert done.counts.written == 0
    assert wecom_calls(sandbox) == calls_before
    assert sends(sandbox) == expected()


def test_a_resync_of_a_flow_never_synced_makes_every_effect_once(rt, sandbox) -> None:
    done = resynced(rt)

    assert done.status is ResyncStatus.SUCCEEDED
    assert done.counts.pages > APPROVALS // PAGE_SIZE
    assert done.counts.written == sum(expected().values())
    assert sends(sandbox) == expected()


def test_a_resync_neither_moves_the_cursor_nor_takes_the_fence(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None
    with rt.engine.connect() as conn:
        before = cursors.get(conn, FLOW)

    resynced(rt)

    with rt.engine.connect() as conn:
        assert cursors.get(conn, FLOW) == before


def test_a_resync_is_one_run_of_trigger_resync_in_the_flows_history(rt) -> None:
    done = resynced(rt)

    assert done.run_id is not None
    with rt.engine.connect() as conn:
        run = runs.get(conn, done.run_id)
        latest_pull = runs.latest(conn, FLOW)
    assert run is not None
    assert (run.trigger, run.status, run.fence) == ("resync", runs.RunStatus.SUCCEEDED, None)
    assert run.counts["pulled"] == APPROVALS
    assert latest_pull is None  # a resync is not the flow's last pull


def test_a_pull_started_while_a_resync_runs_is_not_fenced_out(rt, sandbox) -> None:
    started = asked(rt)
    run_id = steps.start_run(rt, FLOW, "schedule")
    assert run_id is not None

    resync.run_resync(rt, started.id, sleep=no_wait)
    steps.pull(rt, run_id, lambda page_id: (steps.plan(rt, page_id), steps.write(rt, page_id)))
    steps.commit(rt, run_id)

    with rt.engine.connect() as conn:
        pull = runs.get(conn, run_id)
    assert pull is not None
    assert pull.status is runs.RunStatus.SUCCEEDED
    assert sends(sandbox) == expected()


# -- resuming ----------------------------------------------------------------------------------
class Killed(BaseException):
    """The worker's death, at a chosen point (BaseException: nothing catches it on the way)."""


def test_a_resync_killed_mid_page_resumes_from_its_checkpoint_and_makes_each_effect_once(
    rt, sandbox, monkeypatch
) -> None:
    started = asked(rt)
    checkpoint = resyncs.checkpoint
    calls = {"n": 0}

    def dies_on_the_second_page(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the page's effects are made; its checkpoint never commits
            raise Killed()
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(resyncs, "checkpoint", dies_on_the_second_page)
    with pytest.raises(Killed):
        resync.run_resync(rt, started.id, sleep=no_wait)
    half = now_of(rt, started.id)

    done = resync.run_resync(rt, started.id, sleep=no_wait)

    assert half.counts.pages == 1
    assert half.page_token is not None
    assert done.status is ResyncStatus.SUCCEEDED
    assert done.counts.read == APPROVALS
    assert sends(sandbox) == expected()
    assert wecom_calls(sandbox) == sum(expected().values())  # none sent twice


def test_a_resumed_resync_reads_from_its_checkpoint_not_from_the_start(rt, monkeypatch) -> None:
    started = asked(rt)
    paced: list[float] = []

    def dies_after_the_first_page(seconds: float) -> None:
        paced.append(seconds)
        raise Killed()

    with pytest.raises(Killed):
        resync.run_resync(rt, started.id, sleep=dies_after_the_first_page)
    read: list[str | None] = []
    source = rt.connector(rt.flow(FLOW).source.connector)
    read_page = source.read_page

    def recorded(stream, window, token, page_size):  # type: ignore[no-untyped-def]
        read.append(token)
        return read_page(stream, window, token, page_size)

    monkeypatch.setattr(source, "read_page", recorded)

    done = resync.run_resync(rt, started.id, sleep=no_wait)

    assert read[0] is not None  # the first page is not read again
    assert len(read) == done.counts.pages - 1


def test_a_resync_whose_worker_died_is_sent_again_once_its_lease_runs_out(rt) -> None:
    started = asked(rt)
    with rt.engine.begin() as conn:
        assert lease_rows.take(conn, Leased.RESYNC, started.id, DEAD, leases.LEASE_S)
    recorder = Recorder()
    with rt.engine.connect() as conn:
        now = idmap.clock(conn)
    early = sweeper.sweep(rt, recorder, now=now + timedelta(seconds=leases.LEASE_S / 2))
    late = sweeper.sweep(rt, recorder, now=now + timedelta(seconds=leases.LEASE_S + 1))

    assert (early.resyncs, late.resyncs) == (0, 1)
    assert recorder.resyncs == [started.id]


class Recorder:
    """The sweeper's resends, recorded: only resyncs are expected here."""

    def __init__(self) -> None:
        self.resyncs: list[int] = []

    def pull(self, flow: str, run_id: int) -> None: ...
    def page(self, flow: str, run_id: int, page_id: int, status: str) -> None: ...
    def commit(self, flow: str, run_id: int) -> None: ...
    def request(self, request: WorkRequest) -> None: ...
    def resync(self, flow: str, resync_id: int) -> None:
        self.resyncs.append(resync_id)


def test_a_resync_nothing_holds_that_stood_still_is_sent_again_once_a_bound(rt) -> None:
    started = asked(rt)  # its task was lost: no worker ever held it
    recorder = Recorder()
    with rt.engine.connect() as conn:
        now = idmap.clock(conn)

    soon = sweeper.sweep(rt, recorder, now=now)
    still = sweeper.sweep(rt, recorder, now=now + timedelta(seconds=sweeper.STILL_S + 1))
    again = sweeper.sweep(rt, recorder, now=now + timedelta(seconds=sweeper.STILL_S + 1))

    assert (soon.resyncs, still.resyncs, again.resyncs) == (0, 1, 0)
    assert recorder.resyncs == [started.id]


def test_a_paused_flows_resync_is_not_sent_again_by_the_sweeper(rt) -> None:
    asked(rt)
    with rt.engine.begin() as conn:
        controls.set_paused(conn, FLOW, True, "operator")
    with rt.engine.connect() as conn:
        now = idmap.clock(conn)

    swept = sweeper.sweep(rt, Recorder(), now=now + timedelta(hours=1))

    assert swept.resyncs == 0


def test_a_resync_given_a_slice_stops_at_the_first_checkpoint_past_it_still_running(rt) -> None:
    started = asked(rt)

    sliced = resync.run_resync(rt, started.id, sleep=no_wait, for_s=0.0)

    assert sliced.status is ResyncStatus.RUNNING
    assert sliced.counts.pages == 0
    done = resync.run_resync(rt, started.id, sleep=no_wait)
    assert done.status is ResyncStatus.SUCCEEDED


def test_a_resync_is_refused_while_another_of_the_flow_runs(rt) -> None:
    asked(rt)

    with rt.engine.begin() as conn:
        second = resyncs.start(conn, FLOW, None, "someone else")

    assert second is None


# -- a dry run ---------------------------------------------------------------------------------
def test_a_dry_run_of_a_flow_never_synced_would_create_every_record_and_sends_nothing(
    rt, sandbox
) -> None:
    done = resynced(rt, dry_run=True)

    assert done.status is ResyncStatus.SUCCEEDED
    assert done.counts.written == 0
    assert done.counts.would_create + done.counts.skipped + done.counts.dead_lettered == APPROVALS
    assert done.counts.would_create == len({n for _, _, n in expected()})
    assert wecom_calls(sandbox) == 0


def test_a_dry_run_of_a_fully_synced_flow_would_leave_every_record_alone(rt) -> None:
    assert steps.run_inline(rt, FLOW, "schedule") is not None

    done = resynced(rt, dry_run=True)

    assert (done.counts.would_create, done.counts.would_update) == (0, 0)
    assert done.counts.skipped == APPROVALS


def test_a_dry_run_leaves_the_id_map_as_it_was(rt) -> None:
    resynced(rt, dry_run=True)

    real = resynced(rt)

    assert real.counts.written == sum(expected().values())


# -- pacing ------------------------------------------------------------------------------------
def test_a_resync_waits_between_pages_to_keep_within_its_share_of_the_quota(rt) -> None:
    paced: list[float] = []

    done = resync.run_resync(rt, asked(rt).id, sleep=paced.append)

    assert len(paced) == done.counts.pages - 1
    assert any(seconds > 0 for seconds in paced)


def test_the_pace_is_the_flows_share_of_the_tighter_connectors_general_limit(rt) -> None:
    # The shipped sandbox OA allows 20 calls a second, WeCom 150000 an hour (41.7 a second).
    assert resync.pace_of(rt, rt.flow(FLOW)).calls_per_s == pytest.approx(20 * 0.5)
