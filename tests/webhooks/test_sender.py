"""The webhook service's sending thread: every recorded row gets its `events.handle` task
once, in arrival order, after the answer (test_sweep.py: a dead broker leaves rows queued
for the sweeper)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import redis

from sync_pipeline import dispatch
from sync_pipeline.webhooks.app import Sender
from tests.conftest import wait_for
from tests.webhooks.conftest import service_settings


def queued_rows(client: redis.Redis) -> list[int]:
    """The row ids of the `events.handle` tasks on the "events" queue, oldest first."""
    messages = [json.loads(raw) for raw in reversed(client.lrange("events", 0, -1))]
    assert all(m["headers"]["task"] == dispatch.EVENT_TASK for m in messages)
    return [int(json.loads(_body(m))[0][0]) for m in messages]


def _body(message: dict[str, Any]) -> str:
    return base64.b64decode(message["body"]).decode()


def test_every_row_put_is_sent_once_in_order(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    celery = dispatch.client(service_settings(redis_url, database_url, tmp_path))
    sender = Sender(celery)
    client = redis.Redis.from_url(redis_url)
    try:
        for row_id in range(1, 51):
            sender.put("sandbox_oa", row_id)

        wait_for(lambda: client.llen("events") >= 50, 20, what="50 tasks on 'events'")
    finally:
        sender.close()
        celery.close()

    assert queued_rows(client) == list(range(1, 51))


def test_closing_sends_what_still_waits(redis_url: str, database_url: str, tmp_path: Path) -> None:
    celery = dispatch.client(service_settings(redis_url, database_url, tmp_path))
    sender = Sender(celery)
    client = redis.Redis.from_url(redis_url)
    for row_id in range(1, 21):
        sender.put("sandbox_oa", row_id)

    sender.close()
    celery.close()

    assert queued_rows(client) == list(range(1, 21))
