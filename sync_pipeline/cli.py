"""`syncctl`: the operator's command line.

Exit codes scripts can rely on: 0 success; 1 the command ran and failed (a health check that
timed out, a failed run); 2 it could not run (bad configuration, a server unreachable, bad
usage). Errors print as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import sqlalchemy as sa
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Connection

from sync_pipeline import __version__
from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import load_config
from sync_pipeline.dispatch import NO_TASK_EVENTS, QUEUES, run_health_check
from sync_pipeline.errors import ConfigError, RunStatus
from sync_pipeline.logging import configure_logging
from sync_pipeline.oneline import fail, one_line_errors
from sync_pipeline.processes import celery_argv, run_foreground
from sync_pipeline.services import Services, services
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state.controls import Control
from sync_pipeline.state.effects import Effect
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.instances import Instance
from sync_pipeline.state.migrate import MigrationResult, migrate
from sync_pipeline.state.runs import Run
from sync_pipeline.status import FlowStatus, flow_statuses
from sync_pipeline.untrusted import clean_text, excerpt

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def settings_from_env() -> Settings:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


# Options several listing commands share.
newest_option = click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Show the newest N.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncctl")
def main() -> None:
    """Keep an IM platform and an OA system in step.

    Uses REDIS_URL and DATABASE_URL when set; otherwise starts embedded Redis and PostgreSQL
    under SYNC_DATA_DIR (.sync-data) for the duration of the command.
    """


@main.command()
@one_line_errors
def check() -> None:
    """Validate the settings without touching the network."""
    settings = settings_from_env()
    table = Table(title="Settings", show_header=True)
    table.add_column("variable")
    table.add_column("value")
    for name, value in settings.describe().items():
        table.add_row(name, value)
    console.print(table)
    config = load_config(settings.config_dir)
    flows = Table(title=f"Flows ({settings.config_dir})")
    for column in ("flow", "enabled", "source", "target", "trigger", "mode"):
        flows.add_column(column)
    for flow in config.flows.values():
        trigger = flow.trigger.cron or (
            f"every {flow.trigger.interval_s:g} s" if flow.trigger.interval_s else ""
        )
        if flow.trigger.webhook:
            trigger = f"{trigger} + webhook".strip(" +")
        flows.add_row(
            flow.name,
            "yes" if flow.enabled else "no",
            f"{flow.source.connector}/{flow.source.stream}",
            f"{flow.target.connector}/{flow.target.stream}",
            trigger,
            flow.mode.value,
        )
    console.print(flows)
    counts = f"{len(config.connectors)} connectors, {len(config.flows)} flows"
    console.print(f"[green]configuration OK[/]: {counts} (digest {config.digest[:12]})")
    _check_services(settings, config.digest)


def _check_services(settings: Settings, digest: str) -> None:
    """The running services that loaded other files than these: a changed flow file takes
    effect only when they restart (presence.py says why). Needs the database, so it is
    skipped, saying so, when DATABASE_URL is unset or does not answer."""
    import sqlalchemy as sa

    from sync_pipeline.state import instances
    from sync_pipeline.state.db import engine_for

    if settings.database_url is None:
        console.print("running services: not checked (DATABASE_URL is unset)")
        return
    try:
        with engine_for(settings.database_url, settings.connect_timeout_s).connect() as conn:
            running = instances.running(conn)
    except sa.exc.SQLAlchemyError as exc:
        console.print(f"running services: not checked ({type(exc).__name__} from PostgreSQL)")
        return
    _print_services(running, digest)


def _print_services(running: Sequence[Instance], digest: str) -> None:
    """Each running service and whether it runs these files; then whom to restart."""
    if not running:
        console.print("running services: none recorded")
        return
    table = Table(title="Running services", box=box.SIMPLE_HEAD, show_edge=False)
    for column in ("service", "started", "configuration"):
        table.add_column(column)
    for one in running:
        current = one.config_digest == digest
        table.add_row(
            one.name,
            one.started_at.strftime("%Y-%m-%d %H:%M"),
            "current" if current else f"{one.config_digest[:12]}: restart it",
        )
    console.print(table)
    stale = [one.name for one in running if one.config_digest != digest]
    if stale:
        console.print(
            f"[yellow]the configuration changed since these started; restart them to apply it[/]: "
            f"{', '.join(stale)}",
            highlight=False,
        )


@main.command(name="migrate")
@one_line_errors
def migrate_command() -> None:
    """Bring the PostgreSQL schema to the newest version (idempotent; safe to run twice at once)."""
    settings = settings_from_env()
    with services(settings) as resolved:
        result = _migrate(resolved)
    _print_migration(result)


def _migrate(resolved: Services) -> MigrationResult:
    return migrate(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)


def _print_migration(result: MigrationResult) -> None:
    if result.changed:
        console.print(
            f"schema migrated {result.before or 'empty'} -> {result.after}: "
            f"applied {', '.join(result.applied)}"
        )
    else:
        console.print(f"schema already at {result.after}: nothing to do")


@main.command()
@click.option(
    "-Q",
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option("-c", "--concurrency", type=int, default=None, help="Worker processes.")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option(
    "--task-events/--no-task-events",
    default=True,
    show_default=True,
    help="Publish each task's live events for Flower (run the events queue's worker without).",
)
@one_line_errors
def worker(queues: str, concurrency: int | None, loglevel: str, task_events: bool) -> None:
    """Run a Celery worker (start more, on more hosts, to scale out)."""
    settings = settings_from_env()
    unknown = sorted(set(queues.split(",")) - set(QUEUES))
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {', '.join(unknown)}", param_hint="--queues")
    load_config(settings.config_dir)  # every task would fail on it: refuse to start instead
    with services(settings) as resolved:
        _migrate(resolved)
        concurrency = concurrency or settings.worker_concurrency
        argv = ["worker", "-Q", queues, "-l", loglevel]
        if concurrency:
            argv += ["-c", str(concurrency)]
        if not task_events:
            argv += NO_TASK_EVENTS
        sys.exit(run_foreground(celery_argv(argv), resolved))


@main.command()
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@one_line_errors
def beat(loglevel: str) -> None:
    """Run Celery Beat, which enqueues scheduled pulls. Run exactly one."""
    settings = settings_from_env()
    load_config(settings.config_dir, environment=False)  # Beat reads the flows, no secret
    with services(settings) as resolved:
        schedule = resolved.settings.data_dir / "celerybeat-schedule"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        argv = ["beat", "-l", loglevel, "-s", str(schedule)]
        sys.exit(run_foreground(celery_argv(argv), resolved))


@main.command()
@click.option("--port", default=5555, show_default=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Listen address; inside a container use 0.0.0.0 and publish on the host's 127.0.0.1.",
)
@one_line_errors
def flower(port: int, address: str) -> None:
    """Run Flower behind basic auth (FLOWER_BASIC_AUTH=user:password)."""
    settings = settings_from_env()
    login = settings.flower_basic_auth  # validated: user:password pairs, none of them blank
    if login is None:
        fail(
            "Flower needs FLOWER_BASIC_AUTH=user:password (or FLOWER_BASIC_AUTH_FILE): "
            "it is an admin surface and never runs without auth",
            2,
        )
    # Flower reads FLOWER_BASIC_AUTH from the environment (so the secret is not in `ps`), and
    # only that variable: a login read from FLOWER_BASIC_AUTH_FILE must be handed on in it.
    os.environ.pop("FLOWER_BASIC_AUTH_FILE", None)
    os.environ["FLOWER_BASIC_AUTH"] = login
    with services(settings) as resolved:
        argv = ["flower", f"--address={address}", f"--port={port}"]
        sys.exit(run_foreground(celery_argv(argv), resolved))


@main.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for a worker.")
@one_line_errors
def health(timeout: float) -> None:
    """Send the health task through the broker and print the worker's answer."""
    settings = settings_from_env()
    with services(settings) as resolved:
        answer = _health(resolved.settings, timeout)
    _print_health(answer)


