"""`syncctl bench events`: webhook-to-IM-delivery latency under a steady load.

A load generator on loopback sends the OA's signed change webhooks (one per decided approval,
each of which makes exactly one message to its applicant) at a fixed rate, open loop: event i
leaves at t0 + i/rate whether or not earlier ones were answered, as a vendor's webhooks do.
Latency is the time from an event's send to the moment the WeCom emulator accepted its
message (the emulator's ledger stamps it), so it spans the whole path:

- pipeline: the webhook service (`syncctl webhooks serve`: verify, record once in PostgreSQL,
  answer, enqueue) -> Redis -> real workers as docker-compose runs them: the events queue's own
  (`syncctl worker --queues events --no-task-events`: `events.handle` re-reads the approvals
  from the OA, in micro-batches under load, the flow's stages, an effect key each, the WeCom
  sends) and one for the other queues (idle here) -> the ledger;
- baseline, measured in the same run on a sandbox of its own: a receiver that does the least
  that works (check the signature, re-read the approval, map it, send), synchronously inside
  the request, with no queue, no PostgreSQL and no effect keys: what durability costs.

Every event must be delivered exactly once on both sides; a missing or doubled message is
reported as an error, never as a figure. The rates' p50 and p99 are medians over `--runs`.
Both sides run on this machine beside the load generator and the sandbox (2 cores here), so
the ratio pipeline / baseline is the figure to compare across machines.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import requests
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from sync_pipeline.config.loader import FLOWS_DIR
from sync_pipeline.devtools.bench.harness import (
    FLOW,
    PLATFORMS,
    SENT,
    BenchError,
    bench_config,
    bench_sandbox,
    fresh_schema,
    wait_for_worker,
    write_report,
)
from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.seed import DEFAULT_SEED
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.dispatch import NO_TASK_EVENTS, QUEUES
from sync_pipeline.processes import celery_argv, child_env, free_port, session_process
from sync_pipeline.services import Services
from sync_pipeline.settings import Settings, mask_url
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.effects import EffectStatus
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.schema import effects

SIDES = ("pipeline", "baseline")
DEFAULT_RATES = (50, 200)
DEFAULT_DURATION_S = 10.0
WARMUP_EVENTS = 10  # the first events refresh the directory and fill connection pools
SENDER_THREADS = 32  # enough that a slow answer never holds back the next send
DELIVERY_GRACE_S = 90.0  # after the last send, how long deliveries may still come
SERVER_START_S = 60.0
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-OA-Signature", "X-OA-Timestamp"


class EventsBenchError(BenchError):
    """No honest figures: an event lost or doubled, a server that did not start."""

    bench = "bench events"


@dataclass(frozen=True)
class Sent:
    source_id: str
    sent_ms: float  # wall clock, ms, as the ledger stamps
    answered_ms: float  # how long the receiver took to answer
    status: int  # its HTTP status; 0 when the request failed


@dataclass(frozen=True)
class Load:
    """One rate on one side: what was sent, and when each message reached the IM."""

    rate: int
    sent: Sequence[Sent]
    delivered_ms: Mapping[str, float]  # source id -> ledger time of its message
    doubled: int  # messages beyond one per event

    def latencies_ms(self) -> list[float]:
        return sorted(
            self.delivered_ms[s.source_id] - s.sent_ms
            for s in self.sent
            if s.source_id in self.delivered_ms
        )

    def as_json(self) -> dict[str, Any]:
        latencies = self.latencies_ms()
        answers = sorted(s.answered_ms for s in self.sent)
        first_send = min(s.sent_ms for s in self.sent)
        last_delivery = max(self.delivered_ms.values(), default=first_send)
        span_s = max(1e-3, (last_delivery - first_send) / 1000)
        return {
            "rate": self.rate,
            "sent": len(self.sent),
            "refused": sum(1 for s in self.sent if not 200 <= s.status < 300),
            "delivered": len(latencies),
            "doubled": self.doubled,
            "latency_ms": _percentiles(latencies),
            "answer_ms": _percentiles(answers),
            "throughput_per_s": round(len(latencies) / span_s, 1),
        }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 1)

    return {"p50": at(0.50), "p99": at(0.99), "max": round(ordered[-1], 1)}


def decided_approvals(world: World, wanted: int) -> tuple[int, list[str]]:
    """(approvals to seed, OA request ids of `wanted` approved or rejected ones): each makes
    exactly one message, to its applicant, under the shipped flow."""
    ids: list[str] = []
    for seeded, approval in enumerate(world.approvals(10 * wanted + 1000), start=1):
        if approval.state in ("approved", "rejected"):
            ids.append(str(approval.request_id))
            if len(ids) == wanted:
                return seeded, ids
    raise ValueError(f"the world has fewer than {wanted} decided approvals")


def bench_events(
    resolved: Services,
    rates: Sequence[int],
    duration_s: float,
    repeats: int,
    json_path: Path,
    console: Console,
) -> dict[str, Any]:
    """`repeats` runs of every rate on both sides; then the table and the JSON."""
    bench_dir = resolved.settings.data_dir / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    report = _header(resolved.settings, rates, duration_s, repeats)
    results: list[dict[str, Any]] = []
    for number in range(1, repeats + 1):
        for rate in rates:
            workdir = Path(tempfile.mkdtemp(prefix=f"events-{rate}-", dir=bench_dir))
            console.print(f"run {number}/{repeats}, {rate} events/s ({workdir})")
            try:
                found = {
                    side: _one_side(side, resolved.settings, rate, duration_s, workdir)
                    for side in SIDES
                }
            except BenchError as exc:
                report.update(runs=results, error=str(exc))
                write_report(json_path, report)
                raise
            results.append(
                {"run": number, "rate": rate, **{s: f.as_json() for s, f in found.items()}}
            )
            for side in SIDES:
                figures = results[-1][side]
                console.print(
                    f"  {side}: p50 {figures['latency_ms']['p50']:.0f} ms,"
                    f" p99 {figures['latency_ms']['p99']:.0f} ms,"
                    f" {figures['throughput_per_s']:.0f} delivered/s"
                )
            shutil.rmtree(workdir, ignore_errors=True)
    report.update(runs=results, summary=_summary(results, rates))
    write_report(json_path, report)
    console.print(_table(report))
    console.print(f"wrote {json_path}")
    return report


def _header(
    settings: Settings, rates: Sequence[int], duration_s: float, repeats: int
) -> dict[str, Any]:
    redis_url, database_url = settings.urls()
    return {
        "bench": "events",
        "command": f"syncctl bench events --rates {','.join(map(str, rates))}"
        f" --duration {duration_s:g} --runs {repeats}",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "flow": FLOW,
        "duration_s": duration_s,
        "webhooks": "syncctl webhooks serve (1 process)",
        "worker": f"celery -A workers.app worker {' '.join(EVENTS_WORKER + NO_TASK_EVENTS)}"
        f" (and -Q {','.join(OTHER_QUEUES)} -c 1)",
        "redis": mask_url(redis_url),
        "database": mask_url(database_url),
        "cpus": os.cpu_count(),
    }


# -- one side at one rate -----------------------------------------------------------------------
def _one_side(side: str, settings: Settings, rate: int, duration_s: float, workdir: Path) -> Load:
    count = max(1, round(rate * duration_s))
    seeded, ids = decided_approvals(World(DEFAULT_SEED), WARMUP_EVENTS + count)
    warmup, measured = ids[:WARMUP_EVENTS], ids[WARMUP_EVENTS:]
    config_dir = _flow_only_config(settings.config_dir, workdir / f"{side}-config")
    with bench_sandbox(workdir / f"{side}-sandbox", seeded) as sandbox:
        env = {**sandbox.env()}
        secret = env["SANDBOX_OA_WEBHOOK_SECRET"]
        with _receiver(side, settings, config_dir, env, workdir) as (url, delivered):
            _drive(url, secret, warmup, rate=min(rate, 20))
            _await(sandbox, delivered, warmup, workdir, DELIVERY_GRACE_S)
            started_seq = sandbox.last_seq()
            sent = _drive(url, secret, measured, rate=rate)
            found = _await(sandbox, delivered, measured, workdir, DELIVERY_GRACE_S)
            doubled = _doubled(sandbox, started_seq, len(measured))
    return Load(rate, sent, found, doubled)


def _flow_only_config(config_dir: Path, into: Path) -> Path:
    """The config without rate limits, with only the bench's flow: every event makes exactly
    one effect, on WeCom."""
    copied = bench_config(config_dir, into)
    for path in (copied / FLOWS_DIR).glob("*.yaml"):
        if path.stem != FLOW:
            path.unlink()
    return copied


# -- receivers: the webhook service + worker, or the direct baseline --------------------------
DeliveredFinder = Any  # Callable[[SandboxClient, Sequence[str]], dict[str, float]]


@contextmanager
def _receiver(
    side: str, settings: Settings, config_dir: Path, sandbox_env: Mapping[str, str], workdir: Path
) -> Iterator[tuple[str, DeliveredFinder]]:
    port = free_port()
    if side == "pipeline":
        redis_url, database_url = settings.urls()
        with fresh_schema(database_url) as schema_url:
            local = replace(settings.with_urls(redis_url, schema_url), config_dir=config_dir)
            migrate(schema_url, local.connect_timeout_s)
            env = {**child_env(Services(local, ())), **sandbox_env}
            serve = [
                sys.executable,
                "-m",
                "sync_pipeline.cli",
                "webhooks",
                "serve",
                "--port",
                str(port),
            ]
            with (
                _workers(env, workdir),
                _server(serve, env, workdir / "webhooks.log", f"http://127.0.0.1:{port}/healthz"),
            ):
                wait_for_worker(local, workdir)
                engine = engine_for(schema_url)
                yield f"http://127.0.0.1:{port}/webhooks/sandbox_oa", _effects_finder(engine)
                engine.dispose()
    else:
        env = {**os.environ, **sandbox_env, "SYNC_CONFIG_DIR": str(config_dir)}
        env["REDIS_URL"] = settings.urls()[0]
        serve = [sys.executable, "-m", "sync_pipeline.devtools.bench.direct", "--port", str(port)]
        with _server(serve, env, workdir / "direct.log", f"http://127.0.0.1:{port}/sent"):
            yield f"http://127.0.0.1:{port}/webhooks/sandbox_oa", _direct_finder(port)


# The events queue's worker as `syncctl worker --queues events --no-task-events -c 2` runs it
# (docker-compose's events-worker), one process per core here; the other queues' worker only
# answers the health task.
EVENTS_WORKER = ("-Q", "events", "-c", "2")
OTHER_QUEUES = tuple(q for q in QUEUES if q != "events")


@contextmanager
def _workers(env: Mapping[str, str], workdir: Path) -> Iterator[None]:
    """Both workers in their own sessions; SIGTERM, then SIGKILL, after."""
    common = ["-l", "INFO", "--without-mingle", "--without-gossip"]
    specs = {
        "events": ["worker", *EVENTS_WORKER, *common, "-n", "events@%h", *NO_TASK_EVENTS],
        "other": ["worker", "-Q", ",".join(OTHER_QUEUES), "-c", "1", *common, "-n", "other@%h"],
    }
    with ExitStack() as stack:
        for name, argv in specs.items():
            log = workdir / f"worker-{name}.log"
            stack.enter_context(session_process(celery_argv(argv), env, log))
        yield


@contextmanager
def _server(
    argv: Sequence[str], env: Mapping[str, str], log: Path, ready_url: str
) -> Iterator[None]:
    with session_process(argv, env, log) as proc:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise EventsBenchError([f"{argv[3]} exited with {proc.returncode}"], str(log))
            try:
                if requests.get(ready_url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise EventsBenchError([f"{ready_url} did not answer"], str(log))
            time.sleep(0.1)
        yield


def _effects_finder(engine: sa.Engine) -> DeliveredFinder:
    """Source id -> WeCom msgid, from the effects the worker recorded."""

    def find(source_ids: Sequence[str]) -> dict[str, str]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(effects.c.source_id, effects.c.vendor_ref).where(
                    effects.c.flow == FLOW,
                    effects.c.status == EffectStatus.DONE,
                    effects.c.source_id.in_(list(source_ids)),
                )
            )
            return {str(s): str(ref) for s, ref in rows if ref}

    return find


def _direct_finder(port: int) -> DeliveredFinder:
    def find(source_ids: Sequence[str]) -> dict[str, str]:
        sent: dict[str, str] = requests.get(f"http://127.0.0.1:{port}/sent", timeout=30).json()
        wanted = set(source_ids)
        return {s: ref for s, ref in sent.items() if s in wanted}

    return find


# -- the load generator ---------------------------------------------------------------------------
def _drive(url: str, secret: str, source_ids: Sequence[str], *, rate: float) -> list[Sent]:
    """Send one signed change webhook per id, event i at t0 + i/rate (open loop)."""
    results: list[Sent | None] = [None] * len(source_ids)
    cursor = iter(range(len(source_ids)))
    lock = threading.Lock()
    t0 = time.monotonic() + 0.2

    def sender() -> None:
        session = requests.Session()
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            due = t0 + index / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            results[index] = _send(session, url, secret, source_ids[index])

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(SENDER_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def _send(session: requests.Session, url: str, secret: str, source_id: str) -> Sent:
    payload = {
        "event": "request.approved",
        "eventId": str(uuid.uuid4()),
        "requestId": source_id,
        "status": "approved",
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    ts = str(int(time.time()))
    signature = hmac.new(secret.encode(), ts.encode() + b"." + raw, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: signature,
    }
    sent_ms = time.time() * 1000
    started = time.monotonic()
    try:
        status = session.post(url, data=raw, headers=headers, timeout=10).status_code
    except requests.RequestException:
        status = 0
    return Sent(source_id, sent_ms, (time.monotonic() - started) * 1000, status)


def _await(
    sandbox: SandboxClient,
    delivered: DeliveredFinder,
    source_ids: Sequence[str],
    workdir: Path,
    grace_s: float,
) -> dict[str, float]:
    """Source id -> ledger time (ms) of its message, once every id has one or the grace ends."""
    deadline = time.monotonic() + grace_s
    refs: dict[str, str] = {}
    while True:
        refs = delivered(source_ids)
        if len(refs) >= len(source_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    stamps = {
        str(e["body"].get("msgid")): float(e["ts_ms"])
        for e in sandbox.ledger(PLATFORMS[1])
        if e["endpoint"] == SENT
    }
    found = {sid: stamps[ref] for sid, ref in refs.items() if ref in stamps}
    missing = len(source_ids) - len(found)
    if missing:
        raise EventsBenchError(
            [f"{missing} of {len(source_ids)} events reached no message within {grace_s:g} s"],
            str(workdir),
        )
    return found


def _doubled(sandbox: SandboxClient, since_seq: int, expected: int) -> int:
    sent = [e for e in sandbox.ledger(PLATFORMS[1], since_seq=since_seq) if e["endpoint"] == SENT]
    return max(0, len(sent) - expected)


# -- the report ---------------------------------------------------------------------------------
FIGURES = (
    ("latency_ms", "p50", "delivery latency p50 (ms)"),
    ("latency_ms", "p99", "delivery latency p99 (ms)"),
    ("latency_ms", "max", "delivery latency max (ms)"),
    ("answer_ms", "p99", "webhook answer p99 (ms)"),
    ("throughput_per_s", None, "delivered per second"),
)


def _summary(results: Sequence[Mapping[str, Any]], rates: Sequence[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for rate in rates:
        runs_ = [r for r in results if r["rate"] == rate]
        for group, key, _ in FIGURES:
            name = f"{rate}.{group}" + (f".{key}" if key else "")
            values = {
                side: [float(r[side][group][key] if key else r[side][group]) for r in runs_]
                for side in SIDES
            }
            ratios = [
                p / b for p, b in zip(values["pipeline"], values["baseline"], strict=True) if b
            ]
            summary[name] = {
                **{
                    side: {"median": median(v), "min": min(v), "max": max(v)}
                    for side, v in values.items()
                },
                "ratio": round(median(ratios), 2) if ratios else None,
            }
        summary[f"{rate}.doubled"] = sum(r[side]["doubled"] for r in runs_ for side in SIDES)
    return summary


def _table(report: Mapping[str, Any]) -> Table:
    runs_ = report["runs"]
    repeats = len({r["run"] for r in runs_})
    table = Table(
        title=f"bench events: OA webhook -> WeCom message, {report['duration_s']:g} s per rate,"
        f" median of {repeats} (min-max)",
        caption=f"{report['webhooks']}; {report['worker']}",
    )
    table.add_column("events/s")
    table.add_column("figure")
    for side in SIDES:
        table.add_column(side, justify="right")
    table.add_column("pipeline / baseline", justify="right")
    rates = sorted({int(r["rate"]) for r in runs_})
    for rate in rates:
        for group, key, label in FIGURES:
            entry = report["summary"][f"{rate}.{group}" + (f".{key}" if key else "")]
            cells = [_cell(entry[side]) for side in SIDES]
            ratio = "-" if entry["ratio"] is None else f"{entry['ratio']:.2f}"
            table.add_row(str(rate), label, *cells, ratio)
    return table


def _cell(figures: Mapping[str, float]) -> str:
    return f"{figures['median']:,.0f} ({figures['min']:,.0f}-{figures['max']:,.0f})"
