"""Issue 14, point 1: DingTalk's Stream mode instead of a public URL. `syncctl events connect
sandbox_dingtalk` (a real process) keeps a Stream connection to the sandbox, records what
arrives once in PostgreSQL as the webhook service does, and a real worker handles it: a card
press decides in the OA once and an approval event is recorded once, also when the sandbox
drops the socket (the event waits and is pushed again), and a silent gateway raises one
`event_connection` alert and one resolution in the ops group (a real Beat evaluates)."""

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
import sqlalchemy as sa
import yaml

from sync_pipeline.devtools.sandbox import dingtalk as sandbox_dingtalk
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.state import connections
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.schema import inbound_events
from tests.conftest import ROOT, next_second, syncctl, wait_for
from tests.e2e.spine import start_worker, stop
from tests.events.approval_scene import entries, oa_actions

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPROVALS = 10
APPLICANT, APPROVER = "E00010", "E00011"
CONNECTOR = "sandbox_dingtalk"
SILENCE_S = 2  # the client's silence limit; the sandbox pings every 0.5 s
OPS_GROUP = "oc_8db2a6f7a973f70919f5fdebf25a8136"  # the seed-7 sandbox's first team group
FIRING = "[FIRING] dingtalk_stream: sandbox_dingtalk"
RESOLVED = "[RESOLVED] dingtalk_stream: sandbox_dingtalk"
EVERY_S = 5
DEADLINE_S = 90


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=APPROVALS, checkin_days=1) as client:
        client.settings("wecom", {"callback_url": "http://127.0.0.1:1/callbacks/wecom"})
        client.settings(
            "dingtalk",
            {"events_mode": "stream", "stream_ping_s": "0.5", "stream_repush_s": "1"},
        )
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    return private_redis_url