def _health(settings: Settings, timeout: float) -> dict[str, Any]:
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        return run_health_check(settings, timeout)
    except CeleryTimeout:
        fail(
            f"no worker answered the health task within {timeout:g} s; "
            "start one with: syncctl worker",
            1,
        )


def _print_health(answer: dict[str, Any]) -> None:
    table = Table(title="Health (answered by a worker through the broker)")
    table.add_column("check")
    table.add_column("result")
    for key in ("worker", "redis", "postgres", "schema", "schema_current"):
        table.add_row(key, str(answer.get(key)))
    console.print(table)


@main.command()
@click.argument("flow")
@click.option("--wait", is_flag=True, help="Follow the run to its end; exit 1 if it failed.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to follow it.")
@click.option(
    "--start-timeout",
    default=300.0,
    show_default=True,
    help="With --wait: seconds for a worker to begin the run before giving up (exit 3).",
)
@click.option(
    "--even-if-disabled",
    is_flag=True,
    help="Run a flow whose file says enabled: false (asks first on a terminal).",
)
@one_line_errors
def run(
    flow: str, wait: bool, timeout: float, start_timeout: float, even_if_disabled: bool
) -> None:
    """Trigger a pull of FLOW now (a worker runs it). A disabled flow runs only with
    --even-if-disabled. The request is recorded first, so a task the broker loses is sent
    again (while Beat runs). With --wait: exit 0 when the run succeeds, 1 when it failed or
    was turned away, 3 when waiting gave up (the run may still happen)."""
    from sync_pipeline.follow import Outcome, follow_run, trigger_run

    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)  # the worker has the secrets
    if flow not in config.flows:
        known = ", ".join(sorted(config.flows)) or "none"
        raise ConfigError(str(settings.config_dir / "flows"), [(flow, f"expected one of: {known}")])
    chosen = config.flows[flow]
    if not config.pullable(chosen):
        source = f"{chosen.source.connector}/{chosen.source.stream}"
        fail(
            f"{flow} has nothing to pull: {source} is synced only by its webhook events, "
            "as they arrive (see them with: syncctl events list --status done)",
            2,
        )
    if not chosen.enabled:
        _confirm_disabled(flow, even_if_disabled)
    with services(settings) as resolved:
        _refuse_paused(resolved.settings, flow)
        request = trigger_run(resolved.settings, flow, even_if_disabled=even_if_disabled)
        if not wait:
            console.print(
                f"queued a run of {flow} (request {request.id}, task {request.task_id}); "
                "follow it with: syncctl status"
            )
            return
        followed = follow_run(
            resolved.settings, flow, request, timeout, console, start_timeout_s=start_timeout
        )
    final = followed.run
    if followed.outcome is Outcome.NOT_STARTED:
        fail(
            f"no worker began the run of {flow} within {min(start_timeout, timeout):g} s;"
            f" gave up waiting (request {request.id} stays queued and is sent again while"
            " Beat runs): is a worker running? check with: syncctl health",
            3,
        )
    elif followed.outcome is Outcome.TURNED_AWAY:
        fail(f"the worker turned the run of {flow} away (see its log); nothing was run", 1)
    elif followed.outcome is Outcome.NOT_FINISHED and final is not None:
        fail(
            f"run {final.id} of {flow} did not finish within {timeout:g} s; gave up waiting"
            " (it goes on: follow it with syncctl status)",
            3,
        )
    elif final is not None and final.status is not RunStatus.SUCCEEDED:
        fail(f"run {final.id} of {flow} {final.status.value}: {final.error}", 1)


