"""Celery tasks: thin wrappers; the logic lives in sync_pipeline.pipeline.steps.

A run is `pull.start` (lock, run row, read and store pages) and, per page, the chain
`pull.plan -> write.page -> pull.commit`. Tasks pass ids and re-read state, so a redelivered
task continues where a lost one stopped. Only errors whose class is retryable retry, after
`errors.backoff_s` (the vendor's own wait, as `RateLimited.retry_after`, or the backoff),
capped far below the visibility timeout.

A pull holds its run's lease and a plan or write step its page's, renewed while it works
(pipeline/leases.py): the sweeper (`admin.sweep_work`, on Beat) sends again the work of a
worker that died, without waiting for the broker's visibility timeout (pipeline/sweeper.py).
A step that finds another holder's live lease leaves the page to it and stops its chain.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from celery import Task, chain, signals
from celery.exceptions import Ignore

from sync_pipeline import health
from sync_pipeline.dispatch import (
    EVENT_TASK,
    HEALTH_TASK,
    RECONCILE_TASK,
    REPLAY_TASK,
    RESYNC_TASK,
)
from sync_pipeline.errors import (
    MAX_COUNTDOWN_S,
    LeaseHeld,
    ReconcileRunning,
    Transient,
    backoff_s,
    next_step,
    retryable,
)
from sync_pipeline.logging import LogContext, log_context, reset_log_context, set_log_context
from sync_pipeline.pipeline import (
    alerts,
    events,
    leases,
    matrix_sync,
    reconcile,
    replay,
    resync,
    steps,
    sweeper,
)
from sync_pipeline.pipeline.runtime import (
    Runtime,
    get_runtime,
    preload_config,
    preloaded_digest,
)
from sync_pipeline.presence import Presence
from sync_pipeline.state import controls, requests
from sync_pipeline.state.leases import Leased
from sync_pipeline.state.pages import PageStatus
from sync_pipeline.state.requests import WorkRequest
from sync_pipeline.webhooks import sweep
from workers.app import app, settings

log = logging.getLogger(__name__)

MAX_RETRIES = 8
T = TypeVar("T")


_presence: list[Presence] = []  # this worker's, while it runs


@signals.worker_init.connect
def _load_config(**_: Any) -> None:
    """Before the pool forks: its processes share one configuration (runtime.py)."""
    preload_config()


@signals.worker_ready.connect
def _record_presence(**_: Any) -> None:
    """Record the configuration this worker runs, for `syncctl check` (presence.py)."""
    presence = Presence(settings.urls()[1], "worker", preloaded_digest())
    presence.start()
    _presence.append(presence)


@signals.worker_shutdown.connect
def _remove_presence(**_: Any) -> None:
    while _presence:
        _presence.pop().stop()


_RUN_TASKS = ("pull.resume", "pull.plan", "write.page", "pull.commit")
_log_tokens: dict[str, Any] = {}  # task id -> the token that restores the context after it


@signals.task_prerun.connect
def _task_log_context(
    task_id: str = "",
    task: Task[Any, Any] | None = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Every line a task logs names the task, and its flow and run where its arguments do."""
    kwargs = kwargs or {}
    name = task.name if task is not None else ""
    flow = kwargs.get("flow") or kwargs.get("flow_name")
    if flow is None and name == "pull.start" and args:
        flow = args[0]
    run_id = args[0] if name in _RUN_TASKS and args and isinstance(args[0], int) else None
    context = LogContext(flow=str(flow) if flow else None, run_id=run_id, task_id=task_id)
    _log_tokens[task_id] = set_log_context(context)


@signals.task_postrun.connect
def _task_log_context_end(task_id: str = "", **_: Any) -> None:
    token = _log_tokens.pop(task_id, None)
    if token is not None:
        reset_log_context(token)


@app.task(name=HEALTH_TASK, ignore_result=False, acks_late=True)
def health_check() -> dict[str, Any]:
    """Prove the worker reaches the broker (it got this task), Redis and PostgreSQL."""
    report = health.report(settings)
    return {"worker": f"{socket.gethostname()}:{os.getpid()}", **report}