@pytest.fixture
def stream_env(sandbox_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The shipped config, its DingTalk connector on Stream mode, and one alert rule: its
    connection down, told to the ops group."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    connectors = yaml.safe_load((config / "connectors.yaml").read_text("utf-8"))
    connectors[CONNECTOR]["events"] = {"mode": "stream", "silence_s": SILENCE_S}
    (config / "connectors.yaml").write_text(yaml.safe_dump(connectors), "utf-8")
    alerts: dict[str, Any] = {
        "evaluate_every_s": EVERY_S,
        "destinations": {"ops": {"group": {"connector": "sandbox_feishu", "chat_id": OPS_GROUP}}},
        "rules": {
            "dingtalk_stream": {
                "kind": "event_connection",
                "vendors": ["dingtalk"],
                "notify": ["ops"],
            }
        },
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


@contextmanager
def connecting(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`syncctl events connect sandbox_dingtalk`, up once its connection brought a frame."""
    out = open(log, "wb")  # noqa: SIM115 - closed below
    exe = Path(sys.executable).parent / "syncctl"
    before = liveness(env)
    proc = subprocess.Popen(
        [str(exe), "events", "connect", CONNECTOR],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def alive() -> bool:
        assert proc.poll() is None, log.read_text("utf-8", "replace")
        found = liveness(env)
        return found is not None and found.alive and found != before

    try:
        wait_for(alive, DEADLINE_S, what="the Stream connection")
        yield proc
    finally:
        stop(proc)
        out.close()


@pytest.fixture
def connected(stream_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with connecting(stream_env, tmp_path / "connect.log") as proc:
        yield proc


@pytest.fixture
def worker(stream_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(stream_env, tmp_path / "worker.log")
    yield proc
    stop(proc)


def recorded(env: Mapping[str, str], kind: str, text: str) -> list[tuple[str, str]]:
    """(event id, status) of each recorded DingTalk event of `kind` whose data mentions text."""
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


def carded(env: dict[str, str], sandbox: SandboxClient) -> tuple[str, str, str]:
    """(request id, title, outTrackId): a pending request whose DingTalk card went out."""
    title = f"Leave request {uuid.uuid4().hex[:8]}"
    made = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
    next_second()
    result = syncctl("run", "approvals_to_dingtalk", "--wait", "--timeout", "120", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    userid = sandbox_dingtalk.userid_for(WORLD.person(APPROVER))
    [created] = [
        e["body"]
        for e in entries(sandbox, "dingtalk", title)
        if e["endpoint"] == "card/instances/createAndDeliver" and e["body"]["spaceId"] == userid
    ]
    return str(made["requestId"]), title, str(created["outTrackId"])


def press_approve(sandbox: SandboxClient, request_id: str, track: str) -> None:
    sandbox.press(
        "dingtalk",
        {
            "kind": "card_action",
            "out_track_id": track,
            "user_id": sandbox_dingtalk.userid_for(WORLD.person(APPROVER)),
            "action_id": "approve",
            "params": {"action": "approve", "source_id": request_id},
        },
    )


def card_updates(sandbox: SandboxClient, track: str) -> list[Mapping[str, Any]]:
    return [
        e["body"]
        for e in sandbox.ledger("dingtalk")
        if e["endpoint"] == "card/instances" and e["body"].get("outTrackId") == track
    ]


def instance(n: int) -> str:
    """The DingTalk instance id of the n-th seeded approval (each test its own)."""
    return sandbox_dingtalk.instance_id_for(WORLD, WORLD.approval(n))


def press_started(sandbox: SandboxClient, instance_id: str) -> None:
    sandbox.press(
        "dingtalk",
        {"kind": "bpms_instance_change", "process_instance_id": instance_id, "type": "start"},
    )


# -- delivered once ---------------------------------------------------------------------------
def test_a_card_press_over_stream_approves_in_the_oa_once_and_updates_the_card(
    stream_env, sandbox, connected, worker
) -> None:
    request_id, _, track = carded(stream_env, sandbox)

    press_approve(sandbox, request_id, track)

    wait_for(lambda: card_updates(sandbox, track), DEADLINE_S, what="the card updated")
    assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]
    [press] = recorded(stream_env, "card_action", track)
    wait_for(
        lambda: recorded(stream_env, "card_action", track)[0][1] == "done",
        DEADLINE_S,
        what="the press handled",
    )
    assert press[0].startswith(f"card:{track}:")
    [update] = card_updates(sandbox, track)
    assert update["cardData"]["cardParamMap"]["status_label"].startswith("Approved by")


def test_an_approval_event_over_stream_is_recorded_once(
    stream_env, sandbox, connected, worker
) -> None:
    instance_id = instance(1)

    press_started(sandbox, instance_id)

    found = wait_for(
        lambda: recorded(stream_env, "approval_changed", instance_id), DEADLINE_S, what="event"
    )
    assert [event_id for event_id, _ in found] == [
        event_id for event_id, _ in recorded(stream_env, "approval_changed", instance_id)
    ]
    assert len(found) == 1
    assert found[0][0].startswith(f"bpms_instance_change:{instance_id}:start")


# -- faults -----------------------------------------------------------------------------------
def test_a_dropped_socket_reconnects_and_the_event_sent_meanwhile_arrives_once(
    stream_env, sandbox, connected, worker
) -> None:
    before = liveness(stream_env)
    assert before is not None
    instance_id = instance(2)

    sandbox.press("dingtalk", {"kind": "stream_drop"})
    press_started(sandbox, instance_id)  # while reconnecting, or on the new socket

    found = wait_for(
        lambda: recorded(stream_env, "approval_changed", instance_id), DEADLINE_S, what="event"
    )
    after = wait_for(
        lambda: (live := liveness(stream_env)) is not None and live.alive and live,
        DEADLINE_S,
        what="the connection back",
    )
    assert len(found) == 1
    assert after.outages == before.outages + 1


def test_a_disconnect_frame_is_followed_by_a_new_connection(
    stream_env, sandbox, connected, worker
) -> None:
    before = liveness(stream_env)
    assert before is not None
    instance_id = instance(3)

    sandbox.press("dingtalk", {"kind": "stream_disconnect"})
    press_started(sandbox, instance_id)

    found = wait_for(
        lambda: recorded(stream_env, "approval_changed", instance_id), DEADLINE_S, what="event"
    )
    assert len(found) == 1
    assert connected.poll() is None


def test_an_event_pushed_while_no_client_is_connected_arrives_once_it_connects(
    stream_env, sandbox, worker, tmp_path
) -> None:
    with connecting(stream_env, tmp_path / "first.log"):
        pass  # connected once, then stopped
    instance_id = instance(5)

    press_started(sandbox, instance_id)  # the gateway holds it: nobody is connected
    with connecting(stream_env, tmp_path / "second.log"):
        found = wait_for(
            lambda: recorded(stream_env, "approval_changed", instance_id), DEADLINE_S, what="event"
        )

    assert len(found) == 1


def test_events_alive_says_the_connection_is_up(stream_env, sandbox, connected) -> None:
    result = syncctl("events", "alive", CONNECTOR, env=stream_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{CONNECTOR}: up since ")


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
    stream_env, sandbox, connected, worker, tmp_path
) -> None:
    before = liveness(stream_env)
    assert before is not None
    with beat(stream_env, tmp_path):
        sandbox.press("dingtalk", {"kind": "stream_silence", "for_s": 3 * EVERY_S})

        wait_for(lambda: posted(sandbox, FIRING), DEADLINE_S, interval_s=1, what="the alert")
        wait_for(lambda: posted(sandbox, RESOLVED), DEADLINE_S, interval_s=1, what="resolved")
        instance_id = instance(4)
        press_started(sandbox, instance_id)
        wait_for(
            lambda: recorded(stream_env, "approval_changed", instance_id), DEADLINE_S, what="event"
        )

    after = liveness(stream_env)
    assert after is not None
    assert after.alive
    assert after.outages == before.outages + 1
    assert len(posted(sandbox, FIRING)) == 1
    assert len(posted(sandbox, RESOLVED)) == 1


def test_events_connect_refuses_a_connector_without_an_events_section_in_one_line(
    stream_env,
) -> None:
    result = syncctl("events", "connect", "sandbox_wecom", env=stream_env)

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "sandbox_wecom has no events: section" in result.stderr