@main.command()
@click.argument("flow")
@click.option(
    "--since",
    default=None,
    help="Re-read what changed from this date or moment on (ISO 8601; UTC unless it says)."
    "  [default: the beginning]",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Make nothing: print what it would create, update and leave alone (waits for it).",
)
@click.option("--wait", is_flag=True, help="Show its progress to the end; exit 1 if it failed.")
@click.option("--timeout", default=86_400.0, show_default=True, help="Seconds to follow it.")
@click.option(
    "--start-timeout",
    default=300.0,
    show_default=True,
    help="Seconds for a worker to begin it before waiting gives up (exit 3).",
)
@click.option("--by", default=None, help="Who asks for it.  [default: your OS user name]")
@one_line_errors
def resync(
    flow: str,
    since: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
    start_timeout: float,
    by: str | None,
) -> None:
    """Re-read everything FLOW covers (from --since) and sync what is not in step, while its
    scheduled pulls go on; a worker runs it on the admin queue, within the flow's
    resync.quota_share of the vendors' rate limits. The id map decides create, update or
    nothing per record: a resync of a flow in step sends nothing. It checkpoints page by page
    and goes on from there after a crash. One resync of a flow at a time; follow it with
    syncctl status. Exit 0 when it succeeds, 1 when it failed, 3 when waiting gave up."""
    from sync_pipeline.resync_follow import Outcome, ask_resync, counts_line, follow_resync

    who = clean_text((by or _os_user()).strip())
    if not who:
        raise click.BadParameter("expected a name", param_hint="--by")
    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)  # the worker has the secrets
    chosen = _known_flow(settings, config.flows, flow)
    if not config.pullable(chosen):
        fail(f"{flow} has nothing to resync: it is synced only by its webhook events", 2)
    if not chosen.enabled:
        fail(f"{flow} is disabled (enabled: false in its flow file), so it is not resynced", 2)
    start = None if since is None else _moment(since)
    if since is not None and start is None:
        fail(
            f"--since: expected a date or moment in ISO 8601 (2026-03-01 or"
            f" 2026-03-01T09:30:00Z), got {since!r}",
            2,
        )
    with services(settings) as resolved:
        _refuse_paused(resolved.settings, flow)
        asked = ask_resync(resolved.settings, flow, start, who, dry_run=dry_run)
        found = asked.resync
        if asked.request is None:
            fail(
                f"resync #{found.id} of {flow} is running already (asked by"
                f" {found.requested_by}); follow it with: syncctl status",
                2,
            )
        if not (wait or dry_run):
            console.print(
                f"queued resync #{found.id} of {flow} (request {asked.request.id});"
                " follow it with: syncctl status",
                highlight=False,
                soft_wrap=True,
            )
            return
        followed = follow_resync(
            resolved.settings, asked, timeout, console, start_timeout_s=start_timeout
        )
    final = followed.resync
    if followed.outcome is Outcome.NOT_STARTED:
        fail(
            f"no worker began resync #{final.id} of {flow} within {start_timeout:g} s; gave up"
            " waiting (it stays queued and is sent again while Beat runs): is a worker"
            " running? check with: syncctl health",
            3,
        )
    if followed.outcome is Outcome.NOT_FINISHED:
        fail(
            f"resync #{final.id} of {flow} did not finish within {timeout:g} s; gave up waiting"
            " (it goes on: follow it with syncctl status)",
            3,
        )
    if final.status is not RunStatus.SUCCEEDED:
        fail(f"resync #{final.id} of {flow} {final.status.value}: {final.error}", 1)
    done = "dry run" if final.dry_run else "done"
    console.print(
        f"resync #{final.id} of {flow} {done}: {counts_line(final)}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@main.command()
@click.argument("flow")
@click.option("--repair", is_flag=True, help="Fix what it finds, each fix an effect with its key.")
@json_option
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for it.")
@click.option(
    "--start-timeout",
    default=300.0,
    show_default=True,
    help="Seconds for a worker to begin it before waiting gives up (exit 3).",
)
@click.option("--by", default=None, help="Who asks for it.  [default: your OS user name]")
@one_line_errors
def reconcile(
    flow: str, repair: bool, as_json: bool, timeout: float, start_timeout: float, by: str | None
) -> None:
    """Compare what FLOW wrote at its target with what the target holds, page by page, and
    report missing, extra and different objects; --repair fixes them through the effect
    protocol (run twice, it sends nothing the second time). A worker runs it on the admin
    queue; one of a flow at a time, and a paused flow is not repaired. Exit 0 in step (or all
    repaired), 1 drift left or it failed, 2 refused (the flow's target cannot be read back,
    another reconcile of it is running, --repair of a paused flow), 3 waiting gave up."""
    from sync_pipeline import reconcile_follow as follow
    from sync_pipeline.pipeline.reconcile import refusal

    who = clean_text((by or _os_user()).strip())
    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)  # the worker has the secrets
    why = refusal(config, _known_flow(settings, config.flows, flow))
    if why is not None:
        fail(why, 2)
    with services(settings) as resolved:
        if repair:
            _refuse_paused(resolved.settings, flow, "its target is not repaired")
        asked = follow.ask_reconcile(resolved.settings, flow, who or "?", repair=repair)
        outcome, found = follow.wait_for(resolved.settings, asked, timeout, start_timeout)
    if outcome is not follow.Outcome.FINISHED:
        fail(
            f"reconcile #{found.id} of {flow}: {outcome.value} within the timeout; gave up"
            " waiting (is a worker running? check with: syncctl health)",
            3,
        )
    if as_json:
        click.echo(json.dumps(follow.as_json(found), indent=2, ensure_ascii=False))
    else:
        follow.show(console, found)
    if found.error is not None:
        fail(f"reconcile #{found.id} of {flow} failed: {found.error}", 1)
    if found.left:
        sys.exit(1)


def _known_flow(settings: Settings, flows: Mapping[str, Flow], flow: str) -> Flow:
    if flow not in flows:
        known = ", ".join(sorted(flows)) or "none"
        raise ConfigError(str(settings.config_dir / "flows"), [(flow, f"expected one of: {known}")])
    return flows[flow]


def _moment(text: str) -> str | None:
    """A date or moment as the canonical cursor spelling (UTC when it names no zone); None
    when it is not one."""
    from datetime import UTC

    from sync_pipeline.records import iso_utc

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return iso_utc(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _refuse_paused(settings: Settings, flow: str, what: str = "it is not run") -> None:
    from sync_pipeline.state import controls
    from sync_pipeline.state.db import engine_for

    with engine_for(settings.urls()[1]).connect() as conn:
        pause = controls.paused(conn, flow)
    if pause is not None:
        fail(
            f"{flow} is paused ({_pause_words(pause)}), so {what};"
            f" resume it with: syncctl flow resume {flow}",
            2,
        )


def _pause_words(pause: Control) -> str:
    why = f": {pause.reason}" if pause.reason else ""
    return f"by {pause.by} at {pause.at:%Y-%m-%d %H:%M} UTC{why}"


def _confirm_disabled(flow: str, even_if_disabled: bool) -> None:
    """A disabled flow runs only when the operator says so: the flag, and on a terminal a
    yes to the question (a script that passes the flag has said it already)."""
    if not even_if_disabled:
        fail(
            f"{flow} is disabled (enabled: false in its flow file), so it is not run; "
            f"to run it once anyway: syncctl run {flow} --even-if-disabled",
            2,
        )
    if sys.stdin.isatty() and not click.confirm(
        f"{flow} is disabled. Run it now anyway, making its effects on the target?"
    ):
        fail(f"{flow} not run", 1)


@main.command()
@json_option
@one_line_errors
def status(as_json: bool) -> None:
    """Flows with their lag, last successful pull, last pull and event, and open dead
    letters, and why a pull or event stopped. Reads PostgreSQL only: no vendor secret."""
    from sync_pipeline.state import instances
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)
    with services(settings, need_redis=False) as resolved:
        engine = engine_for(resolved.settings.urls()[1])
        found = flow_statuses(engine, config)
        with engine.connect() as conn:
            running = instances.running(conn)
    if as_json:
        click.echo(json.dumps([f.as_json() for f in found], indent=2))
        return
    console.print(_status_table(found))
    why = [line for f in found for line in (*_resyncing(f), *_stopped(f))]
    if why:  # reasons may quote a vendor: printed as they are, never as markup
        console.print("\n".join(why), highlight=False, markup=False)
    _print_services(running, config.digest)


