"""The webhook service's sending thread: every recorded row gets its `events.handle` task
once, in arrival order, after the answer; rows that arrive together share one task (at most
TASK_ROWS each), a lone row goes alone (test_sweep.py: a dead broker leaves rows queued for
the sweeper)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sync_pipeline.dispatch import SEND_LINGER_S, TASK_ROWS, EventSender
from tests.conftest import wait_for
from tests.webhooks.conftest import queued_rows, queued_tasks, service_settings


@pytest.fixture
def sender(redis_url: str, database_url: str, tmp_path: Path) -> Iterator[EventSender]:
    sending = EventSender(service_settings(redis_url, database_url, tmp_path))
    try:
        yield sending
    finally:
        sending.close()


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_every_row_put_is_sent_once_in_order(sender: EventSender, client: redis.Redis) -> None:
    for row_id in range(1, 121):
        sender.put("sandbox_oa", row_id)

    wait_for(lambda: len(queued_rows(client)) >= 120, 20, what="120 rows on 'events'")

    assert queued_rows(client) == list(range(1, 121))


def test_rows_that_arrive_together_share_a_task_of_at_most_task_rows(
    sender: EventSender, client: redis.Redis
) -> None:
    for row_id in range(1, 121):
        sender.put("sandbox_oa", row_id)

    wait_for(lambda: len(queued_rows(client)) >= 120, 20, what="120 rows on 'events'")

    sizes = [len(task) for task in queued_tasks(client)]
    assert max(sizes) == TASK_ROWS
    assert len(sizes) < 120 / 2


def test_a_lone_row_goes_out_alone_within_the_linger(
    sender: EventSender, client: redis.Redis
) -> None:
    sender.put("sandbox_oa", 7)
    wait_for(lambda: client.llen("events") >= 1, 20, what="a task on 'events'")
    time.sleep(SEND_LINGER_S * 5)
    sender.put("sandbox_oa", 8)

    wait_for(lambda: client.llen("events") >= 2, 20, what="two tasks on 'events'")

    assert queued_tasks(client) == [[7], [8]]


def test_closing_sends_what_still_waits(redis_url: str, database_url: str, tmp_path: Path) -> None:
    sender = EventSender(service_settings(redis_url, database_url, tmp_path))
    client = redis.Redis.from_url(redis_url)
    for row_id in range(1, 21):
        sender.put("sandbox_oa", row_id)

    sender.close()

    assert queued_rows(client) == list(range(1, 21))
