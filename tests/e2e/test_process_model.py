"""`syncctl worker`, `beat` and `flower` leave no process behind, however they end (issue 10,
point 11): SIGKILLed (the OOM killer, `kill -9`, a supervisor that signals only its direct
child), whether the process killed is `syncctl` or the real Celery main process, with the
configured servers or with embedded engines. With the default settings (issue 11, point 5), a
worker started after a SIGKILL finishes the killed worker's run within two minutes, each effect
once, and a manual run whose task the broker lost runs once: the sweeper (on Beat) sends the work
again from PostgreSQL.

Processes are found by their environment: every process these commands start inherits the
test's own SYNC_DATA_DIR, and a process that is gone (or a zombie) no longer shows one.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.pipeline import sweeper
from sync_pipeline.processes import free_port
from sync_pipeline.state import runs
from sync_pipeline.state.db import engine_for
from tests.conftest import ROOT, syncctl, wait_for
from tests.e2e.spine import APPROVALS, FLOW, SEED, expected_wecom_messages, wecom_sends

pytestmark = pytest.mark.slow

START_S = 90  # a worker migrates first; the machine is shared
GONE_S = 30  # the kernel's death signal is immediate; a pool process may be mid-syscall


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    @property
    def celery(self) -> bool:
        return "celery" in self.argv


def processes_of(data_dir: Path) -> list[Proc]:
    """Live processes whose environment names this data dir."""
    needle = f"SYNC_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue  # gone while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(Proc(int(entry.name), ppid, tuple(a for a in argv if a)))
    return found


def celery_main(data_dir: Path) -> Proc:
    """The real Celery main process: a Celery process whose parent is not one."""
    procs = processes_of(data_dir)
    celery = {p.pid for p in procs if p.celery}
    [main] = [p for p in procs if p.celery and p.ppid not in celery]
    return main


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def data_dir(service_env: dict[str, str]) -> Iterator[Path]:
    """The test's SYNC_DATA_DIR; whatever still runs with it at the end is killed, so a
    failing test leaves nothing behind either."""
    path = Path(service_env["SYNC_DATA_DIR"])
    yield path
    for proc in processes_of(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def env(service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """This test's servers, a configuration without connectors or flows (nothing to sync:
    only the processes are under test), and Flower's credentials."""
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    (config / "connectors.yaml").write_text("{}\n")
    return {**service_env, "SYNC_CONFIG_DIR": str(config), "FLOWER_BASIC_AUTH": "admin:pw"}


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """The real `syncctl` with these arguments, as a supervisor starts it."""
    exe = Path(sys.executable).parent / "syncctl"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(exe), *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )


def started(proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool]) -> None:
    def up() -> bool:
        assert proc.poll() is None, log.read_text("utf-8", "replace")
        return ready()

    wait_for(up, START_S, interval_s=0.2, what="the command to start")


def worker_ready(data_dir: Path, pool: int) -> Callable[[], bool]:
    """The worker's main process and its `pool` pool processes are up."""
    return lambda: sum(p.celery for p in processes_of(data_dir)) >= 1 + pool


def killed(proc: subprocess.Popen[bytes] | int) -> None:
    pid = proc if isinstance(proc, int) else proc.pid
    os.kill(pid, signal.SIGKILL)
    if not isinstance(proc, int):
        proc.wait()


def nothing_left(data_dir: Path) -> None:
    wait_for(lambda: not processes_of(data_dir), GONE_S, what="every process to be gone")


# -- the worker --------------------------------------------------------------------------------
def test_given_syncctl_worker_is_sigkilled_then_no_celery_process_is_left(
    env, data_dir, tmp_path
) -> None:
    log = tmp_path / "worker.log"
    worker = start(env, log, "worker", "--concurrency", "2")
    started(worker, log, worker_ready(data_dir, pool=2))

    killed(worker)

    nothing_left(data_dir)


def test_given_the_celery_worker_main_process_is_sigkilled_then_its_pool_is_gone_too(
    env, data_dir, tmp_path
) -> None:
    log = tmp_path / "worker.log"
    worker = start(env, log, "worker", "--concurrency", "2")
    started(worker, log, worker_ready(data_dir, pool=2))

    killed(celery_main(data_dir).pid)

    nothing_left(data_dir)
    worker.wait(timeout=GONE_S)


@pytest.mark.embedded
def test_given_syncctl_worker_on_embedded_engines_is_sigkilled_then_no_celery_process_is_left(
    env, data_dir, tmp_path
) -> None:
    embedded = {k: v for k, v in env.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    log = tmp_path / "worker.log"
    worker = start(embedded, log, "worker", "--concurrency", "1")
    started(worker, log, worker_ready(data_dir, pool=1))

    killed(worker)  # syncctl, which started the engines and runs Celery as its child

    nothing_left(data_dir)


# -- Beat and Flower ---------------------------------------------------------------------------
def beat_ready(data_dir: Path) -> Callable[[], bool]:
    """Beat runs and has opened its schedule (a shelve: celerybeat-schedule.*)."""
    return lambda: (
        any(data_dir.glob("celerybeat-schedule*")) and any(p.celery for p in processes_of(data_dir))
    )


def flower_ready(port: int) -> Callable[[], bool]:
    def answers() -> bool:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=2)
        except requests.RequestException:
            return False
        return True

    return answers