def _status_table(found: Sequence[FlowStatus]) -> Table:
    """One row a flow, in 80 columns for the shipped names: the flow name is never cut."""
    table = Table(title="Flows", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("flow", no_wrap=True)
    for column in ("lag", "last ok", "pull", "event", "DLQ"):
        table.add_column(column, justify="right", no_wrap=True)
    for f in found:
        pull = "paused" if f.paused else _outcome(f.last_run) if f.enabled else "off"
        table.add_row(
            f.flow,
            _age(f.lag_s) if f.pullable else "events",
            _age(f.last_ok_age_s),
            pull if f.pullable else "-",
            _outcome(f.last_event),
            str(f.dead_letters),
        )
    return table


def _stopped(f: FlowStatus) -> list[str]:
    """Why the flow's last pull or last event stopped, each with what to run next."""
    lines = []
    for what, run_, hint in (
        ("pull", f.last_run, f"then: syncctl run {f.flow} --wait"),
        ("event run", f.last_event, "then: syncctl events replay"),
    ):
        if run_ is not None and run_.status in (RunStatus.FAILED, RunStatus.STOPPED):
            error = excerpt(run_.error or "no reason recorded")
            lines.append(f"{f.flow}: {what} #{run_.id} {run_.status.value}: {error}; {hint}")
    return lines


def _resyncing(f: FlowStatus) -> list[str]:
    """The flow's pause, and its running resync and how far it has come."""
    from sync_pipeline.resync_follow import counts_line

    lines = [] if f.paused is None else [f"{f.flow}: paused {_pause_words(f.paused)}"]
    if f.resync is None:
        return lines
    share = f.resync.fraction()
    at = "" if share is None else f" ({share:.0%} through)"
    return [
        *lines,
        f"{f.flow}: resync #{f.resync.id} running{at}, asked by {f.resync.requested_by}:"
        f" {counts_line(f.resync)}",
    ]


def _outcome(run_: Run | None) -> str:
    return "-" if run_ is None else STATUS_WORDS.get(run_.status.value, run_.status.value)


STATUS_WORDS = {RunStatus.SUCCEEDED.value: "ok"}


def _age(seconds: float | None) -> str:
    """A duration in its largest whole unit: 45s, 12m, 3h, 2d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@main.group(name="connector")
def connector_group() -> None:
    """Look at a connector of connectors.yaml through its API."""


PREVIEW_DAYS = 30  # how far back `connector check` reads a time-windowed stream


@connector_group.command(name="check")
@click.argument("name")
@click.option(
    "--records", default=3, show_default=True, type=click.IntRange(1, 50), help="Shown per stream."
)
@json_option
@one_line_errors
def connector_check(name: str, records: int, as_json: bool) -> None:
    """Call the API of connector NAME once per readable stream (the last 30 days of a
    time-windowed one) and show the first records: a live preview of what a flow would read.
    Exit 1 if any stream failed; written-only streams are listed, never written to."""
    from datetime import UTC, timedelta

    import redis

    from sync_pipeline.connectors.base import ConnectorContext
    from sync_pipeline.connectors.registry import make_connector, streams_of
    from sync_pipeline.errors import SyncError
    from sync_pipeline.http import make_session
    from sync_pipeline.records import ReadWindow, iso_utc
    from sync_pipeline.state.quotas import PostgresQuotaStore
    from sync_pipeline.state.refresh_tokens import PostgresRefreshTokenStore

    settings = settings_from_env()
    config = load_config(settings.config_dir)
    if name not in config.connectors:
        known = ", ".join(sorted(config.connectors)) or "none"
        raise ConfigError(
            str(settings.config_dir / "connectors.yaml"), [(name, f"expected one of: {known}")]
        )
    chosen = config.connectors[name]
    now = datetime.now(UTC)
    window = ReadWindow(iso_utc(now - timedelta(days=PREVIEW_DAYS)), iso_utc(now))
    found: dict[str, Any] = {}
    with services(settings) as resolved:
        redis_url, database_url = resolved.settings.urls()
        timeout = resolved.settings.connect_timeout_s
        session = make_session()
        ctx = ConnectorContext(
            redis.Redis.from_url(redis_url),
            PostgresQuotaStore(database_url, timeout),
            session,
            PostgresRefreshTokenStore(database_url, timeout),
        )
        connector = make_connector(chosen, ctx)
        for stream, can in streams_of(chosen).items():
            if not can.read:
                found[stream] = {"roles": can.roles(), "records": None, "error": None}
                continue
            try:
                page = connector.read_page(stream, window, None, records)
            except SyncError as exc:
                found[stream] = {"roles": can.roles(), "records": None, "error": str(exc)}
                continue
            shown = [r.as_json() for r in page.records[:records]]
            more = page.next_token is not None
            found[stream] = {"roles": can.roles(), "records": shown, "more": more, "error": None}
        session.close()
    failed = [s for s, f in found.items() if f["error"]]
    if as_json:
        click.echo(json.dumps({"connector": name, "streams": found}, ensure_ascii=False))
    else:
        _print_connector_check(name, found)
    if failed:
        fail(f"connector {name}: {', '.join(failed)} failed", 1)


def _print_connector_check(name: str, found: Mapping[str, Any]) -> None:
    for stream, seen in found.items():
        title = f"{name}/{stream} ({seen['roles']})"
        if seen["error"]:
            console.print(f"[bold red]{escape(title)}[/]: {escape(seen['error'])}")
            continue
        if seen["records"] is None:
            console.print(f"{escape(title)}: not read (written only)")
            continue
        more = "; more pages follow" if seen.get("more") else ""
        console.print(f"[bold]{escape(title)}[/]: {len(seen['records'])} record(s){more}")
        for record in seen["records"]:
            text = json.dumps(record["payload"], ensure_ascii=False, default=str)
            line = f"  {record['source_id']} @ {record['cursor_value']}: {excerpt(text, 200)}"
            console.print(escape(clean_text(line)), highlight=False, soft_wrap=True)


@main.group(name="cursor")
def cursor_group() -> None:
    """A flow's cursor: where its next pull reads from (as Kafka Connect's offsets API)."""


@cursor_group.command(name="show")
@click.argument("flow")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@one_line_errors
def cursor_show(flow: str, as_json: bool) -> None:
    """Print FLOW's cursor and fence. Reads PostgreSQL only."""
    from sync_pipeline.state import cursors
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)
    _known_flow(settings, config.flows, flow)
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        state = cursors.get(conn, flow)
    if as_json:
        click.echo(json.dumps({"flow": flow, "cursor": state.cursor, "fence": state.fence}))
        return
    shown = state.cursor if state.cursor is not None else "none (the next pull reads everything)"
    console.print(
        f"{flow}: cursor {shown}, fence {state.fence}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@cursor_group.command(name="set")
@click.argument("flow")
@click.argument("value")
@click.option("--by", default=None, help="Who sets it.  [default: your OS user name]")
@one_line_errors
def cursor_set(flow: str, value: str, by: str | None) -> None:
    """Set FLOW's cursor to VALUE (a date or moment in ISO 8601, or the digits of a numeric
    cursor; "none": read everything): its next pull reads from there. Refused while a pull
    holds the flow; recorded in the run history (trigger cursor_set) with who and when."""
    import redis

    from sync_pipeline.state import cursors, locks, runs
    from sync_pipeline.state.db import engine_for

    who = clean_text((by or _os_user()).strip())
    if not who:
        raise click.BadParameter("expected a name", param_hint="--by")
    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)
    _known_flow(settings, config.flows, flow)
    cursor = _cursor_value(value)
    with services(settings) as resolved:
        redis_url, database_url = resolved.settings.urls()
        client = redis.Redis.from_url(redis_url)
        token = locks.acquire(client, flow, 60.0)
        if token is None:
            fail(f"{flow} is being pulled now; set its cursor once the pull ends", 2)
        try:
            with engine_for(database_url).begin() as conn:
                running = runs.running_pull(conn, flow)
                if running is not None:
                    fail(
                        f"run #{running.id} of {flow} holds the flow; set its cursor once it ends",
                        2,
                    )
                before, fence = cursors.set_by_operator(conn, flow, cursor)
                run_id = runs.record_cursor_set(conn, flow, before.cursor, cursor, who, fence)
        finally:
            locks.release(client, flow, token)
    console.print(
        f"{flow}: cursor {before.cursor or 'none'} -> {cursor or 'none'} (run #{run_id}, by {who})",
        highlight=False,
        markup=False,
    )


