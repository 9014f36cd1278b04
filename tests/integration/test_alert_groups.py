"""Alerts posted in an ops group on WeCom (appchat/send), DingTalk (a card delivered to the
group, IM_GROUP) and Agora Chat (a group message), against PostgreSQL, Redis and the
sandbox: one notice in the group's ledger when the alert fires, one when it resolves, and an
evaluation run again before its row was marked (a redelivered task) sends nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.config.alerts import AlertsConfig, Destination, GroupDestination
from sync_pipeline.devtools.sandbox.agora import _group_id
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.dingtalk.base import conversation_id_for
from sync_pipeline.devtools.sandbox.wecom.messages import chatid_for
from sync_pipeline.http.breaker import CircuitBreaker
from sync_pipeline.pipeline import alerts
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.settings import load_settings
from sync_pipeline.state import effects, migrate
from sync_pipeline.state.schema import alerts as alerts_table
from tests.conftest import ROOT

SEED = 7
GROUP = "g1"  # the seed's first team group, in every IM
# The titles' words: DingTalk's markdown shows "[" and "_" as their full-width forms.
FIRING, RESOLVED = "FIRING", "RESOLVED"
T0 = datetime.now(UTC)


@dataclass(frozen=True)
class Ops:
    """One vendor's ops group: its connector, its chat id, and how its ledger shows a post."""

    platform: str
    connector: str
    chat_id: str
    endpoint: str

    def posts(self, sandbox: SandboxClient, title: str) -> list[dict[str, Any]]:
        return [
            e["body"]
            for e in sandbox.ledger(self.platform)
            if e["endpoint"] == self.endpoint and self.chat_id in json.dumps(e["body"])
            if title in json.dumps(e["body"], ensure_ascii=False)
        ]


GROUPS = {
    "wecom": Ops("wecom", "sandbox_wecom", chatid_for(GROUP), "appchat/send"),
    "dingtalk": Ops(
        "dingtalk",
        "sandbox_dingtalk",
        conversation_id_for(GROUP),
        "card/instances/createAndDeliver",
    ),
    "agora": Ops("agora", "sandbox_agora", _group_id(SEED, GROUP), "POST /messages/chatgroups"),
}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(tmp_path / "sandbox", seed=SEED, approvals=1) as client:
        yield client


@pytest.fixture(params=sorted(GROUPS))
def ops(request: pytest.FixtureRequest) -> Ops:
    return GROUPS[request.param]


@pytest.fixture
def rt(service_env: dict[str, str], sandbox: SandboxClient, ops: Ops) -> Iterator[Runtime]:
    """A worker's runtime on the sandbox, with one rule: the OA down, told to `ops`' group."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {**service_env, **sandbox.env(), "SYNC_CONFIG_DIR": str(ROOT / "config")}
    runtime = build_runtime(load_settings(env), env)
    group = Destination("ops", group=GroupDestination(ops.connector, ops.chat_id))
    rule = replace(runtime.config.alerts.rules["oa_down"], for_s=0, notify=("ops",))
    runtime.config = replace(
        runtime.config, alerts=AlertsConfig(30, {"ops": group}, {"oa_down": rule})
    )
    oa_breaker(runtime).record_failure()
    yield runtime
    runtime.redis.delete(oa_breaker(runtime).key)


def oa_breaker(rt: Runtime) -> CircuitBreaker:
    return CircuitBreaker(rt.redis, "oa", "sandbox-app", failure_threshold=1)


def test_given_the_oa_down_then_one_notice_in_the_group_and_one_resolution(
    rt: Runtime, sandbox: SandboxClient, ops: Ops
) -> None:
    fired = alerts.evaluate(rt, T0)
    alerts.evaluate(rt, T0 + timedelta(seconds=30))
    rt.redis.delete(oa_breaker(rt).key)
    resolved = alerts.evaluate(rt, T0 + timedelta(seconds=60))
    alerts.evaluate(rt, T0 + timedelta(seconds=90))

    assert (fired.sent, resolved.sent) == (1, 1)
    [firing] = ops.posts(sandbox, FIRING)
    assert "syncctl health" in json.dumps(firing)
    assert len(ops.posts(sandbox, RESOLVED)) == 1


def test_given_an_evaluation_redelivered_before_its_row_was_marked_then_nothing_twice(
    rt: Runtime, sandbox: SandboxClient, ops: Ops
) -> None:
    alerts.evaluate(rt, T0)
    with rt.engine.begin() as conn:  # the task died after posting, before marking its row
        conn.execute(sa.update(alerts_table).values(notified_firing=False))

    again = alerts.evaluate(rt, T0 + timedelta(seconds=1))

    assert again.sent == 1  # settled from its effect key: done already
    assert len(ops.posts(sandbox, FIRING)) == 1


def test_given_the_answer_to_a_post_is_lost_then_it_is_never_posted_twice(
    rt: Runtime, sandbox: SandboxClient, ops: Ops
) -> None:
    sandbox.fault(ops.platform, "applied_no_answer", params={"how": "drop", "count": 1})
    try:
        alerts.evaluate(rt, T0)
    finally:
        sandbox.clear_faults(ops.platform)

    alerts.evaluate(rt, T0 + timedelta(seconds=30))

    assert len(ops.posts(sandbox, FIRING)) == 1
    with rt.engine.connect() as conn:
        parked = effects.count_by_status(conn, alerts.ALERTS_FLOW).get("unknown", 0)
    # DingTalk's resend under the same outTrackId was answered with the first delivery;
    # WeCom and Agora have no dedupe handle, so the notice is parked for an operator.
    assert parked == (0 if ops.platform == "dingtalk" else 1)
