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

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis
import sqlalchemy as sa
import yaml
from rich.console import Console
from rich.table import Table

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import CONNECTORS_FILE, FLOWS_DIR, Config, load_config
from sync_pipeline.connectors.base import ConnectorContext, DirectoryUser
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.directory import MATCH_ORDER, DirectorySnapshot
from sync_pipeline.dispatch import QUEUES, run_health_check
from sync_pipeline.errors import ConfigError, SyncError
from sync_pipeline.follow import trigger_run
from sync_pipeline.http import make_session
from sync_pipeline.processes import celery_argv, child_env, stop_process
from sync_pipeline.records import Record, WriteStatus
from sync_pipeline.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.sandbox.seed import DEFAULT_SEED
from sync_pipeline.sandbox.world import World
from sync_pipeline.services import Services
from sync_pipeline.settings import Settings, mask_url
from sync_pipeline.stages.plan import plan_writes
from sync_pipeline.stages.rules import filter_batch
from sync_pipeline.stages.transform import transform
from sync_pipeline.state import locks, runs
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.steps import read_window

FLOW = "approvals_to_wecom"
PLATFORMS = ("oa", "wecom")  # the flow's two ends; the other emulators stay empty
PHASES = {"first_sync": "first sync", "no_change_sync": "no-change sync"}
SIDES = ("pipeline", "baseline")
LIST_CALL = "getAllWorkflowRequestList"
SENT = "message/send"  # the WeCom ledger's endpoint for an accepted message or card
WORKER_CONCURRENCY = 2
WORKER_START_S = 60.0
# The run row is polled every POLL_S at first (a no-change sync takes a fraction of a second),
# then every hundredth of the time gone, up to POLL_MAX_S: the poller's own CPU competes with
# the worker on a small machine, and the figure is never more than 1% late.
POLL_S = 0.02
POLL_MAX_S = 0.5
SYNC_TIMEOUT_S = 120.0
SYNC_TIMEOUT_PER_APPROVAL_S = 0.1
# WeCom sends template cards only from an app with a callback URL (errcode 43012). Nobody
# presses a card here, so nothing needs to answer at it.
CARD_CALLBACK_URL = "http://127.0.0.1:1/callbacks/wecom"
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


class SpineBenchError(SyncError):
    """The bench has no honest figures: a count that does not add up, a run that did not end.
    The run's worker log and sandbox stay in `workdir` for a look."""

    def __init__(self, problems: Sequence[str], workdir: str) -> None:
        super().__init__(list(problems), workdir)
        self.problems, self.workdir = list(problems), workdir

    def __str__(self) -> str:
        return f"bench spine: {'; '.join(self.problems)} (worker log and sandbox: {self.workdir})"


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
        except SpineBenchError as exc:
            report.update(runs=results, error=str(exc))
            json_path.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
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
    json_path.write_text(json.dumps(report, indent=2) + "\n", "utf-8")
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
    config_dir = _bench_config(resolved.settings.config_dir, workdir / "config")
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
        _seeded_sandbox(workdir / "pipeline-sandbox", approvals) as sandbox,
        _fresh_schema(database_url) as schema_url,
    ):
        env = sandbox.env()
        _check_flow(config_dir, env)
        settings = replace(settings.with_urls(redis_url, schema_url), config_dir=config_dir)
        migrate(schema_url, settings.connect_timeout_s)
        engine, broker = engine_for(schema_url), redis.Redis.from_url(redis_url)
        with _worker({**child_env(Services(settings, ())), **env}, workdir / "worker.log"):
            _wait_for_worker(settings, workdir)
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
    task_id = trigger_run(settings, FLOW)
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


