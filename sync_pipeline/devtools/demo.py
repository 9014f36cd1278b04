"""`make demo`: the main job end to end on this machine, ending with a one-screen summary.

It starts the stack (embedded engines unless REDIS_URL / DATABASE_URL are set), applies the
migrations to a schema of its own (`sync_demo`, emptied at every start so each demo tells the
same story), seeds the sandbox with one deterministic world and serves it, then starts a real
Celery worker and a real Beat. Beat pulls every shipped flow at once (a flow Beat has never run
is due straight away); the worker syncs the OA's approvals to WeCom, DingTalk, Feishu and Agora
Chat. The summary sets each flow's run counts beside what the IM emulator's ledger recorded,
so "sent exactly once" is shown, not claimed.

Then real time: with the webhook service receiving every emulator's callbacks, a new OA
request reaches its approver as a card within seconds, and the approver's press of Approve on
the WeCom card approves the request in the OA as that person, updates the card in place and
tells the applicant.

Last, the operator's view: the demo takes the sandbox's OA down for a moment (its `down`
fault) and asks every flow for a pull; the OA's circuit breaker opens, and Beat's alert
evaluation raises `oa_down` in the Feishu ops group, then resolves it once the OA is back and
a retried pull has closed the breaker. The rule lives in a demo-only alerts.yaml (every 5 s,
for_s 5) in the demo's own copy of the config directory, never in the shipped one. It ends
with the status table and the metrics endpoint's address. Everything it started is stopped
on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import requests
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import Engine

from sync_pipeline.config.loader import CONNECTORS_FILE, Config, load_config
from sync_pipeline.dispatch import QUEUES, run_health_check
from sync_pipeline.follow import trigger_run
from sync_pipeline.logging import configure_logging
from sync_pipeline.processes import celery_argv, child_process, free_port
from sync_pipeline.services import Services, export_env, services
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state import locks, runs
from sync_pipeline.state.db import engine_for, with_search_path
from sync_pipeline.state.migrate import migrate
from sync_pipeline.status import FlowStatus, flow_statuses

if TYPE_CHECKING:
    from sync_pipeline.devtools.sandbox.client import SandboxClient

HEALTH_TIMEOUT_S = 120.0
SYNC_TIMEOUT_S = 600.0
REAL_TIME_TIMEOUT_S = 60.0
DEMO_APPLICANT, DEMO_APPROVER = "E00010", "E00011"  # employee numbers in World(DEMO_SEED)
CALLBACK_SETTINGS = {
    "oa": "webhook_url",
    "wecom": "callback_url",
    "dingtalk": "callback_url",
    "feishu": "callback_url",
    "agora": "callback_url",
}
DEMO_SCHEMA = "sync_demo"
DEMO_SEED = 7
DEMO_APPROVALS = 200
POLL_S = 0.5
STEPS = 7  # _step's numbers: servers, schema, sandbox, services, synced, real time, operator
OUTAGE_TIMEOUT_S = 120.0  # for the alert to be raised, then again for it to be resolved
# The demo's alert: the OA's breaker open for DEMO_FOR_S, evaluated every DEMO_EVERY_S, told
# to the seed's first team group in Feishu (as the shipped config/alerts.yaml does).
DEMO_OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"
DEMO_ALERT_RULE = "oa_down"
# The OA's breaker probes again this soon in the demo's copy of connectors.yaml (shipped: the
# default, 30 s), so the alert resolves within seconds of the OA coming back.
DEMO_OA_CONNECTOR = "sandbox_oa"
DEMO_BREAKER_RESET_S = 5.0
DEMO_EVERY_S, DEMO_FOR_S = 5, 5
ALERT_FIRING = f"[FIRING] {DEMO_ALERT_RULE}: oa"
ALERT_RESOLVED = f"[RESOLVED] {DEMO_ALERT_RULE}: oa"

# The ledger endpoints at which each IM emulator accepts a message or card for a person.
MESSAGE_ENDPOINTS: Mapping[str, frozenset[str]] = {
    "wecom": frozenset({"message/send"}),
    "dingtalk": frozenset(
        {"message/corpconversation/asyncsend_v2", "card/instances/createAndDeliver"}
    ),
    "feishu": frozenset({"POST /open-apis/im/v1/messages"}),
    "agora": frozenset({"POST /messages/users"}),
}


_interrupted = threading.Event()


def _interrupt(_signum: int, _frame: object) -> None:
    """Ctrl-C or SIGTERM: remembered, then raised. Python may wrap the KeyboardInterrupt in
    another error when it lands inside an import (Celery imports its result backend on the
    first health check), so the flag, not the exception's class, says the demo was stopped."""
    _interrupted.set()
    raise KeyboardInterrupt


