"""`make demo`: the main job end to end on this machine, ending with a one-screen summary.

Today it starts the stack (embedded engines unless URLs are set), applies migrations, starts a
real Celery worker process and runs the health task through it. It stops everything it started
on exit, on error and on Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from sync_pipeline.dispatch import QUEUES, run_health_check
from sync_pipeline.logging import configure_logging
from sync_pipeline.processes import celery_argv, child_process
from sync_pipeline.services import export_env, services
from sync_pipeline.settings import load_settings
from sync_pipeline.state.migrate import migrate

HEALTH_TIMEOUT_S = 120.0


def _terminate_as_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(console: Console) -> None:
    settings = load_settings()
    configure_logging("WARNING")
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    began = time.monotonic()
    steps: list[tuple[str, str]] = []
    try:
        with services(settings) as resolved:
            export_env(resolved)
            steps.append(("servers", "; ".join(resolved.started) or "configured servers reached"))
            console.print("[bold]1/3[/] servers ready")
            result = migrate(resolved.settings.urls()[1])
            steps.append(
                (
                    "migrations",
                    f"applied {', '.join(result.applied)}"
                    if result.changed
                    else f"already at {result.after}",
                )
            )
            console.print("[bold]2/3[/] schema at", result.after)
            logs = resolved.settings.data_dir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            argv = celery_argv(["worker", "-Q", ",".join(QUEUES), "-c", "2", "-l", "INFO"])
            with child_process(argv, resolved, log=logs / "worker.log") as worker:
                answer = run_health_check(resolved.settings, HEALTH_TIMEOUT_S)
                steps.append(("worker", f"pid {worker.pid}, log {logs / 'worker.log'}"))
                console.print("[bold]3/3[/] health task answered by", answer["worker"])
            _summary(console, resolved.settings.describe(), steps, answer, time.monotonic() - began)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything the demo started has been stopped[/]")
        sys.exit(130)


def _summary(
    console: Console,
    settings: dict[str, str],
    steps: list[tuple[str, str]],
    answer: dict[str, Any],
    elapsed_s: float,
) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, text in steps:
        table.add_row(name, text)
    table.add_row("redis", f"{settings['REDIS_URL']} (redis {answer['redis']})")
    table.add_row("postgres", f"{settings['DATABASE_URL']} (PostgreSQL {answer['postgres']})")
    table.add_row("queues", ", ".join(QUEUES))
    table.add_row("health", f"ok from {answer['worker']}, schema {answer['schema']}")
    table.add_row("elapsed", f"{elapsed_s:.1f} s")
    console.print(Panel(table, title="sync_pipeline demo: summary", expand=False))
    console.print("Everything started by the demo is stopped. Next: make test")
