"""Contract tests of the Feishu emulator's long connection (longconn.py): the endpoint request,
protobuf frames, ping and pong, answers within 3 s and re-pushes, checked with a client written
from lark-oapi's ws protocol, and cross-checked with the official SDK's `lark.ws.Client` as a
client of the emulator (in a process of its own: its event loop is module-level)."""

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
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import websockets

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.feishu import FeishuEmulator
from sync_pipeline.webhooks.longconn import pbbp2
from tests.conftest import wait_for
from tests.sandbox.test_feishu import api, pending_instance, send_card, world  # noqa: F401


@pytest.fixture
def feishu(serve, store: SandboxStore, world) -> FeishuEmulator:  # noqa: F811
    emulator = serve(FeishuEmulator, store)
    emulator.seed(world, approvals=40, checkin_days=1)
    assert isinstance(emulator, FeishuEmulator)
    store.set_setting("feishu", "events_mode", "long_connection")
    store.set_setting("feishu", "ws_ping_s", "1")
    store.set_setting("feishu", "ws_repush_s", "0.5")
    store.set_setting("feishu", "ws_answer_s", "3")
    return emulator


def endpoint(feishu: FeishuEmulator, **changes: str) -> dict[str, Any]:
    creds = feishu.credentials()
    body = {"AppID": creds["app_id"], "AppSecret": creds["app_secret"], **changes}
    answer = requests.post(f"{feishu.base_url}/callback/ws/endpoint", json=body, timeout=5)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def ping(service: int) -> bytes:
    return pbbp2.encode(pbbp2.Frame(service=service, headers=(("type", "ping"),)))


# -- the endpoint -----------------------------------------------------------------------------
def test_the_endpoint_answers_a_socket_url_with_device_and_service_and_a_client_config(
    feishu,
) -> None:
    found = endpoint(feishu)

    assert found["code"] == 0
    query = parse_qs(urlparse(found["data"]["URL"]).query)
    assert query["device_id"]
    assert query["service_id"]
    assert found["data"]["ClientConfig"]["PingInterval"] == 1


def test_the_endpoint_refuses_a_wrong_secret_with_the_auth_failed_code(feishu) -> None:
    assert endpoint(feishu, AppSecret="wrong")["code"] == 514


# -- frames -----------------------------------------------------------------------------------
def test_a_ping_is_answered_with_a_pong(feishu) -> None:
    url = endpoint(feishu)["data"]["URL"]

    async def exchange() -> pbbp2.Frame:
        async with websockets.connect(url) as socket:
            await socket.send(ping(1))
            return pbbp2.decode(await asyncio.wait_for(socket.recv(), 5))

    pong = asyncio.run(exchange())

    assert (pong.method, pong.header("type")) == (pbbp2.CONTROL, "pong")


def test_an_event_not_answered_within_its_time_is_pushed_again_with_its_message_id(
    feishu,
    api,  # noqa: F811
) -> None:
    detail = pending_instance(api, feishu)
    api("POST", f"/approval/v4/approvals/{detail['approval_code']}/subscribe")
    url = endpoint(feishu)["data"]["URL"]

    async def two_pushes() -> list[pbbp2.Frame]:
        async with websockets.connect(url) as socket:
            press = {"kind": "approval_instance", "instance_code": detail["instance_code"]}
            pressed = asyncio.create_task(asyncio.to_thread(feishu.press, press))
            frames = [pbbp2.decode(await asyncio.wait_for(socket.recv(), 5)) for _ in range(2)]
            await socket.send(pbbp2.encode(frames[1].answered(b'{"code": 200}')))
            await pressed
            return frames

    first, second = asyncio.run(two_pushes())

    assert (first.method, first.header("type"), first.header("sum")) == (pbbp2.DATA, "event", "1")
    assert first.header("message_id") == second.header("message_id")
    envelope = json.loads(first.payload)
    assert envelope["event"]["instance_code"] == detail["instance_code"]


# -- the official SDK as a client of the emulator ---------------------------------------------
SDK_CLIENT = textwrap.dedent(
    """
    import json, os
    import lark_oapi as lark
    from lark_oapi.event.callback.model.p2_card_action_trigger import (
        P2CardActionTriggerResponse,
    )

    def on_card(data):
        line = {"type": "card", "value": data.event.action.value}
        print(json.dumps(line), flush=True)
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": "OK"}})

    def on_instance(data):
        print(json.dumps({"type": "approval_instance", "event": data.event}), flush=True)

    handler = (
        lark.EventDispatcherHandler.builder("", "")
        .register_p2_card_action_trigger(on_card)
        .register_p1_customized_event("approval_instance", on_instance)
        .build()
    )
    client = lark.ws.Client(
        os.environ["APP_ID"], os.environ["APP_SECRET"], event_handler=handler,
        domain=os.environ["DOMAIN"], log_level=lark.LogLevel.ERROR,
    )
    client.start()
    """
)


@pytest.fixture
def sdk_client(feishu, tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "sdk.out"
    creds = feishu.credentials()
    env = {
        **os.environ,
        "DOMAIN": feishu.base_url,
        "APP_ID": creds["app_id"],
        "APP_SECRET": creds["app_secret"],
    }
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", SDK_CLIENT], env=env, stdout=sink, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(lambda: feishu._gateway.sockets, 20, what="the SDK connected")
            yield out
        finally:
            proc.kill()
            proc.wait()


def received(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text("utf-8").splitlines() if line.strip()]


def test_the_official_sdk_receives_a_card_press_and_its_toast_comes_back(
    feishu,
    api,  # noqa: F811
    sdk_client,
) -> None:
    message = send_card(api, feishu)

    result = feishu.press(
        {
            "kind": "card_action",
            "message_id": message["message_id"],
            "user": "E00002",
            "value": {"action": "approve"},
        }
    )

    assert result["delivered"] == [200]
    assert result["toast"] == {"type": "success", "content": "OK"}
    assert received(sdk_client) == [{"type": "card", "value": {"action": "approve"}}]


def test_the_official_sdk_receives_an_approval_event(
    feishu,
    api,  # noqa: F811
    sdk_client,
) -> None:
    detail = pending_instance(api, feishu)
    api("POST", f"/approval/v4/approvals/{detail['approval_code']}/subscribe")

    result = feishu.press({"kind": "approval_instance", "instance_code": detail["instance_code"]})

    assert result["delivered"] == [200]
    [line] = received(sdk_client)
    assert line["event"]["instance_code"] == detail["instance_code"]
