"""Issue 14, point 1, for Feishu: its long connection instead of a public URL. `syncctl events
connect sandbox_feishu` (a real process) keeps the connection to the sandbox, records what
arrives once as the webhook service does, and a real worker handles it: a card press decides
in the OA once and an approval event is recorded once, also when the sandbox drops the socket,
and a silent gateway raises one `event_connection` alert and one resolution (a real Beat)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml

from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.server import store_path
from sync_pipeline.state import connections
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import inbound_events
from tests.conftest import ROOT, next_second, syncctl, wait_for
from tests.e2e.spine import start_worker, stop
from tests.events.approval_scene import entries, oa_actions

pytestmark = pytest.mark.slow

SEED = 7
APPLICANT, APPROVER = "E00010", "E00011"
CONNECTOR = "sandbox_feishu"
SILENCE_S = 3  # the client pings every second; the sandbox pongs
OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # the seed-7 sandbox's first team group
FIRING = "[FIRING] feishu_connection: sandbox_feishu"
RESOLVED = "[RESOLVED] feishu_connection: sandbox_feishu"
EVERY_S = 5
DEADLINE_S = 90


@pytest.fixture(scope="module")
def sandbox_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def sandbox(sandbox_data: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(sandbox_data, seed=SEED, approvals=10, checkin_days=1) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        client.settings("feishu", {"events_mode": "long_connection", "ws_repush_s": "1"})
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    return private_redis_url


@pytest.fixture
def feishu_env(sandbox_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    connectors = yaml.safe_load((config / "connectors.yaml").read_text("utf-8"))
    connectors[CONNECTOR]["events"] = {"mode": "long_connection", "silence_s": SILENCE_S}
    (config / "connectors.yaml").write_text(yaml.safe_dump(connectors), "utf-8")
    rule = {"kind": "event_connection", "vendors": ["feishu"], "notify": ["ops"]}
    alerts: dict[str, Any] = {
        "evaluate_every_s": EVERY_S,
        "destinations": {"ops": {"group": {"connector": CONNECTOR, "chat_id": OPS_GROUP}}},
        "rules": {"feishu_connection": rule},
    }
    (config / "alerts.yaml").write_text(yaml.safe_dump(alerts), "utf-8")
    return {**sandbox_env, "SYNC_CONFIG_DIR": str(config), "SYNC_DATA_DIR": str(tmp_path / "data")}


def liveness(env: Mapping[str, str]) -> connections.Liveness | None:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return connections.get(conn, CONNECTOR)
    finally:
        engine.dispose()


@pytest.fixture
def connected(feishu_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "connect.log"
    out = open(log, "wb")  # noqa: SIM115 - closed below
    exe = Path(sys.executable).parent / "syncctl"
    before = liveness(feishu_env)
    proc = subprocess.Popen(
        [str(exe), "events", "connect", CONNECTOR],
        env=feishu_env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def alive() -> bool:
        assert proc.poll() is None, log.read_text("utf-8", "replace")
        found = liveness(feishu_env)
        return found is not None and found.alive and found != before

    try:
        wait_for(alive, DEADLINE_S, what="the long connection")
        yield proc
    finally:
        stop(proc)
        out.close()


@pytest.fixture
def worker(feishu_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(feishu_env, tmp_path / "worker.log")
    yield proc
    stop(proc)


def recorded(env: Mapping[str, str], kind: str, text: str) -> list[tuple[str, str]]:
    engine = engine_for(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    inbound_events.c.event_id, inbound_events.c.status, inbound_events.c.data
                ).where(inbound_events.c.connector == CONNECTOR, inbound_events.c.kind == kind)
            ).all()
    finally:
        engine.dispose()
    return [(str(r.event_id), str(r.status)) for r in rows if text in str(r.data)]


def feishu_api(sandbox: SandboxClient, method: str, path: str, **params: Any) -> Any:
    env = sandbox.env()
    base = env["SANDBOX_FEISHU_BASE_URL"] + "/open-apis"
    login = {"app_id": env["SANDBOX_FEISHU_APP_ID"], "app_secret": env["SANDBOX_FEISHU_APP_SECRET"]}
    token = requests.post(
        f"{base}/auth/v3/tenant_access_token/internal", json=login, timeout=10
    ).json()["tenant_access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, base + path, headers=headers, params=params, timeout=10).json()


_used: set[str] = set()


def subscribed_instance(sandbox: SandboxClient, sandbox_data: Path) -> str:
    """A seeded Feishu instance no other test used, its definition subscribed to."""
    store = SandboxStore(store_path(sandbox_data))
    for approval in store.list("feishu", "approval"):
        code = str(approval["approval_code"])
        listed = feishu_api(
            sandbox,
            "GET",
            "/approval/v4/instances",
            approval_code=code,
            start_time=0,
            end_time=4_102_444_800_000,
        )
        for instance_code in listed["data"]["instance_code_list"]:
            if instance_code not in _used:
                _used.add(instance_code)
                feishu_api(sandbox, "POST", f"/approval/v4/approvals/{code}/subscribe")
                return str(instance_code)
    raise AssertionError("no seeded Feishu instance left")


def press_instance_event(sandbox: SandboxClient, instance_code: str) -> Any:
    return sandbox.press("feishu", {"kind": "approval_instance", "instance_code": instance_code})


def carded(env: dict[str, str], sandbox: SandboxClient) -> tuple[str, str]:
    """(request id, message id): a pending request whose Feishu card went out."""
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    next_second()
    result = syncctl("run", "approvals_to_feishu", "--wait", "--timeout", "120", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [card] = [e["body"] for e in entries(sandbox, "feishu", title) if e["body"].get("msg_type")]
    return str(made["requestId"]), str(card["message_id"])


def patches(sandbox: SandboxClient, message_id: str) -> list[Mapping[str, Any]]:
    return [
        e
        for e in sandbox.ledger("feishu")
        if e["endpoint"].startswith("PATCH") and e["body"].get("message_id") == message_id
    ]


# -- delivered once ---------------------------------------------------------------------------
def test_a_card_press_over_the_long_connection_approves_in_the_oa_once(
    feishu_env, sandbox, connected, worker
) -> None:
    request_id, message_id = carded(feishu_env, sandbox)

    answer = sandbox.press(
        "feishu",
        {
            "kind": "card_action",
            "message_id": message_id,
            "user": APPROVER,
            "value": {"action": "approve", "source_id": request_id},
        },
    )

    assert answer["delivered"] == [200]
    wait_for(lambda: patches(sandbox, message_id), DEADLINE_S, what="the card patched")
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    assert len(recorded(feishu_env, "card_action", message_id)) == 1


def test_an_approval_event_over_the_long_connection_is_recorded_once(
    feishu_env, sandbox, sandbox_data, connected, worker
) -> None:
    instance_code = subscribed_instance(sandbox, sandbox_data)

    answer = press_instance_event(sandbox, instance_code)

    assert answer["delivered"] == [200]
    assert len(recorded(feishu_env, "approval_changed", instance_code)) == 1


# -- faults -----------------------------------------------------------------------------------
def test_a_dropped_socket_reconnects_and_the_event_sent_meanwhile_arrives_once(
    feishu_env, sandbox, sandbox_data, connected, worker
) -> None:
    before = liveness(feishu_env)
    assert before is not None
    instance_code = subscribed_instance(sandbox, sandbox_data)

    sandbox.press("feishu", {"kind": "ws_drop"})
    press_instance_event(sandbox, instance_code)  # answered now, or pushed again on the new one

    found = wait_for(
        lambda: recorded(feishu_env, "approval_changed", instance_code), DEADLINE_S, what="event"
    )
    after = wait_for(
        lambda: (live := liveness(feishu_env)) is not None and live.alive and live,
        DEADLINE_S,
        what="the connection back",
    )
    assert len(found) == 1
    assert after.outages == before.outages + 1


@contextmanager
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    out = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-l", "INFO"]
    cmd += ["-s", str(tmp_path / "celerybeat-schedule")]
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield
    finally:
        stop(proc)
        out.close()


def posted(sandbox: SandboxClient, title: str) -> list[dict[str, Any]]:
    return [
        e["body"]
        for e in sandbox.ledger("feishu")
        if e["body"].get("receive_id") == OPS_GROUP and title in str(e["body"].get("content"))
    ]


def test_a_silent_gateway_raises_one_alert_and_one_resolution_and_reconnects(
    feishu_env, sandbox, sandbox_data, connected, worker, tmp_path
) -> None:
    before = liveness(feishu_env)
    assert before is not None
    with beat(feishu_env, tmp_path):
        sandbox.press("feishu", {"kind": "ws_silence", "for_s": 3 * EVERY_S})

        wait_for(lambda: posted(sandbox, FIRING), DEADLINE_S, interval_s=1, what="the alert")
        wait_for(lambda: posted(sandbox, RESOLVED), DEADLINE_S, interval_s=1, what="resolved")
        instance_code = subscribed_instance(sandbox, sandbox_data)
        press_instance_event(sandbox, instance_code)
        wait_for(
            lambda: recorded(feishu_env, "approval_changed", instance_code),
            DEADLINE_S,
            what="event",
        )

    after = liveness(feishu_env)
    assert after is not None
    assert after.alive
    assert after.outages == before.outages + 1
    assert len(posted(sandbox, FIRING)) == 1
    assert len(posted(sandbox, RESOLVED)) == 1
