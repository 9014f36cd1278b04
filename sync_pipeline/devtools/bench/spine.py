"""`syncctl bench spine`: the sync spine's first and no-change syncs beside a raw loop.

Every run starts from nothing, so runs never see each other's state: a sandbox data dir seeded
with N approvals of `World(DEFAULT_SEED)`, a PostgreSQL schema of its own, a copy of the config.
Then, one after the other:

- pipeline: a real worker process (`celery -A workers.app worker -c 2`); `pull.start` is sent
  by name and the run row is polled to its end, once for the first sync and once more for a
  sync that finds nothing new. Wall time runs from the send until the run is seen done.
- baseline: a second sandbox seeded alike, and one process looping: read a page through the
  OA connector, hydrate it, map it with the flow's own pure stages, send each message through
  the WeCom connector. No Celery, no PostgreSQL: what was sent lives in a dict.

Both sides make the same vendor calls, so the ratio is the price of the pipeline's guarantees
(pages, id map and effect keys in PostgreSQL, a Celery hop per step). Rate limits are lifted on
both sides (the sandbox's `rate_limit_scale` 0, no `rate_limits` in the config copy): the
shipped OA limit of 20 calls/s per API would make both wait ~500 s on 10,000 detail calls and
measure nothing but the limit.

Counts are checked, not only timed: the first sync must send exactly the messages the seeded
approvals call for, as the WeCom ledger shows them, the baseline the same number, and the
no-change sync none. A mismatch is an error (exit 1), never a figure.

The worker consumes the standard queues of REDIS_URL: run the bench on a Redis database no
other worker consumes, or that worker takes the bench's tasks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any, TypeVar

import redis
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from sync_pipeline.config.loader import FLOWS_DIR, Config, load_config
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.devtools.bench.harness import (
    FLOW,
    SENT,
    BenchError,
    RawLoop,
    SpineBenchError,
    bench_config,
    bench_sandbox,
    fresh_schema,
    wait_for_worker,
    write_report,
)
from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.seed import DEFAULT_SEED
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.dispatch import QUEUES
from sync_pipeline.errors import ConfigError
from sync_pipeline.follow import trigger_run
from sync_pipeline.http import make_session
from sync_pipeline.processes import celery_argv, child_env, session_process
from sync_pipeline.services import Services
from sync_pipeline.settings import Settings, mask_url
from sync_pipeline.state import locks, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate

PHASES = {"first_sync": "first sync", "no_change_sync": "no-change sync"}
SIDES = ("pipeline", "baseline")
LIST_CALL = "getAllWorkflowRequestList"
WORKER_CONCURRENCY = 2
# The run row is polled every POLL_S at first (a no-change sync takes a fraction of a second),
# then every hundredth of the time gone, up to POLL_MAX_S: the poller's own CPU competes with
# the worker on a small machine, and the figure is never more than 1% late.
POLL_S = 0.02
POLL_MAX_S = 0.5
SYNC_TIMEOUT_S = 120.0
SYNC_TIMEOUT_PER_APPROVAL_S = 0.1
# (phase, figure, label), in table order
FIGURES = (
    ("first_sync", "wall_s", "first sync: wall time (s)"),
    ("first_sync", "messages_per_s", "first sync: messages/s"),
    ("first_sync", "list_calls", "first sync: OA list calls"),
    ("first_sync", "messages", "first sync: messages sent"),
    ("no_change_sync", "wall_s", "no-change sync: wall time (s)"),
    ("no_change_sync", "list_calls", "no-change sync: OA list calls"),
    ("no_change_sync", "messages", "no-change sync: messages sent"),
)

T = TypeVar("T")


@dataclass(frozen=True)
class Sync:
    """One sync as the emulators saw it: wall time, OA calls by endpoint, messages accepted."""

    wall_s: float
    oa_calls: Mapping[str, int]
    messages: int

    @property
    def list_calls(self) -> int:
        return sum(n for key, n in self.oa_calls.items() if LIST_CALL in key)

    def as_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "list_calls": self.list_calls,
            "messages": self.messages,
            "messages_per_s": round(self.messages / self.wall_s, 1) if self.wall_s else 0.0,
            "oa_calls": dict(sorted(self.oa_calls.items())),
        }


def expected_messages(world: World, approvals: int) -> int:
    """What the shipped approvals_to_wecom flow sends for the first `approvals`: a card to each
    current approver of a pending one, a message to the applicant of an approved or rejected
    one, nothing for a revoked one (tests/e2e/spine.py spells the same out per message)."""
    total = 0
    for approval in world.approvals(approvals):
        if approval.state == "pending":
            total += len(approval.current_approver_nos)
        elif approval.state in ("approved", "rejected"):
            total += 1
    return total


def bench_spine(
    resolved: Services, approvals: int, repeats: int, json_path: Path, console: Console
) -> dict[str, Any]:
    """`repeats` runs, then the table (medians, min-max) and the JSON at `json_path`."""
    expected = expected_messages(World(DEFAULT_SEED), approvals)
    bench_dir = resolved.settings.data_dir / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    report = _report_header(resolved.settings, approvals, repeats, expected)
    results: list[dict[str, Any]] = []
    for number in range(1, repeats + 1):
        workdir = Path(tempfile.mkdtemp(prefix="spine-", dir=bench_dir))
        console.print(f"run {number}/{repeats} ({workdir})")
        try:
            results.append({"run": number, **_one_run(resolved, approvals, expected, workdir)})
        except BenchError as exc:
            report.update(runs=results, error=str(exc))
            write_report(json_path, report)
            raise
        for side in SIDES:
            for phase in PHASES:
                sync = results[-1][side][phase]
                console.print(
                    f"  {side} {PHASES[phase]}: {sync['wall_s']:.2f} s, "
                    f"{sync['messages']:,} messages, {sync['list_calls']} list calls"
                )
        shutil.rmtree(workdir, ignore_errors=True)
    report.update(runs=results, summary=_summary(results))
    write_report(json_path, report)
    console.print(_table(report))
    console.print(f"wrote {json_path}")
    return report


def _report_header(
    settings: Settings, approvals: int, repeats: int, expected: int
) -> dict[str, Any]:
    redis_url, database_url = settings.urls()
    return {
        "bench": "spine",
        "command": f"syncctl bench spine --approvals {approvals} --runs {repeats}",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "flow": FLOW,
        "seed": DEFAULT_SEED,
        "approvals": approvals,
        "expected_messages": expected,
        "worker": f"celery -A workers.app worker -Q {','.join(QUEUES)} -c {WORKER_CONCURRENCY}",
        "rate_limits": "lifted: sandbox rate_limit_scale 0, no rate_limits in connectors.yaml",
        "redis": mask_url(redis_url),
        "database": mask_url(database_url),
        "embedded_engines": settings.embedded,
        "cpus": os.cpu_count(),
    }


def _one_run(
    resolved: Services, approvals: int, expected: int, workdir: Path
) -> dict[str, dict[str, Any]]:
    config_dir = bench_config(resolved.settings.config_dir, workdir / "config")
    pipeline = _pipeline(resolved.settings, config_dir, approvals, workdir)
    problems = [problem for _, found in pipeline.values() for problem in found]
    if not problems:
        first, no_change = pipeline["first_sync"][0], pipeline["no_change_sync"][0]
        if first.messages != expected:
            problems.append(
                f"the pipeline's first sync sent {first.messages} messages;"
                f" the seeded approvals call for {expected}"
            )
        if no_change.messages:
            problems.append(f"the pipeline's no-change sync sent {no_change.messages} messages")
    if problems:
        raise SpineBenchError(problems, str(workdir))
    baseline = _baseline(resolved.settings, config_dir, approvals, workdir)
    for phase, want in (("first_sync", expected), ("no_change_sync", 0)):
        sync, accepted = baseline[phase]
        if (sync.messages, accepted) != (want, want):
            problems.append(
                f"the baseline's {PHASES[phase]} had {accepted} messages accepted and"
                f" {sync.messages} in the WeCom ledger; expected {want}"
            )
    if problems:
        raise SpineBenchError(problems, str(workdir))
    return {
        "pipeline": {phase: sync.as_json() for phase, (sync, _) in pipeline.items()},
        "baseline": {phase: sync.as_json() for phase, (sync, _) in baseline.items()},
    }


# -- the pipeline, through a real worker ---------------------------------------------------------
def _pipeline(
    settings: Settings, config_dir: Path, approvals: int, workdir: Path
) -> dict[str, tuple[Sync, list[str]]]:
    """Both syncs through Celery; per phase the figures and what did not add up."""
    redis_url, database_url = settings.urls()
    timeout_s = SYNC_TIMEOUT_S + approvals * SYNC_TIMEOUT_PER_APPROVAL_S
    found: dict[str, tuple[Sync, list[str]]] = {}
    with (
        bench_sandbox(workdir / "pipeline-sandbox", approvals) as sandbox,
        fresh_schema(database_url) as schema_url,
    ):
        env = sandbox.env()
        _check_flow(config_dir, env)
        settings = replace(settings.with_urls(redis_url, schema_url), config_dir=config_dir)
        migrate(schema_url, settings.connect_timeout_s)
        engine, broker = engine_for(schema_url), redis.Redis.from_url(redis_url)
        with _worker({**child_env(Services(settings, ())), **env}, workdir / "worker.log"):
            wait_for_worker(settings, workdir)
            for phase in PHASES:
                holder = locks.holder(broker, FLOW)
                if holder is not None:
                    raise SpineBenchError(
                        [
                            f"another pull of {FLOW} holds its lock in REDIS_URL (token {holder});"
                            " run the bench on a Redis database no other worker uses"
                        ],
                        str(workdir),
                    )
                sync, run = _measure(sandbox, lambda: _run_flow(settings, engine, timeout_s))
                found[phase] = (sync, _run_problems(phase, run, sync, timeout_s))
                if found[phase][1]:
                    break  # an unfinished first sync would hold the flow's lock
        broker.close()
    return found


def _run_flow(settings: Settings, engine: sa.Engine, timeout_s: float) -> runs.Run | None:
    """Send `pull.start` by name; the run it opened once it has ended, None on time-out."""
    task_id = trigger_run(settings, FLOW).task_id
    started = time.monotonic()
    run_id: int | None = None
    while (elapsed := time.monotonic() - started) < timeout_s:
        with engine.connect() as conn:
            run_id = run_id or runs.by_lock_token(conn, FLOW, task_id)
            run = None if run_id is None else runs.get(conn, run_id)
        if run is not None and run.done:
            return run
        time.sleep(min(POLL_MAX_S, max(POLL_S, elapsed / 100)))
    return None


def _run_problems(phase: str, run: runs.Run | None, sync: Sync, timeout_s: float) -> list[str]:
    what = f"the pipeline's {PHASES[phase]}"
    if run is None:
        return [f"{what} did not end within {timeout_s:g} s"]
    if run.status is not runs.RunStatus.SUCCEEDED:
        return [f"{what}: run #{run.id} {run.status.value}: {run.error}"]
    problems = []
    if run.counts["written"] != sync.messages:
        problems.append(
            f"{what}: run #{run.id} counts {run.counts['written']} messages written;"
            f" the WeCom ledger shows {sync.messages}"
        )
    if run.counts["dead_lettered"]:
        problems.append(f"{what}: run #{run.id} dead-lettered {run.counts['dead_lettered']}")
    return problems


def _worker(env: Mapping[str, str], log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The worker as production runs it, in its own session; SIGTERM, then SIGKILL, after."""
    argv = ["worker", "-Q", ",".join(QUEUES), "-c", str(WORKER_CONCURRENCY), "-l", "INFO"]
    argv += ["--without-mingle", "--without-gossip"]  # one worker: nobody to sync with
    return session_process(celery_argv(argv), env, log)


