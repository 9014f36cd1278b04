"""Contract tests of the DingTalk emulator's Stream mode (stream.py): the open-connection API,
the one-use ticket, frames, acks and re-pushes, checked with a client written from the
protocol page, and cross-checked with DingTalk's official SDK (`dingtalk-stream`) as a
client of the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.dingtalk import DingTalkEmulator, instance_id_for, userid_for
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import wait_for
from tests.sandbox.test_dingtalk import deliver, group_space

SEED, APPROVALS = 7, 20
CARD_TOPIC = "/v1.0/card/instances/callback"
SUBSCRIPTIONS = [{"type": "EVENT", "topic": "*"}, {"type": "CALLBACK", "topic": CARD_TOPIC}]


@pytest.fixture
def world() -> World:
    return World(SEED)


@pytest.fixture
def ding(store: SandboxStore, serve, world: World) -> DingTalkEmulator:
    emulator = serve(DingTalkEmulator, store)
    assert isinstance(emulator, DingTalkEmulator)
    emulator.seed(world, APPROVALS, 1)
    store.set_setting("dingtalk", "events_mode", "stream")
    store.set_setting("dingtalk", "stream_ping_s", "0.3")
    store.set_setting("dingtalk", "stream_repush_s", "0.5")
    return emulator


def open_connection(ding: DingTalkEmulator, **changes: Any) -> requests.Response:
    creds = ding.credentials()
    body = {
        "clientId": creds["appKey"],
        "clientSecret": creds["appSecret"],
        "subscriptions": SUBSCRIPTIONS,
        **changes,
    }
    return requests.post(f"{ding.base_url}/v1.0/gateway/connections/open", json=body, timeout=5)


def socket_url(ding: DingTalkEmulator) -> str:
    answer = open_connection(ding)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    return f"{found['endpoint']}?ticket={found['ticket']}"


def press_started(ding: DingTalkEmulator, world: World, n: int) -> str:
    instance_id = instance_id_for(world, world.approval(n))
    ding.press(
        {"kind": "bpms_instance_change", "process_instance_id": instance_id, "type": "start"}
    )
    return instance_id


async def frames_until(url: str, ding, world, stop_after: str, answer: bool) -> list[dict]:
    """Connect, push one approval event, and read frames (answering pings, and the event
    if `answer`) until a frame of type `stop_after` came twice or once (answered)."""
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url) as socket:
        await asyncio.to_thread(press_started, ding, world, 1)
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            seen.append(frame)
            if frame["type"] == stop_after:
                if answer:
                    await socket.send(ack(frame, {"status": "SUCCESS"}))
                    return seen
                if sum(f["type"] == stop_after for f in seen) == 2:
                    return seen


def ack(frame: dict[str, Any], data: dict[str, Any]) -> str:
    headers = {"messageId": frame["headers"]["messageId"], "contentType": "application/json"}
    return json.dumps({"code": 200, "headers": headers, "message": "OK", "data": json.dumps(data)})


# -- the open-connection API ------------------------------------------------------------------
def test_open_connection_answers_a_websocket_endpoint_and_a_ticket(ding) -> None:
    answer = open_connection(ding)

    assert answer.status_code == 200
    found = answer.json()
    assert found["endpoint"].startswith("ws://127.0.0.1:")
    assert found["ticket"]


def test_open_connection_refuses_a_wrong_client_secret(ding) -> None:
    answer = open_connection(ding, clientSecret="wrong")

    assert answer.status_code == 400
    assert answer.json()["code"] == "invalidClientIdOrSecret"


def test_a_ticket_opens_one_connection_only(ding) -> None:
    url = socket_url(ding)

    async def twice() -> None:
        async with websockets.connect(url):
            pass
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url):
                pass

    asyncio.run(twice())


# -- frames, acks, re-pushes ------------------------------------------------------------------
def test_an_approval_event_is_an_event_frame_with_its_type_in_the_headers(ding, world) -> None:
    frames = asyncio.run(frames_until(socket_url(ding), ding, world, "EVENT", answer=True))

    [event] = [f for f in frames if f["type"] == "EVENT"]
    assert event["headers"]["eventType"] == "bpms_instance_change"
    assert event["headers"]["topic"] == "bpms_instance_change"
    assert event["headers"]["eventCorpId"] == ding.credentials()["corpId"]
    data = json.loads(event["data"])
    assert data["processInstanceId"] == instance_id_for(world, world.approval(1))
    assert data["type"] == "start"
    wait_for(lambda: any(a["acknowledged"] for a in ding.callback_answers), 5, what="the ack")


def test_an_event_not_acked_is_pushed_again_with_its_message_id(ding, world) -> None:
    frames = asyncio.run(frames_until(socket_url(ding), ding, world, "EVENT", answer=False))

    first, second = [f for f in frames if f["type"] == "EVENT"]
    assert first["headers"]["messageId"] == second["headers"]["messageId"]


def test_the_gateway_pings_with_an_opaque_value(ding) -> None:
    async def first_frame() -> dict[str, Any]:
        async with websockets.connect(socket_url(ding)) as socket:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
            return frame

    ping = asyncio.run(first_frame())

    assert (ping["type"], ping["headers"]["topic"]) == ("SYSTEM", "ping")
    assert json.loads(ping["data"])["opaque"]


# -- the official SDK as a client of the emulator ---------------------------------------------
SDK_CLIENT = textwrap.dedent(
    """
    import json, os, dingtalk_stream
    from dingtalk_stream import AckMessage

    class Events(dingtalk_stream.EventHandler):
        async def process(self, event):
            line = {"type": "EVENT", "eventType": event.headers.event_type, "data": event.data}
            print(json.dumps(line), flush=True)
            return AckMessage.STATUS_OK, "OK"

    class Cards(dingtalk_stream.CallbackHandler):
        async def process(self, message):
            line = {"type": "CALLBACK", "topic": message.headers.topic, "data": message.data}
            print(json.dumps(line), flush=True)
            return AckMessage.STATUS_OK, "OK"

    credential = dingtalk_stream.Credential(os.environ["APP_KEY"], os.environ["APP_SECRET"])
    client = dingtalk_stream.DingTalkStreamClient(credential)
    client.register_all_event_handler(Events())
    client.register_callback_handler(dingtalk_stream.CallbackHandler.TOPIC_CARD_CALLBACK, Cards())
    client.start_forever()
    """
)


@pytest.fixture
def sdk_client(ding, tmp_path: Path) -> Iterator[Path]:
    """The official SDK's client in a process of its own, its received messages in a file."""
    pytest.importorskip("dingtalk_stream")
    out = tmp_path / "sdk.out"
    creds = ding.credentials()
    env = {
        **os.environ,
        "DINGTALK_OPENAPI_ENDPOINT": ding.base_url,
        "APP_KEY": creds["appKey"],
        "APP_SECRET": creds["appSecret"],
    }
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", SDK_CLIENT], env=env, stdout=sink, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(lambda: ding._gateway.sockets, 20, what="the SDK connected")
            yield out
        finally:
            proc.kill()
            proc.wait()


