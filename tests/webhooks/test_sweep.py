"""A delivery recorded while the broker is down still gets its task: the sweeper sends it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sync_pipeline import dispatch
from sync_pipeline.settings import load_settings
from sync_pipeline.state.inbound import EventStatus
from sync_pipeline.state.schema import inbound_events
from sync_pipeline.webhooks.sweep import SWEEP_TASK, sweep
from tests.conftest import wait_for
from tests.e2e.spine import start_worker, stop
from tests.webhooks.conftest import (
    CALLBACK_SETTING,
    CONFIG_DIR,
    Service,
    running_service,
)

DEAD_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def brokerless(sandbox, redis_url, database_url, tmp_path) -> Iterator[Service]:
    """The service with its broker down (Redis itself, for replay memory, is up)."""
    with running_service(
        sandbox, redis_url, database_url, tmp_path, BROKER_URL=DEAD_BROKER
    ) as running:
        sandbox.settings("oa", {CALLBACK_SETTING["oa"]: running.endpoint("oa")})
        yield running


def backdate(service: Service, minutes: int) -> None:
    """As if the delivery had come `minutes` ago (the sweeper leaves young rows alone)."""
    with service.engine.begin() as conn:
        conn.execute(
            inbound_events.update().values(received_at=sa.func.now() - timedelta(minutes=minutes))
        )


def test_given_the_broker_down_a_delivery_is_acknowledged_and_left_queued(
    sandbox, brokerless
) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")

    [row] = brokerless.wait_rows("oa", 1)

    assert row.status is EventStatus.QUEUED
    assert brokerless.enqueued() == 0


def test_the_sweeper_sends_a_row_left_queued_once_per_resend_interval(
    sandbox, brokerless, redis_url
) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    [row] = brokerless.wait_rows("oa", 1)
    client = dispatch.client(
        load_settings({"REDIS_URL": redis_url, "DATABASE_URL": "postgresql://x"})
    )
    send = lambda row_id: client.send_task(dispatch.EVENT_TASK, args=[row_id], queue="events")  # noqa: E731
    later = datetime.now(UTC) + timedelta(minutes=5)

    first = sweep(brokerless.engine, brokerless.redis, send, now=later)
    second = sweep(brokerless.engine, brokerless.redis, send, now=later)

    assert (first, second) == ([row.id], [])
    assert brokerless.enqueued() == 1
    client.close()


def test_the_sweeper_leaves_a_young_row_to_the_task_on_its_way(sandbox, brokerless) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    brokerless.wait_rows("oa", 1)

    sent = sweep(brokerless.engine, brokerless.redis, lambda row_id: None)

    assert sent == []


def test_a_real_worker_sweeps_on_the_admin_queue_and_handles_the_event(
    sandbox, brokerless, service_env, tmp_path
) -> None:
    sandbox.create_approval(applicant="E00003", approvers=["E00002"], template="leave")
    [row] = brokerless.wait_rows("oa", 1)
    backdate(brokerless, minutes=5)
    env = {**service_env, **brokerless.env, "SYNC_CONFIG_DIR": str(CONFIG_DIR)}
    worker = start_worker(env, tmp_path / "worker.log")
    client = dispatch.client(load_settings(env))
    try:
        client.send_task(SWEEP_TASK, queue="admin")

        handled = wait_for(
            lambda: (r := brokerless.rows("oa")[0]).status is not EventStatus.QUEUED and r,
            60,
            what="the swept event handled by the worker",
        )
    finally:
        client.close()
        stop(worker)
    assert handled.id == row.id
    assert handled.status in (EventStatus.DONE, EventStatus.IGNORED)
    assert handled.attempts == 1