# -- the baseline: one process, a direct loop ---------------------------------------------------
def _baseline(
    settings: Settings, config_dir: Path, approvals: int, workdir: Path
) -> dict[str, tuple[Sync, int]]:
    """Both syncs through RawLoop on a sandbox of its own; per phase figures and messages the
    loop saw accepted."""
    found: dict[str, tuple[Sync, int]] = {}
    with bench_sandbox(workdir / "baseline-sandbox", approvals) as sandbox:
        config = _check_flow(config_dir, sandbox.env())
        broker = redis.Redis.from_url(settings.urls()[0])
        loop = RawLoop(config, config.flows[FLOW], ConnectorContext(broker, None, make_session()))
        for phase in PHASES:
            found[phase] = _measure(sandbox, loop.sync)
        broker.close()
    return found


# -- shared by both sides -------------------------------------------------------------------------
def _check_flow(config_dir: Path, env: Mapping[str, str]) -> Config:
    """The config, loaded as the worker will load it, with the flow the bench drives."""
    config = load_config(config_dir, {**os.environ, **env})
    if FLOW not in config.flows:
        raise ConfigError(
            str(config_dir / FLOWS_DIR), [(FLOW, "expected the flow the bench drives")]
        )
    return config


def _measure(sandbox: SandboxClient, action: Callable[[], T]) -> tuple[Sync, T]:
    """Run `action`, timed, and read off the sandbox what it cost and what it sent."""
    calls_before, seq_before = sandbox.calls("oa"), sandbox.last_seq()
    started = time.monotonic()
    answer = action()
    wall_s = time.monotonic() - started
    calls = sandbox.calls("oa")
    sent = [e for e in sandbox.ledger("wecom", since_seq=seq_before) if e["endpoint"] == SENT]
    spent = {key: n - calls_before.get(key, 0) for key, n in calls.items()}
    return Sync(wall_s, {key: n for key, n in spent.items() if n}, len(sent)), answer


