"""Celery configuration and sending tasks by name: the library's only door to Celery.

The library never imports `workers/` (the task code); it sends by task name, so a CLI command,
the webhook service and a test can all enqueue work without loading the worker's modules. The
webhook service's producer (`EventSender`) lives here too: the service never imports Celery
(lint-imports checks it).

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

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Connection, Exchange, Queue

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.settings import Settings, mask_url
from sync_pipeline.state import requests
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.requests import RequestKind, WorkRequest

log = logging.getLogger(__name__)

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
RESYNC_TASK = "admin.resync"  # args: [resync id, flow] (pipeline/resync.py)
# args: [reconcile id, flow], or [None, flow] from Beat (pipeline/reconcile.py)
RECONCILE_TASK = "admin.reconcile"

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


def client(settings: Settings, *, results: bool = True) -> Celery:
    """A Celery app that sends (by name) and, unless `results` is False, reads results.

    Without results it has no result backend: a send subscribes to no answer. With Redis as
    the backend, every send would otherwise subscribe to its task's result channel (and
    unsubscribe once the result object is collected): two Redis round trips per task for an
    answer nobody reads here. Who waits for an answer reads it through a client with results.
    """
    config = celery_config(settings)
    if not results:
        config["result_backend"] = None  # Celery's "disabled" backend
    app = Celery("sync_pipeline", set_as_current=False)
    app.conf.update(config)
    return app


SENDERS_KEPT = 4  # a process sends to one broker; tests use a few
_senders: OrderedDict[tuple[int, str], Celery] = OrderedDict()
_senders_lock = threading.Lock()


def sender(settings: Settings) -> Celery:
    """One sending client (no results) per broker configuration per process, kept from one
    send to the next as state/db.engine_for keeps engines: its producer pool keeps the broker
    connection, so a process that sends many requests (the admin API) connects once, and a
    send is one publish. kombu's producer pool is safe to share between threads. Keyed by
    process id: a forked child must not publish on its parent's socket."""
    key = (os.getpid(), repr(sorted(celery_config(settings).items())))
    with _senders_lock:
        app = _senders.get(key)
        if app is not None:
            _senders.move_to_end(key)
            return app
        app = _senders[key] = client(settings, results=False)
        while len(_senders) > SENDERS_KEPT:
            (pid, _), old = _senders.popitem(last=False)
            if pid == os.getpid():  # a parent's app closes nothing of the parent's
                old.close()
        return app


BROKER_HINT = "Check BROKER_URL, or unset it to use REDIS_URL as the broker."


