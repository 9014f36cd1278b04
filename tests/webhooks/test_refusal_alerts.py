"""The `webhook_refusals` alert on real refusals of the webhook service: forged deliveries to
the OA's callback above the threshold inside the window fire one notice in the ops group;
once they age out of the window, one resolution. Never one per evaluation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import requests

from sync_pipeline.config.alerts import (
    AlertKind,
    AlertsConfig,
    Destination,
    GroupDestination,
    Rule,
)
from sync_pipeline.pipeline import alerts
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.settings import load_settings
from tests.conftest import wait_for
from tests.webhooks.conftest import CONFIG_DIR

OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # the seed-7 sandbox's first team group
THRESHOLD, WINDOW_S = 5, 10
FIRING = "[FIRING] oa_callbacks_refused: sandbox_oa"
RESOLVED = "[RESOLVED] oa_callbacks_refused: sandbox_oa"


def runtime(sandbox: Any, redis_url: str, database_url: str) -> Runtime:
    """A worker's runtime on the service's database, with one rule: the OA's webhook refusing
    THRESHOLD deliveries within WINDOW_S, told to the Feishu ops group."""
    env = {
        **sandbox.env(),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "SYNC_CONFIG_DIR": str(CONFIG_DIR),
    }
    rt = build_runtime(load_settings(env), env)
    ops = Destination("ops", group=GroupDestination("sandbox_feishu", OPS_GROUP))
    rule = Rule(
        name="oa_callbacks_refused",
        kind=AlertKind.WEBHOOK_REFUSALS,
        threshold=THRESHOLD,
        for_s=0,
        notify=("ops",),
        vendors=("oa",),
        window_s=WINDOW_S,
    )
    rt.config = replace(rt.config, alerts=AlertsConfig(30, {"ops": ops}, {rule.name: rule}))
    return rt


def posted(sandbox: Any, title: str, since_seq: int) -> int:
    return sum(
        1
        for e in sandbox.ledger("feishu", since_seq=since_seq)
        if e["body"].get("receive_id") == OPS_GROUP and title in str(e["body"].get("content"))
    )


def test_given_forged_deliveries_spiking_then_one_alert_and_one_resolution(
    sandbox, service, redis_url: str, database_url: str
) -> None:
    rt = runtime(sandbox, redis_url, database_url)
    start = sandbox.last_seq()
    below = alerts.evaluate(rt)
    for _ in range(THRESHOLD):
        answer = requests.post(service.endpoint("oa"), data=b"{}", timeout=10)  # unsigned
        assert answer.status_code in (400, 401, 403)

    fired = alerts.evaluate(rt)
    again = alerts.evaluate(rt)
    resolved = wait_for(
        lambda: (e := alerts.evaluate(rt)).resolved and e,
        deadline_s=4 * WINDOW_S,
        interval_s=1.0,
        what="the refusals to age out of the window",
    )

    assert (below.fired, fired.fired, fired.sent, again.sent) == (0, 1, 1, 0)
    assert resolved.sent == 1
    assert posted(sandbox, FIRING, start) == 1
    assert posted(sandbox, RESOLVED, start) == 1
