"""The webhook service's admin surfaces: /metrics wants the admin token, /healthz tells nothing.

The service faces the vendors through the reverse proxy, so anything it serves, it serves to
the internet; on the proxy's host every request comes from 127.0.0.1, so "loopback only" would
guard nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sync_pipeline.dispatch import QUEUES
from sync_pipeline.processes import free_port
from sync_pipeline.webhooks.app import build_app
from sync_pipeline.webhooks.auth import AdminToken
from tests.webhooks.conftest import (
    ADMIN_TOKEN,
    Service,
    running_service,
    serve_in_thread,
    service_settings,
)


@pytest.fixture
def service(sandbox, redis_url: str, database_url: str, tmp_path: Path) -> Iterator[Service]:
    with running_service(sandbox, redis_url, database_url, tmp_path) as running:
        yield running


def test_given_the_admin_token_and_asked_for_json_metrics_answers_the_figures(
    service: Service,
) -> None:
    answer = service.metrics()

    assert answer.status_code == 200
    assert answer.json() == {"connectors": []}


def test_given_the_admin_token_metrics_answers_prometheus_text_with_each_queues_depth(
    service: Service,
) -> None:
    answer = service.prometheus()

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    depths = {
        sample.labels["queue"]: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "sync_queue_depth"
    }
    assert set(depths) == set(QUEUES)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
    ],
)
def test_given_no_or_a_wrong_token_metrics_answers_401_and_no_figures(
    service: Service, headers: dict[str, str]
) -> None:
    answer = requests.get(f"{service.url}/metrics", headers=headers, timeout=10)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "connectors" not in answer.text


def test_given_no_admin_token_configured_metrics_refuses_every_request(
    sandbox, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    with running_service(sandbox, redis_url, database_url, tmp_path, SYNC_ADMIN_TOKEN="") as bare:
        answers = [
            requests.get(f"{bare.url}/metrics", headers=headers, timeout=10).status_code
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"})
        ]

    assert answers == [401, 401, 401]


def test_given_healthy_servers_healthz_answers_ok_and_nothing_more(service: Service) -> None:
    answer = requests.get(f"{service.url}/healthz", timeout=10)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_given_postgres_unreachable_healthz_answers_503_and_nothing_more(
    sandbox, redis_url: str, tmp_path: Path
) -> None:
    settings = service_settings(redis_url, "postgresql://postgres@127.0.0.1:1/none", tmp_path)
    port = free_port()
    server, thread = serve_in_thread(build_app(settings, sandbox.env()), port)
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable"}


@pytest.mark.parametrize(
    ("authorization", "admitted"),
    [
        (f"Bearer {ADMIN_TOKEN}", True),
        (f"bearer {ADMIN_TOKEN}", True),
        (f"Bearer  {ADMIN_TOKEN} ", True),
        (f"Bearer {ADMIN_TOKEN[:-1]}", False),
        ("Bearer ", False),
        ("", False),
        (f"Token {ADMIN_TOKEN}", False),
        (f"Bearer {ADMIN_TOKEN}\u00e9", False),
    ],
)
def test_given_an_authorization_header_the_admin_token_admits_only_its_bearer(
    authorization: str, admitted: bool
) -> None:
    assert AdminToken(ADMIN_TOKEN).admits(authorization) is admitted


def test_given_no_admin_token_nothing_is_admitted() -> None:
    assert AdminToken(None).admits("Bearer ") is False
    assert AdminToken(None).admits("Bearer None") is False