def _run_step(task: Task[Any, Any], run_id: int, step: Callable[[], T]) -> T | None:
    """Retry what the error's class calls retryable, after the vendor's wait or the backoff;
    close the run on anything else, in the status the class names."""
    try:
        with log_context(run_id=run_id):
            return step()
    except LeaseHeld:
        raise  # not a failure: the lease's holder does the work (the callers say so)
    except Exception as exc:
        if retryable(exc) and task.request.retries < MAX_RETRIES:
            countdown = backoff_s(exc, task.request.retries)
            raise task.retry(exc=exc, countdown=countdown) from exc
        steps.fail_run(get_runtime(), run_id, exc)
        if retryable(exc):
            return None  # retries spent: the run is closed, the chain ends quietly
        then = next_step(exc)
        log.exception("run %s failed in %s; next: %s", run_id, task.name, then)
        raise  # a failed task stops its chain: the next pull starts from the committed cursor


def _page_chain(flow: str, run_id: int, page_id: int, status: str = "pulled") -> None:
    """The rest of one page's steps, from where it stands (`status`: a page sent again by the
    sweeper may be planned or done already): plan (whose task sends what follows it: see
    `plan_page`), or write -> commit, or commit. Each task names its flow in its keyword
    arguments, which is what Flower shows of a task (the ids alone say nothing there)."""
    if status == "pulled":
        plan_page.apply_async((run_id, page_id), {"flow": flow})
    elif status == "planned":
        chain(
            write_page.si(run_id, page_id, flow=flow), commit_run.si(run_id, flow=flow)
        ).apply_async()
    else:
        commit_run.apply_async((run_id,), {"flow": flow})