# -- the report ---------------------------------------------------------------------------------
def _summary(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per figure: median, min and max of each side, and the median of the runs' ratios
    pipeline / baseline (each run's pair shares the machine's mood)."""
    summary: dict[str, Any] = {}
    for phase, figure, _ in FIGURES:
        values = {side: [float(r[side][phase][figure]) for r in results] for side in SIDES}
        pairs = zip(values["pipeline"], values["baseline"], strict=True)
        ratios = [p / b for p, b in pairs if b]
        summary[f"{phase}.{figure}"] = {
            **{
                side: {"median": median(v), "min": min(v), "max": max(v)}
                for side, v in values.items()
            },
            "ratio": round(median(ratios), 2) if len(ratios) == len(results) else None,
        }
    return summary


def _table(report: Mapping[str, Any]) -> Table:
    repeats = len(report["runs"])
    table = Table(
        title=f"bench spine: {report['approvals']:,} approvals, median of {repeats} (min-max)",
        caption=f"{report['worker']}; rate limits {report['rate_limits']}",
    )
    table.add_column("figure")
    for side in SIDES:
        table.add_column(side, justify="right")
    table.add_column("pipeline / baseline", justify="right")
    for phase, figure, label in FIGURES:
        entry = report["summary"][f"{phase}.{figure}"]
        cells = [
            f"{_number(entry[side]['median'])} "
            f"({_number(entry[side]['min'])}-{_number(entry[side]['max'])})"
            for side in SIDES
        ]
        ratio = "-" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
        table.add_row(label, *cells, ratio)
    return table


def _number(value: float) -> str:
    """Counts whole, sub-second times to the millisecond, the rest to one decimal."""
    if value.is_integer():
        return f"{value:,.0f}"
    return f"{value:.3f}" if value < 1 else f"{value:,.1f}"
