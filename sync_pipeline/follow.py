"""`syncctl run FLOW --wait`: enqueue a pull and follow its run row to the end."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from sync_pipeline.dispatch import client
from sync_pipeline.settings import Settings
from sync_pipeline.state import locks, runs
from sync_pipeline.state.db import engine_for

POLL_S = 0.5


def trigger_run(settings: Settings, flow: str, *, even_if_disabled: bool = False) -> str:
    """Send `pull.start` for a manual run; returns the task id, which becomes the run's lock
    token so the run can be found. A disabled flow's pull is turned away by the worker
    unless `even_if_disabled` (the operator's explicit word)."""
    app = client(settings)
    try:
        args = [flow, "manual", even_if_disabled]
        return str(app.send_task("pull.start", args=args, queue="pull").id)
    finally:
        app.close()


def follow_run(
    settings: Settings, flow: str, task_id: str, timeout_s: float, console: Console
) -> runs.Run | None:
    """Poll the run this task opened (or the run already holding the flow) until it ends."""
    import redis

    redis_url, database_url = settings.urls()
    engine = engine_for(database_url)
    client_redis = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    run_id: int | None = None
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        bar = progress.add_task(f"{flow}: waiting for a worker", total=None)
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if run_id is None:
                    run_id = runs.by_lock_token(conn, flow, task_id)
                    holder = locks.holder(client_redis, flow)
                    if run_id is None and holder and holder != task_id:
                        run_id = runs.by_lock_token(conn, flow, holder)
                run = runs.get(conn, run_id) if run_id is not None else None
            if run is not None:
                c = run.counts
                progress.update(
                    bar,
                    description=(
                        f"{flow} run #{run.id}: {c['pages']} pages, {c['pulled']} pulled, "
                        f"{c['written']} written, {c['skipped']} skipped, "
                        f"{c['dead_lettered']} dead-lettered"
                    ),
                )
                if run.done:
                    return run
            time.sleep(POLL_S)
    return None