def _cursor_value(value: str) -> str | None:
    """A cursor as flows store it: ISO-8601 UTC moments, or digits; "none" for no cursor."""
    text = value.strip()
    if text.lower() == "none":
        return None
    if text.isdigit():
        return text
    moment = _moment(text)
    if moment is None:
        fail(f"VALUE: expected a date or moment in ISO 8601, digits, or none; got {value!r}", 2)
    return moment


@main.group(name="flow")
def flow_group() -> None:
    """Pause and resume flows."""


@flow_group.command(name="pause")
@click.argument("flow")
@click.option("--reason", default=None, help="Why (shown by syncctl status).")
@click.option("--by", default=None, help="Who pauses it.  [default: your OS user name]")
@one_line_errors
def flow_pause(flow: str, reason: str | None, by: str | None) -> None:
    """Pause FLOW: its scheduled pulls are turned away, syncctl run refuses it, its events
    wait queued and its resync stops at its checkpoint, until it is resumed."""
    _set_paused(flow, True, reason, by)


@flow_group.command(name="resume")
@click.argument("flow")
@click.option("--by", default=None, help="Who resumes it.  [default: your OS user name]")
@one_line_errors
def flow_resume(flow: str, by: str | None) -> None:
    """Resume FLOW: its pulls run again, its waiting events are handled as they are looked at
    again (within a minute), and its resync goes on from its checkpoint."""
    _set_paused(flow, False, None, by)


def _set_paused(flow: str, paused: bool, reason: str | None, by: str | None) -> None:
    from sync_pipeline.resync_follow import send_resync
    from sync_pipeline.state import controls, resyncs
    from sync_pipeline.state.db import engine_for

    who = clean_text((by or _os_user()).strip())
    if not who:
        raise click.BadParameter("expected a name", param_hint="--by")
    settings = settings_from_env()
    config = load_config(settings.config_dir, environment=False)
    _known_flow(settings, config.flows, flow)
    why = clean_text(reason.strip()) if reason else None
    with services(settings, need_redis=not paused) as resolved:
        with engine_for(resolved.settings.urls()[1]).begin() as conn:
            changed = controls.set_paused(conn, flow, paused, who, why)
            waiting = resyncs.running(conn, flow)
        if changed and not paused and waiting is not None:
            send_resync(resolved.settings, waiting)
    word = "paused" if paused else "resumed"
    if not changed:
        console.print(f"{flow} was {word} already: nothing changed", highlight=False)
        return
    console.print(f"{flow} {word} by {who}", highlight=False, markup=False, soft_wrap=True)


@main.group()
def dlq() -> None:
    """Dead letters: records that could not be synced, with their reason."""


@dlq.command(name="list")
@click.option("--flow", default=None, help="Only this flow's letters.")
@click.option(
    "--all", "everything", is_flag=True, help="Closed and discarded letters too, with who and why."
)
@json_option
@one_line_errors
def dlq_list(flow: str | None, everything: bool, as_json: bool) -> None:
    """List open dead letters (with --all, closed and discarded ones too)."""
    from sync_pipeline.state import deadletters
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        letters = deadletters.letters(conn, flow, everything=everything)
    if as_json:
        click.echo(json.dumps([d.as_json() for d in letters], indent=2, ensure_ascii=False))
        return
    title = "Dead letters" if everything else "Open dead letters"
    table = Table(title=f"{title} ({len(letters)})")
    for column in (
        "id",
        "flow",
        "source id",
        "reason",
        "since",
        *(("state",) if everything else ()),
    ):
        table.add_column(column)
    for d in letters:
        state = d.state
        if d.state == "discarded":
            state = escape(f"discarded by {d.discarded_by}: {d.discard_reason}")
        table.add_row(
            str(d.id),
            d.flow,
            d.source_id,
            d.reason,
            d.created_at.strftime("%Y-%m-%d %H:%M"),
            *((state,) if everything else ()),
        )
    console.print(table)