def received(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text("utf-8").splitlines() if line.strip()]


def test_the_official_sdk_receives_and_acks_an_approval_event(ding, world, sdk_client) -> None:
    instance_id = press_started(ding, world, 2)

    [line] = wait_for(lambda: received(sdk_client), 20, what="the SDK's event")
    assert line["eventType"] == "bpms_instance_change"
    assert line["data"]["processInstanceId"] == instance_id
    wait_for(lambda: not ding._gateway.pending, 10, what="the SDK's ack taken as done")


def test_the_official_sdk_receives_and_acks_a_card_press(ding, world, sdk_client) -> None:
    token = requests.post(
        f"{ding.base_url}/v1.0/oauth2/accessToken",
        json={"appKey": ding.credentials()["appKey"], "appSecret": ding.credentials()["appSecret"]},
        timeout=5,
    ).json()["accessToken"]
    assert deliver(ding, token, world, "approval-1-v1", group_space(world)).status_code == 200
    user = userid_for(world.person(world.groups[0].member_nos[0]))

    ding.press(
        {
            "kind": "card_action",
            "out_track_id": "approval-1-v1",
            "user_id": user,
            "action_id": "approve",
            "params": {"action": "approve", "source_id": "1"},
        }
    )

    [line] = wait_for(lambda: received(sdk_client), 20, what="the SDK's callback")
    assert line["topic"] == CARD_TOPIC
    assert line["data"]["outTrackId"] == "approval-1-v1"
    assert json.loads(line["data"]["content"])["cardPrivateData"]["actionIds"] == ["approve"]
    wait_for(lambda: not ding._gateway.pending, 10, what="the SDK's ack taken as done")