@app.task(name="pull.start", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def start_pull(
    self: Task[Any, Any],
    flow_name: str,
    trigger: str = "schedule",
    even_if_disabled: bool = False,
) -> int | None:
    """Open a run of `flow_name` (unless one is going on, or it is disabled and the operator
    did not run it `even_if_disabled`) and read its pages."""
    rt = get_runtime()
    run_id = steps.start_run(
        rt, flow_name, trigger, request_id=self.request.id, even_if_disabled=even_if_disabled
    )
    if run_id is None:
        return None
    _pull(self, flow_name, run_id)
    return run_id


@app.task(name="pull.resume", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def resume_pull(self: Task[Any, Any], run_id: int, flow: str = "") -> None:
    """Go on reading an open run's pages (the sweeper: its pull's worker died)."""
    _pull(self, flow, run_id)


def _pull(task: Task[Any, Any], flow: str, run_id: int) -> None:
    rt = get_runtime()
    enqueue = partial(_page_chain, flow, run_id)
    with leases.Lease(rt, Leased.RUN, run_id, leases.owner(task.request.id)) as lease:
        try:
            _run_step(task, run_id, lambda: steps.pull(rt, run_id, enqueue, lease))
        except LeaseHeld:
            log.info("run %s is being pulled by another worker", run_id)


def _page_step(
    task: Task[Any, Any], run_id: int, page_id: int, step: Callable[[leases.Lease], T]
) -> T | None:
    """A step on a page, under the page's lease (taken and let go in the step's own
    transactions); what the step returned, or None when its run was closed (retries spent). A
    page another worker holds is theirs, and this chain stops here (Ignore: the holder's
    chain goes on to the commit)."""
    holder = leases.owner(task.request.id)
    with leases.Lease(get_runtime(), Leased.PAGE, page_id, holder) as lease:
        try:
            return _run_step(task, run_id, lambda: step(lease))
        except LeaseHeld:
            pass
    log.info("page %s of run %s is being worked on by another worker", page_id, run_id)
    raise Ignore()


# `flow` names the flow for Flower and the logs; the ids are what the tasks act on.
@app.task(name="pull.plan", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def plan_page(self: Task[Any, Any], run_id: int, page_id: int, flow: str = "") -> None:
    """Plan the page, then what its plan calls for: its write step (and the commit after it),
    or, when there is nothing to write (the page is done), the commit, here and now: a
    no-change page costs one task, not three. A crash before the next task is sent leaves the
    page planned or done, which the sweeper sends on from (pipeline/sweeper.py)."""
    rt = get_runtime()
    status = _page_step(self, run_id, page_id, lambda lease: steps.plan(rt, page_id, lease))
    if status is None:
        return  # the run is closed
    if status is PageStatus.PLANNED:
        _page_chain(flow, run_id, page_id, status.value)
        return
    _run_step(self, run_id, lambda: steps.commit(rt, run_id))


@app.task(name="write.page", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def write_page(self: Task[Any, Any], run_id: int, page_id: int, flow: str = "") -> None:
    _page_step(self, run_id, page_id, lambda lease: steps.write(get_runtime(), page_id, lease))


@app.task(name="pull.commit", bind=True, acks_late=True, max_retries=MAX_RETRIES)
def commit_run(self: Task[Any, Any], run_id: int, flow: str = "") -> None:
    _run_step(self, run_id, lambda: steps.commit(get_runtime(), run_id))


@app.task(name=EVENT_TASK, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def handle_event(
    self: Task[Any, Any], event_row_id: int, more_row_ids: list[int] | None = None
) -> None:
    """One inbound webhook event (recorded once by the webhook service), handled, with the
    queued events of its kind that wait beside it (events.handle: micro-batches); or the
    events that arrived together, each as its own task would (events.handle_all)."""
    rt = get_runtime()
    if more_row_ids:
        events.handle_all(rt, [event_row_id, *more_row_ids], resend=_resend_event)
        return
    try:
        events.handle(rt, event_row_id, resend=_resend_event)
    except Transient as exc:
        if self.request.retries >= MAX_RETRIES:
            events.give_up(rt, event_row_id, exc)
            return
        raise self.retry(exc=exc, countdown=backoff_s(exc, self.request.retries)) from exc


def _resend_event(event_row_id: int, countdown: float) -> None:
    """Another row of a batch that must be tried again: its own task, after the wait."""
    handle_event.apply_async((event_row_id,), countdown=min(countdown, MAX_COUNTDOWN_S))


@app.task(name=matrix_sync.SYNC_TASK, acks_late=True)
def matrix_sync_task(connector: str) -> int:
    """Decisions made in `connector`'s Matrix rooms, recorded as card_action events and
    handed to `events.handle` (pipeline/matrix_sync.py); Beat runs this every few seconds. A
    failed read is simply the next tick's: the since-token moves only with what it recorded."""
    return matrix_sync.poll(get_runtime(), connector, handle_event.delay)


@app.task(name=sweep.SWEEP_TASK, acks_late=True)
def sweep_events() -> int:
    """Send `events.handle` again for inbound events the broker never got (it was down when
    the webhook service recorded them), and for those whose task's lease ran out before it
    finished them (a crashed worker); Beat runs this every SWEEP_EVERY_S."""
    rt = get_runtime()
    sent = len(sweep.sweep(rt.engine, rt.redis, handle_event.delay))
    return sent + events.sweep_expired(rt, _resend_event)


@app.task(name=REPLAY_TASK, bind=True, ignore_result=False, acks_late=True)
def replay_dead_letters(
    self: Task[Any, Any], flow: str | None, letter_ids: list[int] | None
) -> list[dict[str, Any]]:
    """`syncctl dlq replay`: open dead letters sent through their flow again (replay.py).
    A copy of a request begun already (the sweeper sent it again) leaves no answer, so the
    caller waiting on the task id gets the first copy's."""
    rt = get_runtime()
    task_id: str = self.request.id or ""
    with rt.engine.begin() as conn:
        recorded = requests.by_task_id(conn, task_id) is not None
        if recorded and not requests.start(conn, task_id):
            log.info("replay %s was begun already; this copy does nothing", self.request.id)
            raise Ignore()
    return [r.as_json() for r in replay.replay_dead_letters(rt, flow, letter_ids)]


@app.task(name=RESYNC_TASK, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def resync_flow(self: Task[Any, Any], resync_id: int, flow: str = "") -> None:
    """`syncctl resync`: go on with a resync from its checkpoint, under its lease, for a slice
    of the task time limit, then send the rest on as a new task (pipeline/resync.py). A copy
    that finds another worker's live lease leaves it to that worker; the sweeper sends it
    again when that worker dies, or when the next slice's task was lost."""
    rt = get_runtime()
    task_id: str = self.request.id or ""
    with rt.engine.begin() as conn:
        requests.start(conn, task_id)  # a recorded request is begun (a resend is not)
    with leases.held(rt, Leased.RESYNC, resync_id, leases.owner(task_id)) as mine:
        if not mine:
            log.info("resync %s is being worked on by another worker", resync_id)
            return
        try:
            now = resync.run_resync(rt, resync_id, for_s=_resync_slice_s())
        except Exception as exc:
            if retryable(exc) and self.request.retries < MAX_RETRIES:
                countdown = backoff_s(exc, self.request.retries)
                raise self.retry(exc=exc, countdown=countdown) from exc
            resync.fail(rt, resync_id, exc)
            if retryable(exc):
                return
            then = next_step(exc)
            log.exception("resync %s failed; next: %s", resync_id, then)
            raise
    if not now.done and not _paused(rt, now.flow):
        resync_flow.apply_async((resync_id,), {"flow": now.flow})  # the next slice


@app.task(name=RECONCILE_TASK, bind=True, acks_late=True, max_retries=MAX_RETRIES)
def reconcile_flow(self: Task[Any, Any], reconcile_id: int | None, flow: str = "") -> None:
    """`syncctl reconcile` (a recorded reconciliation), or Beat's (`reconcile_id` None: it is
    recorded here, repairing as the flow's `reconcile:` says): pipeline/reconcile.py, under
    the reconciliation's lease (the sweeper sends it again if this worker dies). The command
    line waits on its row in PostgreSQL."""
    rt = get_runtime()
    task_id: str = self.request.id or ""
    with rt.engine.begin() as conn:
        requests.start(conn, task_id)  # a recorded request is begun
    if reconcile_id is None:
        how = rt.config.reconcile_of(rt.flow(flow))
        if how is None:
            log.warning("flow %s cannot be reconciled; Beat's reconcile is skipped", flow)
            return
        if how.repair and _paused(rt, flow):
            log.warning("Beat's reconcile of %s is skipped: the flow is paused", flow)
            return
        try:
            reconcile_id = reconcile.start(rt, flow, reconcile.SCHEDULED_BY, repair=how.repair).id
        except ReconcileRunning as exc:
            log.warning("Beat's reconcile of %s is skipped: %s", flow, exc)
            return
    with leases.held(rt, Leased.RECONCILE, reconcile_id, leases.owner(task_id)) as mine:
        if not mine:
            log.info("reconcile %s is being worked on by another worker", reconcile_id)
            return
        try:
            reconcile.run_reconcile(rt, reconcile_id)
        except Exception as exc:
            if retryable(exc) and self.request.retries < MAX_RETRIES:
                countdown = backoff_s(exc, self.request.retries)
                raise self.retry(args=(reconcile_id, flow), exc=exc, countdown=countdown) from exc
            reconcile.fail(rt, reconcile_id, exc)
            then = next_step(exc)
            log.exception("reconcile %s of %s failed; next: %s", reconcile_id, flow, then)


def _resync_slice_s() -> float:
    """How long one resync task works before it sends the rest on as a new task: well inside
    the task time limits, whatever they are set to."""
    return max(5.0, settings.task_time_limit_s / 3)


def _paused(rt: Runtime, flow: str) -> bool:
    with rt.engine.connect() as conn:
        return controls.paused(conn, flow) is not None


class _Resend:
    """The sweeper's way of sending work again: these tasks (pipeline/sweeper.py)."""

    def pull(self, flow: str, run_id: int) -> None:
        resume_pull.apply_async((run_id,), {"flow": flow})

    def page(self, flow: str, run_id: int, page_id: int, status: str) -> None:
        _page_chain(flow, run_id, page_id, status)

    def commit(self, flow: str, run_id: int) -> None:
        commit_run.apply_async((run_id,), {"flow": flow})

    def request(self, request: WorkRequest) -> None:
        task = request.task
        app.send_task(task.name, args=list(task.args), task_id=request.task_id, queue=task.queue)

    def resync(self, flow: str, resync_id: int) -> None:
        resync_flow.apply_async((resync_id,), {"flow": flow})

    def reconcile(self, flow: str, reconcile_id: int) -> None:
        reconcile_flow.apply_async((reconcile_id,), {"flow": flow})


@app.task(name=sweeper.SWEEP_TASK, acks_late=True)
def sweep_work() -> int:
    """Send again the work of workers that died and requests the broker lost (sweeper.py);
    Beat runs this every sweeper.SWEEP_EVERY_S."""
    return sweeper.sweep(get_runtime(), _Resend()).total


@app.task(name=alerts.EVALUATE_TASK, acks_late=True)
def evaluate_alerts() -> dict[str, int]:
    """The alert rules of config/alerts.yaml, evaluated (pipeline/alerts.py); Beat runs this
    every `evaluate_every_s`. A redelivered copy sends nothing twice: each notice is an
    effect with its own key."""
    done = alerts.evaluate(get_runtime())
    return {"fired": done.fired, "resolved": done.resolved, "sent": done.sent, "left": done.left}