def test_given_syncctl_beat_is_sigkilled_then_no_beat_is_left(env, data_dir, tmp_path) -> None:
    log = tmp_path / "beat.log"
    beat = start(env, log, "beat")
    started(beat, log, beat_ready(data_dir))

    killed(beat)

    nothing_left(data_dir)


def test_given_the_celery_beat_process_is_sigkilled_then_nothing_is_left(
    env, data_dir, tmp_path
) -> None:
    log = tmp_path / "beat.log"
    beat = start(env, log, "beat")
    started(beat, log, beat_ready(data_dir))

    killed(celery_main(data_dir).pid)

    nothing_left(data_dir)
    beat.wait(timeout=GONE_S)


def test_given_syncctl_flower_is_sigkilled_then_no_flower_is_left(env, data_dir, tmp_path) -> None:
    log, port = tmp_path / "flower.log", free_port()
    flower = start(env, log, "flower", "--port", str(port))
    started(flower, log, flower_ready(port))

    killed(flower)

    nothing_left(data_dir)


def test_given_the_flower_process_is_sigkilled_then_nothing_is_left(
    env, data_dir, tmp_path
) -> None:
    log, port = tmp_path / "flower.log", free_port()
    flower = start(env, log, "flower", "--port", str(port))
    started(flower, log, flower_ready(port))

    killed(celery_main(data_dir).pid)

    nothing_left(data_dir)
    flower.wait(timeout=GONE_S)


# -- a worker killed mid-run, a request lost: recovery with the default settings ---------------
RECOVERY_S = 120  # issue 11's bound: a lease runs out, the next sweep, the rest of the run
# A lost request is sent again once it has waited REQUEST_START_S, at the next sweep.
RESENT_S = sweeper.REQUEST_START_S + sweeper.SWEEP_EVERY_S + 60


def run_done(env: dict[str, str]) -> bool:
    with engine_for(env["DATABASE_URL"]).connect() as conn:
        run = runs.latest(conn, FLOW)
    return run is not None and run.done


@contextlib.contextmanager
def sweeping_beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """Beat, as production runs it beside the workers, scheduling only its sweeps: its flows
    directory is empty, so no scheduled pull of its own joins the run under test. Its data
    dir is its own, so the worker's processes are told apart from it."""
    config = tmp_path / "beat-config"
    (config / "flows").mkdir(parents=True)
    (config / "connectors.yaml").write_text("{}\n")
    beat_dir = tmp_path / "beat-data"
    beat_env = {**env, "SYNC_CONFIG_DIR": str(config), "SYNC_DATA_DIR": str(beat_dir)}
    log = tmp_path / "beat.log"
    beat = start(beat_env, log, "beat")
    try:
        started(beat, log, beat_ready(beat_dir))
        yield
    finally:
        beat.terminate()
        beat.wait(timeout=60)


def test_given_the_worker_is_sigkilled_mid_run_then_a_new_one_finishes_it_sending_each_once(
    sandbox_env, sandbox: SandboxClient, data_dir, tmp_path
) -> None:
    """With the default settings: the killed worker's unacknowledged tasks stay in Redis for
    the visibility timeout (an hour), and the sweeper sends the work again from its leases."""
    env = sandbox_env
    sandbox.fault("wecom", "latency", params={"ms": 40})
    log = tmp_path / "first.log"
    first = start(env, log, "worker", "--concurrency", "2")
    started(first, log, worker_ready(data_dir, pool=2))
    queued = syncctl("run", FLOW, env=env)
    assert queued.returncode == 0, queued.stderr
    wait_for(lambda: len(sandbox.ledger("wecom")) >= 40, 120, what="writes to begin")

    killed(celery_main(data_dir).pid)  # the Celery worker itself, mid-page
    nothing_left(data_dir)
    first.wait(timeout=GONE_S)
    sandbox.clear_faults("wecom")
    with sweeping_beat(env, tmp_path):
        second = start(env, tmp_path / "second.log", "worker", "--concurrency", "2")
        try:
            wait_for(lambda: run_done(env), RECOVERY_S, interval_s=1, what="the run to finish")
        finally:
            second.terminate()
            second.wait(timeout=60)

    sent = wecom_sends(sandbox)
    assert collections.Counter(sent) == expected_wecom_messages(World(SEED), APPROVALS)


def test_given_the_broker_lost_a_manual_runs_task_then_the_sweeper_sends_it_and_it_runs_once(
    sandbox_env, sandbox: SandboxClient, data_dir, tmp_path
) -> None:
    env = sandbox_env
    queued = syncctl("run", FLOW, env=env)  # no worker yet
    assert queued.returncode == 0, queued.stderr
    assert redis.Redis.from_url(env["REDIS_URL"]).delete("pull") == 1  # the message is lost

    with sweeping_beat(env, tmp_path):
        worker = start(env, tmp_path / "worker.log", "worker", "--concurrency", "2")
        try:
            wait_for(lambda: run_done(env), RESENT_S, interval_s=1, what="the run to finish")
        finally:
            worker.terminate()
            worker.wait(timeout=60)

    with engine_for(env["DATABASE_URL"]).connect() as conn:
        assert runs.totals(conn, FLOW).runs == 1
        run = runs.latest(conn, FLOW)
    assert run is not None
    assert run.status is runs.RunStatus.SUCCEEDED
    sent = wecom_sends(sandbox)
    assert collections.Counter(sent) == expected_wecom_messages(World(SEED), APPROVALS)