@dlq.command(name="discard")
@click.argument("letter_ids", nargs=-1, type=int, required=True)
@click.option("--reason", required=True, help="Why they are dropped (kept with them).")
@click.option("--by", default=None, help="Who drops them.  [default: your OS user name]")
@one_line_errors
def dlq_discard(letter_ids: tuple[int, ...], reason: str, by: str | None) -> None:
    """Drop open dead letters for good: each is kept, marked discarded with who and why, and
    no longer counted, listed (but with --all) or replayed. Exits 1 if an id was not open."""
    from sync_pipeline.state import deadletters
    from sync_pipeline.state.db import engine_for

    why, who = clean_text(reason.strip()), clean_text((by or _os_user()).strip())
    if not why:
        raise click.BadParameter("expected a reason, saying why", param_hint="--reason")
    if not who:
        raise click.BadParameter("expected a name", param_hint="--by")
    settings = settings_from_env()
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).begin() as conn,
    ):
        done = deadletters.discard(conn, sorted(set(letter_ids)), who, why)
    left = sorted(set(letter_ids) - set(done))
    if done:
        ids = ", ".join(map(str, done))
        console.print(f"discarded {len(done)} dead letter(s) as {escape(who)}: {ids}")
    if left:
        fail(f"not open, left alone: {', '.join(map(str, left))} (see: syncctl dlq list --all)", 1)


def _os_user() -> str:
    """The operator's login name, or their uid where the system has no name for it (a
    container's arbitrary uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dlq.command(name="replay")
@click.argument("letter_ids", nargs=-1, type=int)
@click.option("--flow", default=None, help="Only this flow's letters.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for a worker.")
@json_option
@one_line_errors
def dlq_replay(
    letter_ids: tuple[int, ...], flow: str | None, timeout: float, as_json: bool
) -> None:
    """Send open dead letters (these ids, a flow's, or all) through their flow again, once
    their cause is fixed. A worker does it; letters that fail again stay open (exit 1)."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from sync_pipeline.dispatch import REPLAY_TASK, ask
    from sync_pipeline.state.requests import RequestKind, Task

    settings = settings_from_env()
    task = Task(REPLAY_TASK, "admin", (flow, list(letter_ids) or None))
    with services(settings) as resolved:
        try:
            found = ask(resolved.settings, RequestKind.REPLAY, flow, task, timeout)
        except CeleryTimeout:
            fail(f"no worker answered within {timeout:g} s; start one with: syncctl worker", 1)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        table = Table(title="Dead letters replayed")
        for column in ("flow", "letters", "closed", "still failing", "skipped", "notes"):
            table.add_column(column)
        for r in found:
            table.add_row(
                r["flow"],
                *(str(r[k]) for k in ("letters", "closed", "failing", "skipped")),
                "; ".join(r["notes"]),
            )
        console.print(table if found else "no open dead letters to replay")
    if any(r["failing"] or r["skipped"] for r in found):
        sys.exit(1)


@main.group()
def events() -> None:
    """Inbound events: what was received, replaying those that failed, and keeping a
    connection for them where there is no public URL."""


@events.command(name="list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in EventStatus]),
    default=EventStatus.FAILED.value,
    show_default=True,
)
@newest_option
@json_option
@one_line_errors
def events_list(status: str, limit: int, as_json: bool) -> None:
    """The newest recorded events with a status (newest last), with why they failed or were
    ignored."""
    from sync_pipeline.state import inbound
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        ids = inbound.ids_with_status(conn, inbound.EventStatus(status), limit)
        rows = [stored for row_id in ids if (stored := inbound.get(conn, row_id)) is not None]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        **r.event.as_json(),
                        "status": r.status.value,
                        "attempts": r.attempts,
                        "error": r.error,
                        "received_at": r.received_at.isoformat(),
                    }
                    for r in rows
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    table = Table(title=f"Inbound events: {status} ({len(rows)})")
    for column in ("id", "connector", "kind", "event id", "attempts", "received", "why"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.id),
            r.event.connector,
            r.event.kind.value,
            r.event.event_id,
            str(r.attempts),
            r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.error or "",
        )
    console.print(table)


@events.command(name="connect")
@click.argument("connector")
@one_line_errors
def events_connect(connector: str) -> None:
    """Keep CONNECTOR's connection for events without a public URL (its `events:` section:
    DingTalk's Stream mode, Feishu's long connection) until stopped: each event recorded
    once, then acknowledged."""
    from sync_pipeline.config.loader import load_config
    from sync_pipeline.logging import configure_logging
    from sync_pipeline.state.migrate import migrate
    from sync_pipeline.webhooks.longconn.run import connect

    settings = settings_from_env()
    configure_logging(settings.log_level, settings.log_format)
    config = load_config(settings.config_dir)
    found = config.connectors.get(connector)
    if found is None:
        fail(f"no connector {connector!r} in {settings.config_dir}", 2)
    if found.events is None:
        fail(
            f"{connector} has no events: section (DingTalk: events: {{mode: stream}}; Feishu:"
            " events: {mode: long_connection})",
            2,
        )
    with services(settings) as resolved:
        migrate(resolved.settings.urls()[1], resolved.settings.connect_timeout_s)
        connect(resolved.settings, found, config.digest)


@events.command(name="alive")
@click.argument("connector")
@one_line_errors
def events_alive(connector: str) -> None:
    """Exit 0 when CONNECTOR's events connection is up and was heard from within twice its
    silence limit, 1 otherwise (the compose service's healthcheck); one line either way."""
    from sync_pipeline.config.loader import load_config
    from sync_pipeline.state import connections
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    found = load_config(settings.config_dir, environment=False).connectors.get(connector)
    if found is None or found.events is None:
        fail(f"{connector} has no events: section in {settings.config_dir}", 2)
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        live = connections.get(conn, connector)
        now = conn.execute(sa.select(sa.func.now())).scalar_one()
    if live is None:
        click.echo(f"{connector}: never connected")
        sys.exit(1)
    if not live.alive:
        click.echo(f"{connector}: down since {live.since:%Y-%m-%d %H:%M:%S}: {live.detail}")
        sys.exit(1)
    quiet_s = (now - live.seen_at).total_seconds()
    if quiet_s > 2 * found.events.silence_s:
        click.echo(f"{connector}: nothing heard for {quiet_s:.0f} s")
        sys.exit(1)
    click.echo(f"{connector}: up since {live.since:%Y-%m-%d %H:%M:%S}, {live.outages} outages")


@events.command(name="replay")
@click.argument("event_ids", nargs=-1, type=int)
@one_line_errors
def events_replay(event_ids: tuple[int, ...]) -> None:
    """Queue failed events (these ids, or every failed one) again; a worker handles them.
    Their effects keep their keys, so nothing done before is done twice."""
    from sync_pipeline.dispatch import send_events
    from sync_pipeline.state import inbound
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    with services(settings) as resolved:
        with engine_for(resolved.settings.urls()[1]).begin() as conn:
            requeued = inbound.requeue_failed(conn, list(event_ids) or None)
        send_events(resolved.settings, requeued)
    skipped = sorted(set(event_ids) - set(requeued))
    console.print(
        f"queued {len(requeued)} failed event(s) again"
        + (f"; not failed, left alone: {', '.join(map(str, skipped))}" if skipped else "")
    )