@dataclass(frozen=True)
class Moment:
    """One real-time step of the demo: what was done, what followed, and how fast."""

    action: str
    outcome: str
    seconds: float


@dataclass(frozen=True)
class OperatorView:
    """The end of the demo: the outage's alert, the flows' status, where the metrics are."""

    raised_s: float  # from the OA going down to the alert in the ops group
    resolved_s: float  # from the OA back to the resolution in the ops group
    statuses: list[FlowStatus]
    metrics_url: str
    metric_series: int  # sync_ series the endpoint answered with, read once while it ran


@dataclass(frozen=True)
class FlowResult:
    flow: str
    target: str  # the IM platform
    totals: runs.Totals  # every run of the flow so far: Beat's pulls and webhook events
    ledger_messages: int

    @property
    def matches(self) -> bool:
        return self.totals.runs > 0 and self.totals.counts["written"] == self.ledger_messages


def run_demo(console: Console, approvals: int = DEMO_APPROVALS) -> None:
    settings = load_settings()
    configure_logging("WARNING")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    began = time.monotonic()
    steps: list[tuple[str, str]] = []
    try:
        with services(settings) as resolved:
            export_env(resolved)
            steps.append(("servers", "; ".join(resolved.started) or "configured servers reached"))
            _step(console, 1, "servers ready")
            demo = _demo_services(resolved)
            result = migrate(demo.settings.urls()[1])
            steps.append((f"schema {DEMO_SCHEMA}", f"emptied, migrated to {result.after}"))
            _step(console, 2, f"schema {DEMO_SCHEMA} at {result.after}")
            results, moments, operator, answer = _sync_on_sandbox(console, demo, approvals, steps)
            elapsed = time.monotonic() - began
            _summary(console, resolved, steps, results, moments, operator, answer, elapsed)
    except BaseException as exc:
        if not (isinstance(exc, KeyboardInterrupt) or _interrupted.is_set()):
            raise
        console.print("[yellow]interrupted: everything the demo started has been stopped[/]")
        sys.exit(130)
    if not all(r.matches for r in results):
        sys.exit(1)


def _health_check(settings: Settings, log: Path) -> dict[str, Any]:
    """The worker's answer to the health task; TimeoutError (one line) when none comes."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        return run_health_check(settings, HEALTH_TIMEOUT_S)
    except CeleryTimeout:
        raise TimeoutError(
            f"the demo's worker did not answer the health task within {HEALTH_TIMEOUT_S:g} s;"
            f" see {log}"
        ) from None


def _step(console: Console, number: int, text: str) -> None:
    """One numbered step of the demo's progress, out of STEPS: the count is written once."""
    console.print(f"[bold]{number}/{STEPS}[/] {text}", highlight=False)


