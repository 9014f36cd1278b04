"""The Celery app: `celery -A workers.app worker` and `syncctl worker` both load this module.

Configuration comes from the validated environment (see sync_pipeline.settings). When REDIS_URL
or DATABASE_URL is unset, this process starts (or attaches to) the embedded engines, as every
other syncctl command does.
"""

from __future__ import annotations

import atexit
import os
from contextlib import ExitStack
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from sync_pipeline import metrics
from sync_pipeline.devtools.embedded import die_with_parent
from sync_pipeline.dispatch import celery_config
from sync_pipeline.logging import configure_logging
from sync_pipeline.services import export_env, services
from sync_pipeline.settings import Settings, load_settings


def _resolve_settings() -> Settings:
    settings = load_settings()
    if not settings.embedded:
        return settings
    stack = ExitStack()
    resolved = stack.enter_context(services(settings))
    atexit.register(stack.close)
    export_env(resolved)
    return resolved.settings


settings = _resolve_settings()
configure_logging(settings.log_level, settings.log_format)
app = Celery("sync_pipeline", include=["workers.tasks"])
app.conf.update(celery_config(settings))
app.conf.beat_scheduler = "workers.beat:FlowScheduler"

WORKER_PID = os.getpid()  # the worker's main process, which forks the pool's processes


@worker_process_init.connect
def _die_with_the_worker(**_: Any) -> None:
    """A pool process dies with the worker that forked it, even a SIGKILLed one: the worker
    alone enforces the task time limit and acknowledges, so an orphan would run unbounded and
    its task would be delivered again anyway (acks_late, reject_on_worker_lost)."""
    die_with_parent(WORKER_PID)


@worker_init.connect
def _count_in_files(**_: Any) -> None:
    """Before the pool forks: the worker's processes write their counters (vendor calls and
    errors, rate-limit waits) under SYNC_DATA_DIR/metrics, where the webhook service's
    /metrics reads them (sync_pipeline/metrics.py)."""
    metrics.use_directory(metrics.process_directory(settings.data_dir, "worker"))


@worker_process_shutdown.connect
def _process_gone(pid: int | None = None, **_: Any) -> None:
    metrics.process_exited(pid or os.getpid())
