"""Celery configuration and sending tasks by name: the library's only door to Celery.

The library never imports `workers/` (the task code); it sends by task name, so a CLI command,
the webhook service and a test can all enqueue work without loading the worker's modules.

The settings below are the at-least-once delivery contract (DESIGN.md section 4): a task is
acknowledged only after it ran (`task_acks_late`), a task whose worker child was SIGKILLed is
requeued (`task_reject_on_worker_lost`), a worker holds one unacknowledged message per process
(`worker_prefetch_multiplier=1`), and the broker's visibility timeout is above the longest task
so a task still running is not handed to a second worker. Effects are idempotent, so a
redelivered task does no harm. Recovery does not wait for that timeout: work carries leases in
PostgreSQL, and the sweeper sends again what a dead worker or a lost message left unfinished
(pipeline/sweeper.py); manual runs and replays are recorded before their task is sent
(`send_request`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from sync_pipeline.settings import Settings
from sync_pipeline.state import requests
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.requests import RequestKind, WorkRequest

CeleryApp = Celery  # for modules that hold an app from `client` but may not import celery

# The "events" queue carries one small task per webhook delivery, handled in micro-batches
# (sync_pipeline/pipeline/events): it runs in a worker of its own (`syncctl worker --queues events
# --no-task-events`), so a long pull never holds it up, and that worker publishes no live
# task events for Flower (three Redis publishes per task; inbound_events and `syncctl
# webhooks stats` account for every event). These trailing arguments of `celery worker` say so.
NO_TASK_EVENTS = ("--", "worker.send_task_events=False")

QUEUES = ("pull", "write", "events", "admin")
HEALTH_TASK = "admin.health"
EVENT_TASK = "events.handle"  # args: [inbound_events row id] or [row id, [more row ids]]
REPLAY_TASK = "admin.replay_dead_letters"  # args: [flow or None, [letter ids] or None]

# Task names are "<queue>.<action>", so routing follows the name.
TASK_ROUTES = {f"{queue}.*": {"queue": queue} for queue in QUEUES}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings from our validated Settings (broker and result URLs must be resolved)."""
    if settings.broker_url is None or settings.redis_url is None:
        raise ValueError("resolve the service URLs before configuring Celery")
    exchange = Exchange("sync_pipeline", type="direct")
    return {
        "broker_url": settings.broker_url,
        # Results only where a caller waits on them (the health task); tasks opt in.
        "result_backend": settings.redis_url,
        "task_ignore_result": True,
        "result_expires": 3600,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # With acks_late, a task whose broker connection dropped is redelivered; cancel our copy
        # so it does not run twice at once.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "task_time_limit": settings.task_time_limit_s,
        # The soft limit leaves the task time to record where it stopped.
        "task_soft_time_limit": _soft_limit(settings.task_time_limit_s),
        "broker_connection_retry_on_startup": True,
        "task_queues": [Queue(q, exchange, routing_key=q) for q in QUEUES],
        "task_default_queue": "admin",
        "task_default_exchange": exchange.name,
        "task_default_routing_key": "admin",
        "task_create_missing_queues": False,
        "task_routes": TASK_ROUTES,
        "worker_send_task_events": True,  # Flower shows tasks live
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def _soft_limit(hard_s: int) -> int:
    """30 s before the hard limit, or a tenth of it for short limits: time to record state."""
    return max(1, hard_s - 30, int(hard_s * 0.9))


def client(settings: Settings) -> Celery:
    """A Celery app that only sends (by name) and reads results."""
    app = Celery("sync_pipeline", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def call(settings: Settings, task: str, args: Sequence[Any] = (), timeout_s: float = 60.0) -> Any:
    """Send an admin task by name and wait for a worker's answer (the worker holds the
    connectors' secrets; the command line need not)."""
    app = client(settings)
    try:
        result = app.send_task(task, args=list(args), queue="admin", ignore_result=False)
        answer = result.get(timeout=timeout_s, propagate=True)
        result.forget()
        return answer
    finally:
        app.close()


def send_request(
    settings: Settings, kind: RequestKind, flow: str | None, task: requests.Task
) -> WorkRequest:
    """Record the request in PostgreSQL, then send its task under the request's task id.

    The broker may lose the message (a worker killed between popping it and recording it as
    unacknowledged); the recorded request is what the sweeper sends again (state/requests.py).
    """
    engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
    try:
        with engine.begin() as conn:
            request = requests.record(conn, kind, flow, task)
        app = client(settings)
        try:
            app.send_task(
                task.name, args=list(task.args), task_id=request.task_id, queue=task.queue
            )
        finally:
            app.close()
        with engine.begin() as conn:
            requests.mark_sent(conn, request.id)
    finally:
        engine.dispose()
    return request


def ask(
    settings: Settings,
    kind: RequestKind,
    flow: str | None,
    task: requests.Task,
    timeout_s: float = 60.0,
) -> Any:
    """Send a recorded request (`send_request`) and wait for a worker's answer, which a copy
    the sweeper sent again gives under the same task id."""
    request = send_request(settings, kind, flow, task)
    app = client(settings)
    try:
        result = app.AsyncResult(request.task_id)
        answer = result.get(timeout=timeout_s, propagate=True)
        result.forget()
        return answer
    finally:
        app.close()


def run_health_check(settings: Settings, timeout_s: float = 60.0) -> dict[str, Any]:
    """Send the health task through the broker and wait for a worker's answer."""
    answer: dict[str, Any] = call(settings, HEALTH_TASK, timeout_s=timeout_s)
    return answer


def send_events(settings: Settings, event_row_ids: Sequence[int]) -> None:
    """Send `events.handle` for recorded events (a replay; the webhook service sends its own)."""
    app = client(settings)
    try:
        for row_id in event_row_ids:
            app.send_task(EVENT_TASK, args=[row_id], queue="events")
    finally:
        app.close()
