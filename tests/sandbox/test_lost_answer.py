"""The `applied_no_answer` fault, against `syncctl sandbox up` as a real process: a write is
applied (it is in the ledger) and its answer lost, by a dropped connection or an answer that
comes after the client stopped waiting; calls that write nothing are answered as usual."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from starlette.applications import Starlette

from sync_pipeline.devtools.sandbox.cli import sandbox as sandbox_cli
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.server import FaultCache, FaultInjector
from sync_pipeline.devtools.sandbox.wecom import WeComEmulator, userid_for
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.processes import free_port

SEED = 7
RECIPIENT = userid_for(World(SEED).person("E00010"))
FAULT = "applied_no_answer"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def running(data_dir: Path) -> Iterator[SandboxClient]:
    with seeded_sandbox(data_dir, seed=SEED, approvals=5, checkin_days=1) as client:
        yield client


@pytest.fixture
def sandbox(running: SandboxClient) -> Iterator[SandboxClient]:
    """The shared sandbox, every fault cleared afterwards."""
    yield running
    running.clear_faults()


class WeCom:
    """A WeCom client of the emulator: a token, and text messages under duplicate check."""

    def __init__(self, url: str, creds: Mapping[str, str]) -> None:
        self.url = url
        self.agentid = int(creds["agentid"])
        self.token = requests.get(
            f"{self.url}/cgi-bin/gettoken",
            params={"corpid": creds["corpid"], "corpsecret": creds["corpsecret"]},
            timeout=5,
        ).json()["access_token"]

    def send(self, text: str, timeout_s: float = 5) -> dict[str, Any]:
        body = {
            "touser": RECIPIENT,
            "msgtype": "text",
            "agentid": self.agentid,
            "text": {"content": text},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 1800,
        }
        answer = requests.post(
            f"{self.url}/cgi-bin/message/send",
            params={"access_token": self.token},
            json=body,
            timeout=timeout_s,
        )
        return dict(answer.json())


def wecom_of(sandbox: SandboxClient) -> WeCom:
    entry = sandbox.info()["wecom"]
    return WeCom(str(entry["base_url"]), entry["credentials"])


def sent(sandbox: SandboxClient, text: str) -> list[dict[str, Any]]:
    """The ledger's entries of WeCom messages with this text."""
    return [
        entry
        for entry in sandbox.ledger("wecom")
        if entry["endpoint"] == "message/send" and entry["body"].get("text") == {"content": text}
    ]


def a_text() -> str:
    return f"lost answer {uuid.uuid4().hex[:8]}"


def test_a_write_is_applied_and_its_connection_dropped_without_an_answer(
    sandbox: SandboxClient,
) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("wecom", FAULT)

    with pytest.raises(requests.ConnectionError, match="without response"):
        wecom.send(text)

    assert len(sent(sandbox, text)) == 1


def test_a_resend_the_vendor_dedupes_is_answered_with_the_first_sends_message(
    sandbox: SandboxClient,
) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("wecom", FAULT)
    with pytest.raises(requests.ConnectionError):
        wecom.send(text)

    again = wecom.send(text)  # writes nothing: WeCom's duplicate check drops it

    [entry] = sent(sandbox, text)
    assert (again["errcode"], again["msgid"]) == (0, entry["body"]["msgid"])


def test_a_call_that_writes_nothing_keeps_its_answer(sandbox: SandboxClient) -> None:
    sandbox.fault("wecom", FAULT)

    wecom = wecom_of(sandbox)  # gettoken: a read

    assert wecom.token


def test_the_late_variant_answers_after_the_clients_read_timeout(sandbox: SandboxClient) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("wecom", FAULT, params={"how": "late", "delay_ms": 1500})

    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        wecom.send(text, timeout_s=0.5)

    assert time.monotonic() - started < 1.5
    assert len(sent(sandbox, text)) == 1


def test_the_late_variant_answers_a_patient_client(sandbox: SandboxClient) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("wecom", FAULT, params={"how": "late", "delay_ms": 300})

    started = time.monotonic()
    answer = wecom.send(text)

    assert time.monotonic() - started >= 0.3
    [entry] = sent(sandbox, text)
    assert answer["msgid"] == entry["body"]["msgid"]


def test_a_count_loses_that_many_answers_and_then_the_fault_ends(
    sandbox: SandboxClient,
) -> None:
    wecom, first, second = wecom_of(sandbox), a_text(), a_text()
    sandbox.fault("wecom", FAULT, params={"count": 1})

    with pytest.raises(requests.ConnectionError):
        wecom.send(first)
    answer = wecom.send(second)

    assert answer["errcode"] == 0
    assert (len(sent(sandbox, first)), len(sent(sandbox, second))) == (1, 1)
    assert [f for f in sandbox.faults() if f["kind"] == FAULT] == []


def test_a_rate_of_zero_loses_no_answer(sandbox: SandboxClient) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("wecom", FAULT, rate=0.0)

    assert wecom.send(text)["errcode"] == 0


def test_the_fault_is_per_platform(sandbox: SandboxClient) -> None:
    wecom, text = wecom_of(sandbox), a_text()
    sandbox.fault("oa", FAULT)

    assert wecom.send(text)["errcode"] == 0


@pytest.mark.parametrize(
    "params",
    [{"how": "sideways"}, {"count": 0}, {"count": 1.5}, {"delay_ms": -1}, {"delay_ms": "soon"}],
)
def test_a_fault_with_impossible_params_is_refused_with_the_reason(
    sandbox: SandboxClient, params: dict[str, Any]
) -> None:
    [(name, _)] = params.items()

    with pytest.raises(RuntimeError, match=f"400.*{name}"):
        sandbox.fault("wecom", FAULT, params=params)


def test_syncctl_sandbox_fault_sets_it_for_a_count_of_writes(
    sandbox: SandboxClient, data_dir: Path
) -> None:
    port_base = int(sandbox.url.rsplit(":", 1)[1])

    where = ["--port-base", str(port_base), "--data-dir", str(data_dir)]

    result = CliRunner().invoke(
        sandbox_cli, ["fault", "wecom", FAULT, "--param", "count=2", "--param", "how=drop", *where]
    )

    assert result.exit_code == 0, result.output
    assert "wecom: applied_no_answer at rate 1 for 2 write(s)" in result.output
    [fault] = [f for f in sandbox.faults() if f["kind"] == FAULT]
    assert fault["params"] == {"count": 2, "how": "drop"}


def test_served_without_a_way_to_hang_up_the_answer_is_cut_after_its_headers(
    store: SandboxStore, serve_app: Callable[[Any, int], None]
) -> None:
    port = free_port()
    emulator = WeComEmulator(store, f"http://127.0.0.1:{port}")
    emulator.seed(World(SEED), 5, 1)
    serve_app(FaultInjector(Starlette(routes=emulator.routes()), emulator, FaultCache(store)), port)
    store.set_fault("wecom", FAULT)
    wecom, text = WeCom(emulator.base_url, emulator.credentials()), a_text()

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        wecom.send(text)

    assert [e.body["text"] for e in store.ledger("wecom")] == [{"content": text}]