@main.group(name="effects")
def effects_group() -> None:
    """Remote effects: those parked because their outcome is unknown, and settling them."""


EFFECT_STATUSES = ("unknown", "pending", "failed", "done")


@effects_group.command(name="list")
@click.option(
    "--status",
    type=click.Choice(EFFECT_STATUSES),
    default="unknown",
    show_default=True,
    help="unknown: parked for an operator to check at the vendor.",
)
@newest_option
@json_option
@one_line_errors
def effects_list(status: str, limit: int, as_json: bool) -> None:
    """Effects with a status (by default those parked as unknown), with the flow, the record,
    the target, their age and what to do next."""
    from sync_pipeline.state import effects
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        found = effects.listed(conn, effects.EffectStatus(status), limit)
        now = _db_now(conn)
    rows = [_effect_view(e, now) for e in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Effects: {status} ({len(rows)})")
    for column in ("id", "flow", "record", "target", "kind", "age", "error", "next"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["flow"],
            escape(r["record"]),
            escape(r["target"]),
            r["kind"],
            _age(r["age_s"]),
            escape(r["error"] or ""),
            escape(r["next"]),
        )
    console.print(table)


def _db_now(conn: Connection) -> datetime:
    """PostgreSQL's clock, which stamped the effects."""
    now: datetime = conn.execute(sa.select(sa.func.now())).scalar_one()
    return now


def _effect_view(effect: Effect, now: datetime) -> dict[str, Any]:
    """One effect as `effects list --json` shows it (one object per effect)."""
    target = effect.target_system + (f" {effect.recipient}" if effect.recipient else "")
    return {
        "id": effect.id,
        "key": effect.key,
        "flow": effect.flow,
        "record": effect.source_id or "",
        "target": target,
        "kind": effect.kind or "",
        "status": effect.status.value,
        "age_s": round(max(0.0, (now - effect.created_at).total_seconds()), 3),
        "error": effect.last_error,
        "next": _next_step(effect, target),
    }


def _next_step(effect: Effect, target: str) -> str:
    """What the operator does about an effect in this status."""
    status = effect.status.value
    record = effect.source_id or "?"
    if status == "unknown":
        return (
            f"check {target} for the {effect.kind or 'effect'} of {record}; then"
            f" `syncctl effects settle {effect.id} --done` if it is there,"
            f" else `syncctl effects settle {effect.id} --retry`"
        )
    if status == "pending":
        return "on its way, or its answer was lost: the next attempt settles it by itself"
    if status == "failed":
        return f"see `syncctl dlq list --flow {effect.flow}`; fix the cause, then replay"
    return "nothing: it was made"


@effects_group.command(name="settle")
@click.argument("effect_id", type=int)
@click.option("--done", "verdict", flag_value="done", help="It is there: record it made.")
@click.option(
    "--retry", "verdict", flag_value="retry", help="It is not there: make it again, once."
)
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for a worker.")
@one_line_errors
def effects_settle(effect_id: int, verdict: str | None, timeout: float) -> None:
    """Close a parked (unknown) effect after checking the vendor: --done records it made;
    --retry makes it sendable again and replays its dead letter, so it is made once."""
    from sync_pipeline.state import deadletters, effects
    from sync_pipeline.state.db import engine_for

    if verdict is None:
        raise click.UsageError("say what you found at the vendor: --done or --retry")
    settings = settings_from_env()
    with services(settings, need_redis=verdict == "retry") as resolved:
        with engine_for(resolved.settings.urls()[1]).begin() as conn:
            effect = effects.by_id(conn, effect_id)
            if effect is None:
                fail(f"no effect {effect_id} (see: syncctl effects list)", 2)
            if effect.status is not effects.EffectStatus.UNKNOWN:
                fail(
                    f"effect {effect_id} is {effect.status.value}, not parked: nothing to settle", 2
                )
            who = clean_text(_os_user())
            status = effects.EffectStatus.DONE if verdict == "done" else effects.EffectStatus.FAILED
            effects.settle(conn, effect_id, status, f"settled {verdict} by {who}")
            letters = [
                d.id
                for d in deadletters.open_letters(conn, effect.flow)
                if d.record.get("effect_key") == effect.key
            ]
            if verdict == "done":
                deadletters.close(conn, letters)
        if verdict == "done":
            console.print(f"effect {effect_id} recorded done; {len(letters)} dead letter(s) closed")
            return
        if not letters:
            by = (
                "the approver's next press"
                if effect.kind == "oa_action"
                else "the next run or event"
            )
            console.print(
                f"effect {effect_id} may be made again: {by} of"
                f" {escape(effect.source_id or '?')} makes it once"
            )
            return
        _replay_letters(resolved.settings, effect.flow, letters, timeout)
        console.print(f"effect {effect_id} made again through its dead letter(s) {letters}")


def _replay_letters(settings: Settings, flow: str, letters: list[int], timeout: float) -> None:
    """The letters replayed by a worker through their flow; exit 1 if one still fails."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from sync_pipeline.dispatch import REPLAY_TASK, call

    try:
        found = call(settings, REPLAY_TASK, [flow, letters], timeout)
    except CeleryTimeout:
        fail(f"no worker answered within {timeout:g} s; start one with: syncctl worker", 1)
    if any(r["failing"] or r["skipped"] for r in found):
        notes = "; ".join(n for r in found for n in r["notes"])
        fail(f"the replay failed again: see `syncctl dlq list --flow {flow}` {notes}".strip(), 1)


@main.group()
def bench() -> None:
    """Benchmarks: figures and a ratio against a baseline measured in the same run."""


@bench.command(name="sandbox")
@click.option("--approvals", default=100_000, show_default=True, help="Approvals to seed.")
@click.option("--runs", default=3, show_default=True, help="Repeat and report the median.")
@click.option("--json", "json_path", default="bench-sandbox.json", show_default=True)
@one_line_errors
def bench_sandbox_command(approvals: int, runs: int, json_path: str) -> None:
    """Seed the sandbox, then list every OA approval through a server pinned to one CPU."""
    from statistics import median

    from sync_pipeline.devtools.sandbox.bench import bench_sandbox

    results = []
    for i in range(1, runs + 1):
        console.print(f"run {i}/{runs}: seeding {approvals:,} approvals and listing them")
        results.append(bench_sandbox(approvals))
    keys = ("seed_s", "listed_per_s", "baseline_listed_per_s", "ratio_to_baseline")
    medians = {k: median(float(r[k]) for r in results) for k in keys}
    table = Table(title=f"bench sandbox: {approvals:,} approvals, median of {runs}")
    table.add_column("figure")
    table.add_column("median", justify="right")
    table.add_column("runs", justify="right")
    labels = {
        "seed_s": "seed all platforms (s)",
        "listed_per_s": "OA list over HTTP, 1 CPU (records/s)",
        "baseline_listed_per_s": "baseline: same pages from the store (records/s)",
        "ratio_to_baseline": "ratio HTTP / baseline",
    }
    for key in keys:
        table.add_row(labels[key], f"{medians[key]:,.2f}", ", ".join(str(r[key]) for r in results))
    console.print(table)
    Path(json_path).write_text(json.dumps({"runs": results, "median": medians}, indent=2))
    console.print(f"wrote {json_path}")


def runs_and_json(bench_name: str) -> Callable[[F], F]:
    """--runs and --json of a bench over the whole stack; its figures go by default to
    SYNC_DATA_DIR/bench/<bench_name>.json (see report_path)."""
    runs = click.option(
        "--runs", default=3, show_default=True, type=click.IntRange(min=1), help="Report medians."
    )
    json_path = click.option(
        "--json",
        "json_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Where to write the figures.  [default: SYNC_DATA_DIR/bench/{bench_name}.json]",
    )

    def decorate(command: F) -> F:
        return runs(json_path(command))

    return decorate


def report_path(json_path: Path | None, resolved: Services, bench_name: str) -> Path:
    return json_path or resolved.settings.data_dir / "bench" / f"{bench_name}.json"


@bench.command(name="spine")
@click.option(
    "--approvals",
    default=10_000,
    show_default=True,
    type=click.IntRange(10, 1_000_000),
    help="Approvals to seed.",
)
@runs_and_json("spine")
@one_line_errors
def bench_spine_command(approvals: int, runs: int, json_path: Path | None) -> None:
    """First sync of the approvals and a no-change sync through a real worker, beside a raw
    loop (no Celery, no PostgreSQL) measured in the same run."""
    from sync_pipeline.devtools.bench.spine import bench_spine

    settings = settings_from_env()
    with services(settings) as resolved:
        target = report_path(json_path, resolved, "spine")
        bench_spine(resolved, approvals, runs, target, console)


@bench.command(name="events")
@click.option(
    "--rates",
    default="50,200",
    show_default=True,
    help="Events per second to send, comma-separated.",
)
@click.option(
    "--duration",
    default=10.0,
    show_default=True,
    type=click.FloatRange(1, 600),
    help="Seconds per rate.",
)
@runs_and_json("events")
@one_line_errors
def bench_events_command(rates: str, duration: float, runs: int, json_path: Path | None) -> None:
    """Webhook-to-IM-delivery latency (p50, p99) at steady rates of OA change webhooks,
    through the webhook service and a real worker, beside a direct receiver measured in the
    same run."""
    from sync_pipeline.devtools.bench.events import bench_events

    try:
        chosen = sorted({int(r) for r in rates.split(",") if r.strip()})
    except ValueError:
        raise click.BadParameter(
            "expected whole numbers like 50,200", param_hint="--rates"
        ) from None
    if not chosen or min(chosen) < 1:
        raise click.BadParameter("expected rates of at least 1 event/s", param_hint="--rates")
    settings = settings_from_env()
    with services(settings) as resolved:
        target = report_path(json_path, resolved, "events")
        bench_events(resolved, chosen, duration, runs, target, console)


@bench.command(name="redact")
@click.option(
    "--size",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(100, 100_000_000),
    help="Characters per hostile input.",
)
@runs_and_json("redact")
@one_line_errors
def bench_redact_command(size: int, runs: int, json_path: Path | None) -> None:
    """Log redaction on hostile inputs (long URL-like, key=value-like and whitespace-free
    text), beside one plain pass over the same text measured in the same run."""
    from sync_pipeline.devtools.bench.redact import bench_redact

    settings = settings_from_env()  # no servers: only SYNC_DATA_DIR, for the JSON's place
    target = json_path or settings.data_dir / "bench" / "redact.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    bench_redact(size, runs, target, console)


@main.command()
@click.option(
    "--approvals",
    default=200,
    show_default=True,
    type=click.IntRange(10, 100_000),
    help="OA approvals the sandbox is seeded with.",
)
@one_line_errors
def demo(approvals: int) -> None:
    """The main job end to end: the stack, the sandbox, a real worker and Beat syncing every
    shipped flow, and a summary that sets run counts beside the IM ledgers."""
    from sync_pipeline.devtools.demo import run_demo

    run_demo(console, approvals)


@main.group()
def alerts() -> None:
    """Alerts (config/alerts.yaml): what is firing, what resolved."""


@alerts.command(name="list")
@click.option("--all", "everything", is_flag=True, help="Pending and ok alerts too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@one_line_errors
def alerts_list(everything: bool, as_json: bool) -> None:
    """List firing and resolved alerts: rule, subject, since when, what, notices sent."""
    from sync_pipeline.state import alerts as alert_rows
    from sync_pipeline.state.db import engine_for

    settings = settings_from_env()
    with (
        services(settings, need_redis=False) as resolved,
        engine_for(resolved.settings.urls()[1]).connect() as conn,
    ):
        found = alert_rows.listed(conn, everything=everything)
    if as_json:
        click.echo(json.dumps([_alert_json(a) for a in found], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"Alerts ({len(found)})")
    for column in ("rule", "subject", "state", "since", "what", "told"):
        table.add_column(column)
    for a in found:
        told = [
            s
            for s, sent in (("firing", a.notified_firing), ("resolved", a.notified_resolved))
            if sent
        ]
        table.add_row(
            escape(a.rule),
            escape(a.subject),
            a.state.value,
            a.since.strftime("%Y-%m-%d %H:%M:%S"),
            escape(a.detail),
            ", ".join(told) or "-",
        )
    console.print(table)


def _alert_json(alert: Any) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "subject": alert.subject,
        "state": alert.state.value,
        "since": alert.since.isoformat(),
        "epoch": alert.epoch,
        "detail": alert.detail,
        "notified_firing": alert.notified_firing,
        "notified_resolved": alert.notified_resolved,
    }


def _register_subcommands() -> None:
    from sync_pipeline.admin.cli import admin
    from sync_pipeline.webhooks.cli import webhooks

    main.add_command(webhooks)
    main.add_command(admin)
    try:
        from sync_pipeline.devtools.sandbox.cli import sandbox
    except ImportError:  # the sandbox CLI lands with its own issue
        return
    main.add_command(sandbox)


_register_subcommands()


if __name__ == "__main__":
    main()