def check_amqp_broker(url: str, timeout_s: float = 3.0) -> None:
    """A broker other than Redis (RabbitMQ), checked through kombu, which speaks its protocol:
    ServiceUnavailable with one clear reason when it cannot be reached."""
    with Connection(url, connect_timeout=timeout_s) as conn:
        try:
            conn.ensure_connection(max_retries=1, timeout=max(1, round(timeout_s)))
        except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific classes
            raise ServiceUnavailable("broker", mask_url(url), str(exc), BROKER_HINT) from None


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
    The request is written on the process's pooled engine (state/db.engine_for), which the
    admin API and `syncctl run --wait` go on using, and sent by the process's kept `sender`.
    """
    with engine_for(settings.urls()[1], settings.connect_timeout_s).begin() as conn:
        request = requests.record(conn, kind, flow, task)
    sender(settings).send_task(
        task.name, args=list(task.args), task_id=request.task_id, queue=task.queue
    )
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
    app = sender(settings)
    for row_id in event_row_ids:
        app.send_task(EVENT_TASK, args=[row_id], queue="events")


# -- the webhook service's producer ------------------------------------------------------------
SEND_TIMEOUT_S = 2.0  # how long a send waits for the broker before leaving it to the sweeper
SEND_BACKLOG = 10_000  # rows waiting for the sending thread; past it they wait for the sweeper
CLOSE_WAIT_S = 10.0  # how long closing waits for the sends still waiting
SEND_RUN = 100  # sends made on one producer checkout before it goes back to the pool
# Rows that arrive within SEND_LINGER_S of the first go out as one task (up to TASK_ROWS): a
# worker then handles them one after another, as their own tasks would, at a fraction of the
# broker round trips and task overhead per event, and in batches as large (events.handle).
# A lone event waits SEND_LINGER_S at most. bench events: at 200 events/s on 2 cores, 20 ms
# gave a p99 of 277 ms, 50 ms 189 ms.
SEND_LINGER_S = 0.05
TASK_ROWS = 50


class EventSender:
    """Sends `events.handle` from one thread, in arrival order, with one producer kept from a
    send to the next: no thread hop and no producer-pool checkout per delivery, and one task
    for the rows that arrive within SEND_LINGER_S of the first (at most TASK_ROWS). A send that
    fails (broker down: each try waits SEND_TIMEOUT_S) leaves its row queued for the sweeper;
    so does a row that finds SEND_BACKLOG rows waiting. It publishes no "task-sent"
    monitoring event per send: inbound_events and `syncctl webhooks stats` account for every
    event."""

    def __init__(self, settings: Settings) -> None:
        self.celery = client(settings, results=False)
        # Sends happen after the answer, but must not pile up behind a dead broker either.
        self.celery.conf.broker_connection_timeout = SEND_TIMEOUT_S
        self.celery.conf.broker_transport_options = {
            **self.celery.conf.broker_transport_options,
            "socket_connect_timeout": SEND_TIMEOUT_S,
            "socket_timeout": SEND_TIMEOUT_S,
        }
        self.celery.conf.task_send_sent_event = False
        self._waiting: queue.Queue[tuple[str, int] | None] = queue.Queue(maxsize=SEND_BACKLOG)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, connector: str, row_id: int) -> None:
        """Queue a send; never blocks."""
        self._start()
        try:
            self._waiting.put_nowait((connector, row_id))
        except queue.Full:
            log.warning(
                "webhook %s: event row %s recorded; %d sends wait already, the sweeper sends it",
                connector,
                row_id,
                SEND_BACKLOG,
            )

    def close(self) -> None:
        """Send what waits (for CLOSE_WAIT_S at most), stop the thread, close the producer."""
        with self._start_lock:
            thread = self._thread
            if thread is not None:
                self._waiting.put(None)
        if thread is not None:
            thread.join(CLOSE_WAIT_S)
        self.celery.close()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events-sender", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._waiting.get()
            if item is None:
                return
            sends = [item]
            until = time.monotonic() + SEND_LINGER_S
            while len(sends) < SEND_RUN:  # what arrives meanwhile goes out with it
                try:
                    more = self._waiting.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                sends.append(more)
            self._send_all(sends)

    def _send_all(self, sends: list[tuple[str, int]]) -> None:
        """One task per TASK_ROWS rows, all on one producer checkout."""
        runs = [sends[i : i + TASK_ROWS] for i in range(0, len(sends), TASK_ROWS)]
        try:
            with self.celery.producer_or_acquire() as producer:
                for run in runs:
                    self._send(producer, run)
        except Exception as exc:  # noqa: BLE001 - the thread must outlive a broken broker
            log.warning(
                "webhook sender: %d event rows recorded but maybe not enqueued (%s);"
                " the sweeper re-sends them",
                len(sends),
                type(exc).__name__,
            )

    def _send(self, producer: Any, run: list[tuple[str, int]]) -> None:
        row_ids = [row_id for _, row_id in run]
        try:
            self.celery.send_task(
                EVENT_TASK,
                args=[row_ids[0], row_ids[1:]] if len(row_ids) > 1 else [row_ids[0]],
                queue="events",
                producer=producer,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
            )
        except Exception as exc:  # noqa: BLE001 - kombu raises transport-specific errors
            log.warning(
                "webhook %s: event rows %s recorded but not enqueued (%s); the sweeper re-sends"
                " them",
                ", ".join(sorted({connector for connector, _ in run})),
                ", ".join(map(str, row_ids)),
                type(exc).__name__,
            )