def _demo_services(resolved: Services) -> Services:
    """The same servers, with the demo's own PostgreSQL schema (emptied) and config dir."""
    database_url = resolved.settings.urls()[1]
    engine = engine_for(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{DEMO_SCHEMA}" CASCADE')
        conn.exec_driver_sql(f'CREATE SCHEMA "{DEMO_SCHEMA}"')
    engine.dispose()
    demo_url = with_search_path(database_url, DEMO_SCHEMA)
    return replace(resolved, settings=replace(resolved.settings, database_url=demo_url))


def _demo_config(shipped: Path, data: Path) -> Path:
    """The shipped config directory copied into the demo's data, with the demo's own
    alerts.yaml: one rule, the OA down, quick enough to be seen within the demo."""
    config = data / "config"
    shutil.copytree(shipped, config)
    alerts = {
        "evaluate_every_s": DEMO_EVERY_S,
        "destinations": {
            "ops": {"group": {"connector": "sandbox_feishu", "chat_id": DEMO_OPS_GROUP}}
        },
        "rules": {
            DEMO_ALERT_RULE: {
                "kind": "vendor_down",
                "vendors": ["oa"],
                "for_s": DEMO_FOR_S,
                "notify": ["ops"],
            }
        },
    }
    (config / "alerts.yaml").write_text(json.dumps(alerts, indent=2), "utf-8")  # JSON is YAML
    connectors = config / CONNECTORS_FILE
    shipped_text = connectors.read_text("utf-8")
    if f"\n{DEMO_OA_CONNECTOR}:\n" not in shipped_text:
        raise RuntimeError(f"{connectors}: no {DEMO_OA_CONNECTOR} connector for the demo to use")
    connectors.write_text(
        shipped_text.replace(
            f"\n{DEMO_OA_CONNECTOR}:\n",
            f"\n{DEMO_OA_CONNECTOR}:\n  breaker: {{reset_s: {DEMO_BREAKER_RESET_S:g}}}\n",
            1,
        ),
        "utf-8",
    )
    return config


def _sync_on_sandbox(
    console: Console, demo: Services, approvals: int, steps: list[tuple[str, str]]
) -> tuple[list[FlowResult], list[Moment], OperatorView, dict[str, Any]]:
    from sync_pipeline.devtools.sandbox.client import running_sandbox, seeded_store
    from sync_pipeline.devtools.sandbox.registry import free_port_base

    settings = demo.settings
    data = settings.data_dir / "demo"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    settings = replace(settings, config_dir=_demo_config(settings.config_dir, data))
    demo = replace(demo, settings=settings)
    # /metrics answers only with the admin token: the demo makes one for its own service when
    # none is set (never printed), so that it can show the endpoint working.
    token = settings.admin_token or secrets.token_urlsafe(24)
    os.environ["SYNC_ADMIN_TOKEN"] = token
    port_base = free_port_base()
    seeded_store(data / "sandbox", port_base, seed=DEMO_SEED, approvals=approvals, checkin_days=1)
    with running_sandbox(data / "sandbox", port_base) as sandbox:
        # WeCom accepts callback cards only from an app with a callback URL (errcode 43012).
        sandbox.settings("wecom", {"callback_url": "http://127.0.0.1:9/demo-has-no-webhooks"})
        os.environ.update(sandbox.env())
        config = load_config(settings.config_dir)
        flows = sorted(
            f.name for f in config.enabled_flows() if f.trigger.interval_s or f.trigger.cron
        )
        steps.append(
            ("sandbox", f"seed {DEMO_SEED}, {approvals} approvals, on 127.0.0.1:{port_base}+")
        )
        _step(console, 3, f"sandbox up: {approvals} OA approvals, port base {port_base}")
        engine = engine_for(settings.urls()[1])
        _free_flow_locks(settings.urls()[0], flows)
        logs = data / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        worker_argv = celery_argv(["worker", "-Q", ",".join(QUEUES), "-c", "2", "-l", "INFO"])
        beat_argv = celery_argv(["beat", "-l", "INFO", "--schedule", str(data / "beat-schedule")])
        port = free_port()
        webhooks_argv = [sys.executable, "-m", "sync_pipeline.cli", "webhooks", "serve"]
        webhooks_argv += ["--port", str(port)]
        with (
            child_process(worker_argv, demo, log=logs / "worker.log") as worker,
            child_process(beat_argv, demo, log=logs / "beat.log") as beat,
            child_process(webhooks_argv, demo, log=logs / "webhooks.log") as webhooks,
        ):
            answer = _health_check(settings, logs / "worker.log")
            base = f"http://127.0.0.1:{port}"
            _wait_until_up(webhooks, f"{base}/healthz", logs / "webhooks.log")
            for platform, setting in CALLBACK_SETTINGS.items():
                sandbox.settings(platform, {setting: f"{base}/webhooks/sandbox_{platform}"})
            steps.append(("worker", f"pid {worker.pid}, log {logs / 'worker.log'}"))
            steps.append(("beat", f"pid {beat.pid}, log {logs / 'beat.log'}"))
            steps.append(("webhooks", f"{base}/webhooks/<connector>, pid {webhooks.pid}"))
            _step(console, 4, "worker, Beat and webhooks running; Beat pulls every flow")
            _wait_for_runs(console, engine, flows, SYNC_TIMEOUT_S)
            _step(console, 5, "every flow synced; reading the sandbox's ledger")
            results = _results(config, engine, flows, sandbox)
            _step(console, 6, "real time: a new OA request, and Approve pressed in WeCom")
            moments = _real_time(sandbox)
            _step(console, 7, "operator's view: the OA down for a moment, its alert in Feishu")
            operator = _operator_view(sandbox, settings, engine, config, flows, base, token)
        engine.dispose()
    return results, moments, operator, answer


def _wait_until_up(proc: Any, url: str, log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text("utf-8", "replace").strip()[-400:]
            raise RuntimeError(f"the webhook service exited: {tail}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the webhook service did not answer at {url}; see {log}")


def _real_time(sandbox: SandboxClient) -> list[Moment]:
    """A new OA request, then its approver's press of Approve on the WeCom card: each timed
    from the act to the effect appearing in the emulators' ledgers."""
    from sync_pipeline.devtools.sandbox.wecom import userid_for
    from sync_pipeline.devtools.sandbox.world import World

    world = World(DEMO_SEED)
    approver, applicant = world.person(DEMO_APPROVER), world.person(DEMO_APPLICANT)
    title = f"Demo leave request {uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    made = sandbox.create_approval(
        applicant=DEMO_APPLICANT, approvers=[DEMO_APPROVER], template="leave", title=title
    )
    request_id = str(made["requestId"])

    def card() -> Mapping[str, Any] | None:
        for entry in _mentioning(sandbox, "wecom", title):
            body = entry["body"]
            if body.get("msgtype") == "template_card" and body.get("touser") == userid_for(
                approver
            ):
                found: Mapping[str, Any] = body["template_card"]
                return found
        return None

    sent = _until(card, f"the WeCom card of {title}")
    carded = time.monotonic() - began
    cards_on = _platforms_mentioning(sandbox, title)
    pressed_at = time.monotonic()
    sandbox.press(
        "wecom",
        {
            "kind": "button",
            "task_id": sent["task_id"],
            "userid": userid_for(approver),
            "key": f"approve:{request_id}",
        },
    )

    def told() -> bool:
        return any(
            e["body"].get("msgtype") == "text" and e["body"].get("touser") == userid_for(applicant)
            for e in _mentioning(sandbox, "wecom", title)
        )

    _until(told, f"the applicant of {title} told")
    decided = time.monotonic() - pressed_at
    approved = [
        e
        for e in _mentioning(sandbox, "oa", request_id)
        if e["endpoint"].endswith("/submitRequest")
    ]
    updated = [
        e for e in sandbox.ledger("wecom") if e["endpoint"] == "message/update_template_card"
    ]
    return [
        Moment(
            f'OA: {applicant.name} asks for leave ("{title}")',
            f"card to {approver.name} on {', '.join(cards_on)}",
            carded,
        ),
        Moment(
            f"WeCom: {approver.name} presses Approve",
            f"OA approved as {approver.name} ({len(approved)} action), card updated"
            f" ({len(updated)}), {applicant.name} told",
            decided,
        ),
    ]


def _operator_view(
    sandbox: SandboxClient,
    settings: Settings,
    engine: Engine,
    config: Config,
    flows: Sequence[str],
    base: str,
    token: str,
) -> OperatorView:
    """The OA down (the sandbox's `down` fault) and a pull of every flow asked for: their
    calls fail, the OA's breaker opens, and the alert is raised in the ops group; the OA back,
    the pulls' retries close the breaker and the alert is resolved. Each timed. Then every
    flow's pull finished, the status table, and one read of the metrics endpoint."""

    def posted(title: str) -> bool:
        return any(
            e["body"].get("receive_id") == DEMO_OPS_GROUP and title in str(e["body"].get("content"))
            for e in sandbox.ledger("feishu")
        )

    down_at = time.monotonic()
    sandbox.fault("oa", "down")
    try:
        for flow in flows:
            trigger_run(settings, flow)
        _until(lambda: posted(ALERT_FIRING), f"the alert {ALERT_FIRING}", OUTAGE_TIMEOUT_S)
        raised = time.monotonic() - down_at
    finally:
        sandbox.clear_faults("oa")
    back_at = time.monotonic()
    _until(lambda: posted(ALERT_RESOLVED), f"the alert {ALERT_RESOLVED}", OUTAGE_TIMEOUT_S)
    resolved = time.monotonic() - back_at

    def settled() -> bool:
        with engine.connect() as conn:
            latest = [runs.latest(conn, flow) for flow in flows]
        return all(run is not None and run.done for run in latest)

    _until(settled, "the flows' pulls to finish once the OA was back", OUTAGE_TIMEOUT_S)
    answer = requests.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    answer.raise_for_status()
    series = sum(1 for line in answer.text.splitlines() if line.startswith("sync_"))
    return OperatorView(raised, resolved, flow_statuses(engine, config), f"{base}/metrics", series)


def _mentioning(sandbox: SandboxClient, platform: str, text: str) -> list[Mapping[str, Any]]:
    return [
        e for e in sandbox.ledger(platform) if text in json.dumps(e["body"], ensure_ascii=False)
    ]


def _platforms_mentioning(sandbox: SandboxClient, text: str) -> list[str]:
    return sorted(
        {
            str(e["platform"])
            for e in sandbox.ledger()
            if text in json.dumps(e["body"], ensure_ascii=False)
        }
        - {"oa"}
    )


def _until(found: Any, what: str, timeout_s: float = REAL_TIME_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.1 if timeout_s <= REAL_TIME_TIMEOUT_S else POLL_S)
    raise TimeoutError(f"no sign of {what} within {timeout_s:g} s; see the logs")


def _free_flow_locks(redis_url: str, flows: Sequence[str]) -> None:
    """A demo interrupted mid-run left its flows locked; the new demo owns those flows."""
    client = redis.Redis.from_url(redis_url)
    try:
        for flow in flows:
            holder = locks.holder(client, flow)
            if holder is not None:
                locks.release(client, flow, holder)
    finally:
        client.close()


def _wait_for_runs(
    console: Console, engine: Engine, flows: Sequence[str], timeout_s: float
) -> dict[str, runs.Run]:
    """Poll the runs table until every flow has a finished run, showing live counts."""
    deadline = time.monotonic() + timeout_s
    latest: dict[str, runs.Run | None] = {}

    def table() -> Table:
        view = Table(box=None, pad_edge=False)
        for column in ("flow", "run", "pages", "pulled", "written", "skipped", "dead"):
            view.add_column(column)
        for flow in flows:
            run = latest.get(flow)
            counts = run.counts if run else {}
            view.add_row(
                flow,
                "waiting for Beat" if run is None else f"#{run.id} {run.status.value}",
                *(
                    str(counts.get(k, "-"))
                    for k in ("pages", "pulled", "written", "skipped", "dead_lettered")
                ),
            )
        return view

    with Live(table(), console=console, refresh_per_second=4, transient=True) as live:
        while True:
            with engine.connect() as conn:
                latest = {flow: runs.latest(conn, flow) for flow in flows}
            live.update(table())
            if all(run is not None and run.done for run in latest.values()):
                return {flow: run for flow, run in latest.items() if run is not None}
            if time.monotonic() > deadline:
                waiting = [f for f, r in latest.items() if r is None or not r.done]
                raise TimeoutError(
                    f"no finished run of {', '.join(waiting)} within {timeout_s:g} s;"
                    " see the worker and beat logs"
                )
            time.sleep(POLL_S)


def _results(
    config: Config, engine: Engine, flows: Sequence[str], sandbox: SandboxClient
) -> list[FlowResult]:
    """Each flow's runs added up beside its IM ledger, read while no run is going on (a run
    counts a page's messages once the page is written, so a running one would be behind)."""
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while True:
        with engine.connect() as conn:
            totals = {flow: runs.totals(conn, flow) for flow in flows}
        ledger = sandbox.ledger()
        with engine.connect() as conn:
            quiet = all(runs.totals(conn, flow) == totals[flow] for flow in flows)
        if quiet and not any(t.running for t in totals.values()):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the flows did not settle within {SYNC_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    results = []
    for flow in flows:
        target = config.connectors[config.flows[flow].target.connector].vendor.value
        endpoints = MESSAGE_ENDPOINTS.get(target, frozenset())
        sent = sum(1 for e in ledger if e["platform"] == target and e["endpoint"] in endpoints)
        results.append(FlowResult(flow, target, totals[flow], sent))
    return results


def _summary(
    console: Console,
    resolved: Services,
    steps: list[tuple[str, str]],
    results: list[FlowResult],
    moments: list[Moment],
    operator: OperatorView,
    answer: dict[str, Any],
    elapsed_s: float,
) -> None:
    settings = resolved.settings.describe()
    flows = Table(title="OA approvals synced by Beat + worker", box=None, pad_edge=False)
    for column in ("flow", "runs", "pulled", "sent", "skipped", "dead", "in ledger"):
        flows.add_column(column, justify="left" if column == "flow" else "right")
    for r in results:
        counts = r.totals.counts
        flows.add_row(
            r.flow,
            str(r.totals.runs),
            *(str(counts[k]) for k in ("pulled", "written", "skipped", "dead_lettered")),
            f"{r.ledger_messages} [green]=[/]" if r.matches else f"{r.ledger_messages} [red]≠[/]",
        )
    info = Table(show_header=False, box=None, pad_edge=False)
    info.add_column(style="bold")
    info.add_column()
    for name, text in steps:
        info.add_row(name, text)
    info.add_row("redis", f"{settings['REDIS_URL']} (redis {answer['redis']})")
    info.add_row("postgres", f"{settings['DATABASE_URL']} (PostgreSQL {answer['postgres']})")
    info.add_row("queues", ", ".join(QUEUES))
    info.add_row("health", f"ok from {answer['worker']}, schema {answer['schema']}")
    info.add_row("elapsed", f"{elapsed_s:.1f} s")
    live = Table(title="Real time, through the webhook service", box=None, pad_edge=False)
    for column in ("done", "followed", "seconds"):
        live.add_column(column, justify="right" if column == "seconds" else "left")
    for moment in moments:
        live.add_row(moment.action, moment.outcome, f"{moment.seconds:.1f}")
    console.print(Panel.fit(_stack(info, flows, live), title="sync_pipeline demo: summary"))
    _operator_summary(console, operator)
    if all(r.matches for r in results):
        console.print("Every message the flows counted is in the IM ledgers, exactly once.")
    else:
        console.print("[red]The run counts and the ledgers differ: see the table above.[/]")
    console.print("Everything started by the demo is stopped. Next: make test")


def _operator_summary(console: Console, view: OperatorView) -> None:
    """What an operator watches: the flows' status (as `syncctl status` shows it), the alert
    the outage raised and resolved, and where the metrics are scraped."""
    status = Table(title="syncctl status", box=None, pad_edge=False)
    for column in ("flow", "lag", "last ok", "pull", "DLQ"):
        status.add_column(column, justify="left" if column == "flow" else "right")
    for f in view.statuses:
        pull = "-" if f.last_run is None else f.last_run.status.value
        pull = pull if f.enabled else "off"
        status.add_row(
            f.flow,
            _age(f.lag_s) if f.pullable else "events",
            _age(f.last_ok_age_s),
            "paused" if f.paused else pull if f.pullable else "-",
            str(f.dead_letters),
        )
    info = Table(show_header=False, box=None, pad_edge=False)
    info.add_column(style="bold")
    info.add_column()
    info.add_row(
        "alert",
        f"OA down: {DEMO_ALERT_RULE} raised in the Feishu ops group after {view.raised_s:.0f} s,"
        f" resolved {view.resolved_s:.0f} s after the OA was back (once each)",
    )
    info.add_row(
        "metrics",
        f"{view.metrics_url} (bearer SYNC_ADMIN_TOKEN; {view.metric_series} sync_ series"
        " read while it ran)",
    )
    console.print(Panel.fit(_stack(status, info), title="the operator's view"))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _stack(*parts: Table) -> Table:
    grid = Table.grid(padding=(1, 0))
    for part in parts:
        grid.add_row(part)
    return grid
