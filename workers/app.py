"""The Celery app: `celery -A workers.app worker` and `syncctl worker` both load this module.

Configuration comes from the validated environment (see sync_pipeline.settings). When REDIS_URL
or DATABASE_URL is unset, this process starts (or attaches to) the embedded engines, as every
other syncctl command does.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack

from celery import Celery

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
configure_logging(settings.log_level)
app = Celery("sync_pipeline", include=["workers.tasks"])
app.conf.update(celery_config(settings))
app.conf.beat_scheduler = "workers.beat:FlowScheduler"
