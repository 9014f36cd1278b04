"""Alert delivery (pipeline/alerts.py) against PostgreSQL, Redis and the sandbox's Feishu: a
notice is an effect with a key, so an evaluation run again (a redelivered task, a crash
before the row was marked) or a lost answer never posts it twice in the ops group."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from sync_pipeline.config.alerts import AlertsConfig, Destination, WebhookDestination
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.http.breaker import CircuitBreaker
from sync_pipeline.pipeline import alerts
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import alerts as rows
from sync_pipeline.state.alerts import AlertState
from sync_pipeline.state.schema import alerts as alerts_table

OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # config/alerts.yaml: the seed-7 team group
FIRING = "[FIRING] oa_down: oa"
RESOLVED = "[RESOLVED] oa_down: oa"
T0 = datetime.now(UTC)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    """A sandbox of the test's own: the same notice key in two tests' databases would be one
    message to the same Feishu (its uuid dedupe), which is right, and would hide the second."""
    with seeded_sandbox(tmp_path / "sandbox", seed=7, approvals=1) as client:
        yield client


def oa_breaker_open(rt: Runtime) -> CircuitBreaker:
    breaker = CircuitBreaker(rt.redis, "oa", "sandbox-app", failure_threshold=1)
    breaker.record_failure()
    return breaker


def posted(sandbox: SandboxClient, title: str) -> list[dict[str, Any]]:
    """The cards the sandbox's Feishu put in the ops group with this title (a resend under
    the same uuid is answered with the first message and leaves no second entry)."""
    return [
        e["body"]
        for e in sandbox.ledger("feishu")
        if e["body"].get("receive_id") == OPS_GROUP and title in str(e["body"].get("content"))
    ]


def test_given_the_oa_down_past_for_s_then_one_card_in_the_ops_group_and_one_resolution(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    breaker = oa_breaker_open(rt)

    alerts.evaluate(rt, T0)
    assert posted(sandbox, FIRING) == []  # pending: not yet for 60 s
    fired = alerts.evaluate(rt, T0 + timedelta(seconds=61))
    alerts.evaluate(rt, T0 + timedelta(seconds=90))
    rt.redis.delete(breaker.key)
    resolved = alerts.evaluate(rt, T0 + timedelta(seconds=120))
    alerts.evaluate(rt, T0 + timedelta(seconds=150))

    assert (fired.fired, fired.sent, resolved.resolved, resolved.sent) == (1, 1, 1, 1)
    [card] = posted(sandbox, FIRING)
    assert card["receive_id_type"] == "chat_id"
    content = json.loads(card["content"])
    assert "syncctl health" in json.dumps(content)
    assert len(posted(sandbox, RESOLVED)) == 1


def test_given_an_evaluation_run_again_before_its_row_was_marked_then_nothing_is_sent_twice(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    breaker = oa_breaker_open(rt)
    alerts.evaluate(rt, T0)
    alerts.evaluate(rt, T0 + timedelta(seconds=61))
    with rt.engine.begin() as conn:  # the task died after posting, before marking its row
        conn.execute(sa.update(alerts_table).values(notified_firing=False))

    again = alerts.evaluate(rt, T0 + timedelta(seconds=62))

    assert again.sent == 1  # the notice settled from its effect key: done already
    assert len(posted(sandbox, FIRING)) == 1
    with rt.engine.connect() as conn:
        [alert] = [a for a in rows.listed(conn) if a.rule == "oa_down"]
    assert (alert.state, alert.notified_firing) == (AlertState.FIRING, True)
    rt.redis.delete(breaker.key)


def test_given_the_answer_to_a_post_is_lost_then_the_next_look_does_not_post_it_twice(
    rt: Runtime, sandbox: SandboxClient
) -> None:
    breaker = oa_breaker_open(rt)
    alerts.evaluate(rt, T0)
    sandbox.fault("feishu", "applied_no_answer", params={"how": "drop", "count": 1})
    try:
        lost = alerts.evaluate(rt, T0 + timedelta(seconds=61))
    finally:
        sandbox.clear_faults("feishu")

    retried = alerts.evaluate(rt, T0 + timedelta(seconds=90))

    # Posted, its answer lost: the resend under its uuid was answered with the first message.
    assert (lost.sent, retried.sent) == (1, 0)

    assert len(posted(sandbox, FIRING)) == 1
    with rt.engine.connect() as conn:
        [alert] = [a for a in rows.listed(conn) if a.rule == "oa_down"]
    assert alert.notified_firing
    rt.redis.delete(breaker.key)


class Receiver(BaseHTTPRequestHandler):
    """A generic webhook receiver: keeps each delivery's headers and body."""

    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.got = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Receiver.got
    server.shutdown()
    server.server_close()


def test_given_a_webhook_destination_then_each_notice_arrives_once_signed(
    rt: Runtime,
    receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
    monkeypatch,
    tmp_path: Path,
) -> None:
    url, got = receiver
    monkeypatch.setenv("ALERT_SECRET", "s3cret")
    hook = Destination("pager", webhook=WebhookDestination(url, "ALERT_SECRET"))
    rule = replace(rt.config.alerts.rules["oa_down"], for_s=0, notify=("pager",))
    rt.config = replace(rt.config, alerts=AlertsConfig(30, {"pager": hook}, {"oa_down": rule}))
    breaker = oa_breaker_open(rt)

    alerts.evaluate(rt, T0)
    with rt.engine.begin() as conn:  # a redelivered evaluation, its row not marked
        conn.execute(sa.update(alerts_table).values(notified_firing=False))
    alerts.evaluate(rt, T0 + timedelta(seconds=1))

    [(headers, body)] = got
    mac = hmac.new(b"s3cret", headers["X-Sync-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Sync-Signature"] == f"sha256={mac.hexdigest()}"
    assert headers["X-Sync-Delivery"] == "alert:oa_down:oa:1:firing:pager.webhook"
    assert json.loads(body)["state"] == "firing"
    rt.redis.delete(breaker.key)
