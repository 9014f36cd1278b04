"""End to end: a vendor applies a write and its answer is lost (the sandbox's
`applied_no_answer` fault drops the connection), with a real worker making the effects.

- Inside the vendor's dedupe window (Feishu `uuid`, WeCom duplicate check, DingTalk
  `outTrackId` and its daily notification check) the retry resends under the same handle and
  the vendor drops it: exactly one delivery in the ledger, the effect done.
- With no dedupe handle but a state to read (an OA approval decision) the retry reads the
  request and records the effect done: exactly one decision in the OA.
- With neither (Agora Chat) the effect is parked as unknown, never resent: zero or one
  delivery in the ledger, never two, and `syncctl effects list --status unknown` shows it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import effects
from tests.conftest import next_second, syncctl, wait_for
from tests.e2e.spine import webhook_service
from tests.events.approval_scene import entries, oa_actions

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPLICANT, APPROVER = "E00010", "E00011"
FAULT = "applied_no_answer"
RUN_TIMEOUT_S = "180"
LATE_MS = 11_000  # past the shipped connectors' read timeout (timeout_s: 10)
# An OA decision whose answer was lost is reconciled once its in-flight window (120 s) ends.
RECONCILE_DEADLINE_S = 240
# What a vendor makes up for each write it accepts: two sends of one effect differ only here.
GENERATED = frozenset(
    {"msgid", "response_code", "message_id", "msg_ids", "task_id", "delivered_to", "carrierId"}
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=12, checkin_days=1) as client:
        # WeCom accepts callback cards only from an app with a callback URL (errcode 43012).
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def faults_cleared(sandbox: SandboxClient) -> Iterator[SandboxClient]:
    sandbox.clear_faults()
    yield sandbox
    sandbox.clear_faults()


# -- helpers ----------------------------------------------------------------------------------
def lose_next_answer(sandbox: SandboxClient, platform: str, **how: Any) -> int:
    """The next write `platform` applies loses its answer (`how`: the fault's params); returns
    the ledger's seq before."""
    mark = sandbox.last_seq()
    sandbox.fault(platform, FAULT, params={"count": 1, **how})
    return mark


def new_approval(sandbox: SandboxClient) -> str:
    """A new pending request in the OA; returns its title, which no other test uses."""
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    return title


def struck(sandbox: SandboxClient, platform: str) -> bool:
    """Whether the fault has lost its answer (a counted fault ends when it strikes)."""
    return not [f for f in sandbox.faults() if f["platform"] == platform and f["kind"] == FAULT]


def deliveries(ledger: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Each effect the ledger shows delivered, as (endpoint, dedupe handle, what was sent): a
    resend the vendor dropped (delivered to nobody) is no delivery."""
    found = []
    for entry in ledger:
        body: Mapping[str, Any] = entry["body"]
        if "delivered_to" in body and not body["delivered_to"]:
            continue
        sent = {k: v for k, v in body.items() if k not in GENERATED}
        found.append(
            (
                str(entry["endpoint"]),
                str(entry["idem_key"]),
                json.dumps(sent, sort_keys=True, ensure_ascii=False),
            )
        )
    return found


def run(flow: str, env: dict[str, str]) -> None:
    next_second()
    result = syncctl("run", flow, "--wait", "--timeout", RUN_TIMEOUT_S, env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def statuses(env: dict[str, str], flow: str) -> Counter[str]:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(effects.c.status).where(effects.c.flow == flow))
            return Counter(rows.scalars())
    finally:
        engine.dispose()


def unknown_effects(env: dict[str, str], flow: str) -> list[Mapping[str, Any]]:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(effects.c.key, effects.c.source_id).where(
                    effects.c.flow == flow, effects.c.status == "unknown"
                )
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


# -- inside the vendor's dedupe window --------------------------------------------------------
@pytest.mark.parametrize(
    ("flow", "platform", "how"),
    [
        ("approvals_to_feishu", "feishu", {}),
        ("approvals_to_wecom", "wecom", {}),
        ("approvals_to_dingtalk", "dingtalk", {}),
        ("approvals_to_wecom", "wecom", {"how": "late", "delay_ms": LATE_MS}),
    ],
    ids=["feishu", "wecom", "dingtalk", "wecom-answered-late"],
)
def test_given_a_lost_answer_inside_the_vendors_dedupe_window_the_effect_is_made_once(
    sandbox_env,
    faults_cleared: SandboxClient,
    sandbox_worker,
    flow: str,
    platform: str,
    how: dict[str, Any],
) -> None:
    title = new_approval(faults_cleared)  # something new to send, whatever ran before
    mark = lose_next_answer(faults_cleared, platform, **how)

    run(flow, sandbox_env)

    assert struck(faults_cleared, platform)
    made = deliveries(faults_cleared.ledger(platform, since_seq=mark))
    assert [d for d, n in Counter(made).items() if n > 1] == []  # the lost one included
    assert [d for d in made if title in d[2]], f"{flow} sent nothing for the new approval"
    made_statuses = statuses(sandbox_env, flow)
    assert set(made_statuses) == {"done"}, made_statuses


# -- no dedupe handle, and nothing to look up -------------------------------------------------
def test_given_a_lost_answer_and_no_way_to_tell_the_effect_is_parked_unknown_never_resent(
    sandbox_env, faults_cleared: SandboxClient, sandbox_worker
) -> None:
    flow, platform = "approvals_to_agora", "agora"
    mark = lose_next_answer(faults_cleared, platform)

    run(flow, sandbox_env)
    run(flow, sandbox_env)  # a later run leaves the parked effect alone

    assert struck(faults_cleared, platform)
    [parked] = unknown_effects(sandbox_env, flow)
    lost = faults_cleared.ledger(platform, since_seq=mark)[0]
    made = deliveries(faults_cleared.ledger(platform, since_seq=mark))
    assert made.count(deliveries([lost])[0]) == 1  # made once by the vendor, never resent
    assert [d for d, n in Counter(made).items() if n > 1] == []
    assert statuses(sandbox_env, flow)["unknown"] == 1
    assert parked["source_id"]


def test_a_parked_lost_answer_is_listed_by_syncctl_effects_list(
    sandbox_env, faults_cleared: SandboxClient, sandbox_worker
) -> None:
    flow = "approvals_to_agora"
    lose_next_answer(faults_cleared, "agora")
    run(flow, sandbox_env)
    [parked] = unknown_effects(sandbox_env, flow)

    shown = syncctl("effects", "list", "--status", "unknown", "--json", env=sandbox_env)

    assert shown.returncode == 0, shown.stdout + shown.stderr
    listed = json.loads(shown.stdout)
    [entry] = [e for e in listed if e["key"] == parked["key"]]
    assert (entry["flow"], entry["status"], entry["record"]) == (
        flow,
        "unknown",
        parked["source_id"],
    )
    assert {"id", "target", "kind", "age_s", "error", "next"} <= set(entry)


# -- no dedupe handle, but a state to read: an OA approval decision ---------------------------
@pytest.fixture
def webhooks(sandbox_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    """`syncctl webhooks serve`, the OA and WeCom calling it (faults cleared around it)."""
    with webhook_service(sandbox_env, sandbox, tmp_path / "webhooks.log", ("oa", "wecom")) as url:
        yield url


def test_given_a_lost_answer_to_an_oa_decision_the_request_is_read_and_decided_once(
    sandbox_env, sandbox: SandboxClient, webhooks, sandbox_worker
) -> None:
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    request_id = str(made["requestId"])
    userid = sandbox_wecom.userid_for(WORLD.person(APPROVER))

    def card() -> Mapping[str, Any] | None:
        for entry in entries(sandbox, "wecom", title):
            if entry["body"].get("msgtype") == "template_card":
                found: Mapping[str, Any] = entry["body"]["template_card"]
                return found
        return None

    task_id = wait_for(card, 90, what="the WeCom card")["task_id"]
    lose_next_answer(sandbox, "oa")

    sandbox.press(
        "wecom",
        {"kind": "button", "task_id": task_id, "userid": userid, "key": f"approve:{request_id}"},
    )

    def decision_done() -> bool:
        engine = engine_for(sandbox_env["DATABASE_URL"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(effects.c.status).where(
                        effects.c.source_id == request_id, effects.c.kind == "oa_action"
                    )
                )
                return list(rows.scalars()) == ["done"]
        finally:
            engine.dispose()

    wait_for(decision_done, RECONCILE_DEADLINE_S, interval_s=1, what="the decision recorded")
    assert struck(sandbox, "oa")
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
