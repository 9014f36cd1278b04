"""How work requests reach the broker (dispatch.send_request): a process that sends many (the
admin API) keeps one broker connection and subscribes to no answers; a request is still
recorded before its task is sent, and its task carries the request's task id."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from sync_pipeline.dispatch import send_request
from sync_pipeline.settings import Settings
from sync_pipeline.state import requests
from sync_pipeline.state.db import engine_for

FLOW = "approvals_to_wecom"
TASK = requests.Task("pull.start", "pull", (FLOW, "manual", False))


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py), whose
    connections are all this module's."""
    return private_redis_url


def test_requests_sent_one_after_another_go_out_on_one_broker_connection(
    settings: Settings, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    send_request(settings, requests.RequestKind.RUN, FLOW, TASK)  # the process's first send
    connected = client.info("stats")["total_connections_received"]

    for _ in range(5):
        send_request(settings, requests.RequestKind.RUN, FLOW, TASK)

    assert client.info("stats")["total_connections_received"] == connected
    assert client.llen("pull") == 6


def test_a_sent_request_subscribes_to_no_answer(settings: Settings, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()

    send_request(settings, requests.RequestKind.RUN, FLOW, TASK)

    commands = client.info("commandstats")
    assert "cmdstat_lpush" in commands  # the task went out
    assert not {"cmdstat_subscribe", "cmdstat_unsubscribe"} & set(commands)


def test_a_sent_requests_task_carries_its_recorded_task_id(
    settings: Settings, redis_url: str
) -> None:
    request = send_request(settings, requests.RequestKind.RUN, FLOW, TASK)

    [raw] = redis.Redis.from_url(redis_url).lrange("pull", 0, -1)
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert (message["headers"]["id"], args) == (request.task_id, list(TASK.args))
    with engine_for(settings.urls()[1], settings.connect_timeout_s).connect() as conn:
        assert requests.by_task_id(conn, request.task_id) == request