@contextmanager
def _worker(env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The worker as production runs it, in its own session; SIGTERM, then SIGKILL, after."""
    argv = ["worker", "-Q", ",".join(QUEUES), "-c", str(WORKER_CONCURRENCY), "-l", "INFO"]
    argv += ["--without-mingle", "--without-gossip"]  # one worker: nobody to sync with
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            celery_argv(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_process(proc)


def _wait_for_worker(settings: Settings, workdir: Path) -> None:
    """The health task answered through the broker: the worker consumes, timing may start."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        run_health_check(settings, WORKER_START_S)
    except CeleryTimeout:
        raise SpineBenchError(
            [f"the worker did not answer the health task within {WORKER_START_S:g} s"],
            str(workdir),
        ) from None


@contextmanager
def _fresh_schema(database_url: str) -> Iterator[str]:
    """A schema of this run's own in DATABASE_URL's database, dropped afterwards; yields a URL
    whose search_path is that schema (as the tests make theirs)."""
    schema = f"bench_spine_{uuid.uuid4().hex[:12]}"
    admin = engine_for(database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    url = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


# -- the baseline: one process, a direct loop ---------------------------------------------------
class RawLoop:
    """Read a page, map it, send each message: no Celery, no PostgreSQL, no effect keys.

    What was sent lives in a dict (source id -> version), so a second sync reads the window the
    pipeline reads (cursor minus lookback, up to now) and sends only what changed.
    """

    def __init__(self, config: Config, flow: Flow, ctx: ConnectorContext) -> None:
        self.flow = flow
        ends = (flow.source.connector, flow.target.connector)
        self.source, self.target = (make_connector(config.connectors[name], ctx) for name in ends)
        self.systems = tuple(config.connectors[name].vendor.value for name in ends)
        self.seen: dict[str, str] = {}
        self.cursor: str | None = None
        self._users: DirectorySnapshot | None = None

    def sync(self) -> int:
        """One pass over the window; returns the messages the target accepted."""
        window = read_window(self.flow, self.cursor, datetime.now(UTC))
        token: str | None = None
        accepted = 0
        while True:
            page = self.source.read_page(
                self.flow.source.stream, window, token, self.flow.page_size
            )
            accepted += self._send(page.records)
            if page.next_token is None:
                return accepted
            token = page.next_token

    def _send(self, records: Sequence[Record]) -> int:
        flow = self.flow
        changed = [r for r in records if self.seen.get(r.source_id) != r.version]
        for record in records:
            self.seen[record.source_id] = record.version
            self.cursor = max(self.cursor or record.cursor_value, record.cursor_value)
        if not changed:
            return 0
        hydrated = self.source.hydrate(flow.source.stream, changed)
        mapped = transform(hydrated, flow.mapping, self._directory())
        kept = filter_batch(mapped.records, flow.rules, {})
        requests = plan_writes(flow.name, kept.kept, flow.notify, {}, target=self.systems[1])
        results = [self.target.write(flow.target.stream, request) for request in requests]
        return sum(result.status is WriteStatus.DONE for result in results)

    def _directory(self) -> DirectorySnapshot:
        """Both ends' users, listed once (the pipeline keeps them for ten minutes)."""
        if self._users is None:
            ends = zip(self.systems, (self.source, self.target), strict=True)
            self._users = _snapshot({system: end.list_users() for system, end in ends})
        return self._users


def _snapshot(users: Mapping[str, Sequence[DirectoryUser]]) -> DirectorySnapshot:
    """directory.load_snapshot's index, built from the platforms' lists, not PostgreSQL (emails
    lowercased, as directory.replace_users stores them)."""
    snapshot = DirectorySnapshot()
    for system, people in users.items():
        for person in people:
            user = replace(person, email=(person.email or "").lower() or None)
            snapshot.by_user[(system, user.user_id)] = user
            for kind in MATCH_ORDER:
                value = getattr(user, kind)
                if value:
                    snapshot.by_key.setdefault((system, kind, value), user.user_id)
    return snapshot


def _baseline(
    settings: Settings, config_dir: Path, approvals: int, workdir: Path
) -> dict[str, tuple[Sync, int]]:
    """Both syncs through RawLoop on a sandbox of its own; per phase figures and messages the
    loop saw accepted."""
    found: dict[str, tuple[Sync, int]] = {}
    with _seeded_sandbox(workdir / "baseline-sandbox", approvals) as sandbox:
        config = _check_flow(config_dir, sandbox.env())
        broker = redis.Redis.from_url(settings.urls()[0])
        loop = RawLoop(config, config.flows[FLOW], ConnectorContext(broker, None, make_session()))
        for phase in PHASES:
            found[phase] = _measure(sandbox, loop.sync)
        broker.close()
    return found


# -- shared by both sides -------------------------------------------------------------------------
@contextmanager
def _seeded_sandbox(data_dir: Path, approvals: int) -> Iterator[SandboxClient]:
    """The flow's two platforms seeded from World(DEFAULT_SEED), served on free ports, with
    the sandbox's own throttles off."""
    with seeded_sandbox(
        data_dir, seed=DEFAULT_SEED, approvals=approvals, checkin_days=0, platforms=PLATFORMS
    ) as sandbox:
        sandbox.settings("wecom", {"callback_url": CARD_CALLBACK_URL})
        for platform in PLATFORMS:
            sandbox.settings(platform, {"rate_limit_scale": 0})
        yield sandbox


def _bench_config(config_dir: Path, into: Path) -> Path:
    """A copy of `config_dir` whose connectors have no client-side rate limits."""
    source = config_dir / CONNECTORS_FILE
    try:
        connectors = yaml.safe_load(source.read_text("utf-8")) or {}
    except OSError as exc:
        raise ConfigError(str(source), [("file", f"expected a readable file ({exc})")]) from None
    for body in connectors.values():
        if isinstance(body, dict):
            body.pop("rate_limits", None)
    shutil.copytree(config_dir / FLOWS_DIR, into / FLOWS_DIR)
    (into / CONNECTORS_FILE).write_text(yaml.safe_dump(connectors, sort_keys=False), "utf-8")
    return into


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
