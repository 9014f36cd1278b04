"""`syncctl sandbox up` as a real subprocess: control API, faults, restarts and signals."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.registry import free_port_base
from sync_pipeline.devtools.sandbox.server import store_path
from tests.sandbox.test_oa import E9, receiver, wait_for

__all__ = ["receiver"]  # a fixture these tests use, shared with the OA contract tests

REGIST = "/api/ec/dev/auth/regist"
PLATFORM_ORDER = ["control", "oa", "wecom", "dingtalk", "feishu", "agora", "seeyon", "slack"]


class Sandbox:
    """One `syncctl sandbox up` process and what a test needs to talk to it."""

    def __init__(self, data_dir: Path, port_base: int | None = None) -> None:
        self.data_dir = data_dir
        self.port_base = port_base or free_port_base()
        self.control = f"http://127.0.0.1:{self.port_base}"
        self.oa = f"http://127.0.0.1:{self.port_base + 1}"
        self.stderr = data_dir / f"stderr-{time.monotonic_ns()}.txt"
        command = [sys.executable, "-m", "sync_pipeline.cli", "sandbox", "up"]
        command += ["--port-base", str(self.port_base), "--data-dir", str(data_dir)]
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)

    def wait_ready(self, deadline_s: float = 30) -> Sandbox:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr.read_text()
            try:  # any answer means every port is bound and the token is in the store
                requests.get(f"{self.control}/_sandbox/health", timeout=2)
            except requests.ConnectionError:
                time.sleep(0.05)
                continue
            self.info = self.get("/_sandbox/info").json()
            return self
        raise AssertionError(f"sandbox not ready in {deadline_s} s: {self.stderr.read_text()}")

    @property
    def token(self) -> str:
        """The admin token, where the sandbox keeps it: in its store, in its data dir."""
        token = SandboxStore(store_path(self.data_dir)).setting("sandbox", "admin_token")
        assert token is not None
        return token

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.control}{path}", params=params, headers=self.auth, timeout=5)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.control}{path}", json=body, headers=self.auth, timeout=30)

    def fault(self, kind: str, platform: str = "oa", **body: Any) -> None:
        answer = self.post("/_sandbox/fault", {"platform": platform, "kind": kind, **body})
        assert answer.status_code == 200, answer.text

    def clear(self, platform: str | None = "oa") -> None:
        """Clear one platform's faults; None clears every platform's."""
        requests.delete(
            f"{self.control}/_sandbox/fault",
            params={"platform": platform} if platform else {},
            headers=self.auth,
            timeout=5,
        )

    def url(self, platform: str) -> str:
        return str(self.info[platform]["base_url"])

    def e9(self) -> E9:
        client = E9(self.oa, self.info["oa"]["credentials"]["appid"])
        client.regist()
        client.applytoken()
        return client

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = Sandbox(tmp_path_factory.mktemp("sandbox")).wait_ready()
    seeded = running.post("/_sandbox/seed", {"seed": 3, "approvals": 30, "checkin_days": 2})
    assert seeded.status_code == 200, seeded.text
    yield running
    running.stop()


@pytest.fixture
def oa(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox, with every OA fault cleared afterwards."""
    yield sandbox
    sandbox.clear()


@pytest.fixture
def any_platform(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared sandbox, with every platform's faults cleared afterwards."""
    yield sandbox
    sandbox.clear(None)


def refused(url: str) -> bool:
    try:
        requests.post(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


def child_pids(pid: int) -> list[str]:
    """Linux keeps each thread's children in /proc/<pid>/task/<tid>/children."""
    found: list[str] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        found += listing.read_text().split()
    return found


def poll(condition: Any, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


# -- control API ------------------------------------------------------------------------------
def test_info_names_every_served_platform_with_url_and_credentials(sandbox: Sandbox) -> None:
    info = sandbox.info

    assert info["control"]["base_url"] == sandbox.control
    assert info["oa"]["base_url"] == sandbox.oa
    assert set(info["oa"]["credentials"]) >= {"appid", "secret", "spk", "webhook_secret"}
    for platform, entry in info.items():
        offset = int(entry["base_url"].rsplit(":", 1)[1]) - sandbox.port_base
        assert offset == PLATFORM_ORDER.index(platform)


def test_mutation_without_the_admin_token_is_refused(sandbox: Sandbox) -> None:
    answer = requests.post(f"{sandbox.control}/_sandbox/seed", json={}, timeout=5)

    assert answer.status_code == 401


@pytest.mark.parametrize(
    "path", ["/_sandbox/info", "/_sandbox/ledger", "/_sandbox/calls", "/_sandbox/faults"]
)
def test_given_no_admin_token_a_read_is_refused_and_reveals_nothing(
    sandbox: Sandbox, path: str
) -> None:
    answer = requests.get(f"{sandbox.control}{path}", timeout=5)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert sandbox.token not in answer.text
    assert sandbox.info["oa"]["credentials"]["secret"] not in answer.text


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong", "Bearer ", "Basic YWRtaW46YWRtaW4=", "{token}", "Bearer {token}x"],
)
def test_given_a_wrong_admin_token_info_is_refused(sandbox: Sandbox, authorization: str) -> None:
    headers = {"Authorization": authorization.format(token=sandbox.token)}

    answer = requests.get(f"{sandbox.control}/_sandbox/info", headers=headers, timeout=5)

    assert answer.status_code == 401


def test_given_the_admin_token_in_any_case_of_bearer_info_answers(sandbox: Sandbox) -> None:
    headers = {"Authorization": f"bearer {sandbox.token}"}

    answer = requests.get(f"{sandbox.control}/_sandbox/info", headers=headers, timeout=5)

    assert answer.status_code == 200


def test_health_answers_without_the_token_and_says_nothing_more(sandbox: Sandbox) -> None:
    answer = requests.get(f"{sandbox.control}/_sandbox/health", timeout=5)

    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


def test_given_a_new_store_only_its_owner_may_read_it(tmp_path: Path) -> None:
    store = SandboxStore(store_path(tmp_path))  # where the admin token and credentials live

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700


def test_control_api_refuses_a_foreign_host_header(sandbox: Sandbox) -> None:
    answer = requests.get(
        f"{sandbox.control}/_sandbox/info", headers={"Host": "evil.example"}, timeout=5
    )

    assert answer.status_code == 400


def test_calls_counts_each_request_by_method_and_path(sandbox: Sandbox) -> None:
    before = sandbox.get("/_sandbox/calls").json()["calls"]

    requests.post(sandbox.oa + REGIST, timeout=5)
    requests.post(sandbox.oa + REGIST, timeout=5)

    after = sandbox.get("/_sandbox/calls").json()["calls"]
    key = f"oa POST {REGIST}"
    assert after[key] - before.get(key, 0) == 2


def test_ledger_lists_writes_after_a_seq(sandbox: Sandbox) -> None:
    client = sandbox.e9()
    entries = sandbox.get("/_sandbox/ledger").json()["entries"]
    last = entries[-1]["seq"] if entries else 0
    main = json.dumps([{"fieldName": "subject", "fieldValue": "Chairs"}])

    client.post("/api/workflow/paService/doCreateRequest", "105", workflowId="1003", mainData=main)

    new = sandbox.get("/_sandbox/ledger", platform="oa", since_seq=last).json()
    assert [e["endpoint"] for e in new["entries"]] == ["/api/workflow/paService/doCreateRequest"]


def test_press_with_an_impossible_action_answers_409_with_the_reason(sandbox: Sandbox) -> None:
    action = {"action": "approve", "requestId": "R999999", "by": "E00003"}

    answer = sandbox.post("/_sandbox/oa/press", action)

    assert answer.status_code == 409
    assert "NO_PERMISSION" in answer.json()["error"]


def test_press_on_an_unknown_platform_answers_404(sandbox: Sandbox) -> None:
    assert sandbox.post("/_sandbox/teams/press", {}).status_code == 404


def test_admin_transition_moves_an_approval_and_fires_the_webhook(
    sandbox: Sandbox, receiver
) -> None:
    url, received = receiver
    sandbox.post("/_sandbox/oa/settings", {"webhook_url": url})
    created = sandbox.post(
        "/_sandbox/oa/approvals", {"applicant": "E00002", "approvers": ["E00003"]}
    ).json()

    moved = sandbox.post(
        f"/_sandbox/oa/approvals/{created['requestId']}/transition",
        {"action": "approve", "by": "E00003"},
    )

    assert moved.json()["status"] == "approved"
    wait_for(received, 2)
    events = [json.loads(body)["event"] for _, body in received]
    assert events == ["request.created", "request.approved"]


# -- faults, each observable over HTTP ---------------------------------------------------------
def test_latency_fault_delays_answers(oa: Sandbox) -> None:
    oa.fault("latency", params={"ms": 400})

    started = time.monotonic()
    requests.post(oa.oa + REGIST, timeout=5)

    assert time.monotonic() - started >= 0.4


def test_error5xx_fault_answers_a_plain_500_or_503(oa: Sandbox) -> None:
    oa.fault("error5xx")

    answer = requests.post(oa.oa + REGIST, timeout=5)

    assert answer.status_code in (500, 503)
    assert answer.headers["content-type"].startswith("text/plain")


def test_error5xx_fault_at_rate_one_half_fails_about_half_the_requests(oa: Sandbox) -> None:
    oa.fault("error5xx", rate=0.5)

    statuses = [requests.post(oa.oa + REGIST, timeout=5).status_code for _ in range(60)]

    failed = sum(status >= 500 for status in statuses)
    assert 10 <= failed <= 50  # binomial(60, 0.5): outside this is a 1-in-a-million draw


def test_ratelimit_fault_answers_the_vendors_throttle(oa: Sandbox) -> None:
    oa.fault("ratelimit")

    answer = requests.post(oa.oa + REGIST, timeout=5)

    assert answer.status_code == 429
    assert answer.json()["code"] == "REQUEST_FREQUENCY_LIMIT"


@pytest.mark.parametrize(
    ("platform", "status", "field", "value"),
    [
        ("oa", 429, "code", "REQUEST_FREQUENCY_LIMIT"),
        ("wecom", 200, "errcode", 45009),
        ("dingtalk", 403, "code", "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"),
        ("feishu", 429, "code", 99991400),
        ("agora", 429, "error", "reach_limit"),
        ("seeyon", 429, "code", "1429"),
        ("slack", 429, "error", "ratelimited"),
    ],
)
def test_ratelimit_fault_answers_each_vendors_own_throttle(
    any_platform: Sandbox, platform: str, status: int, field: str, value: Any
) -> None:
    any_platform.fault("ratelimit", platform=platform)

    answer = requests.post(any_platform.url(platform) + "/any/path", timeout=5)

    assert answer.status_code == status
    assert answer.json()[field] == value


def test_malformed_fault_answers_json_content_type_that_is_not_json(oa: Sandbox) -> None:
    oa.fault("malformed")

    answer = requests.post(oa.oa + REGIST, timeout=5)

    assert answer.headers["content-type"] == "application/json"
    with pytest.raises(ValueError, match="Expecting value"):
        answer.json()


def test_truncated_fault_cuts_the_real_body_in_half(oa: Sandbox) -> None:
    real = requests.post(oa.oa + REGIST, timeout=5).content
    oa.fault("truncated")

    cut = requests.post(oa.oa + REGIST, timeout=5).content

    assert cut == real[: len(real) // 2]


def test_token_expire_fault_expires_every_token_now(oa: Sandbox) -> None:
    client = oa.e9()
    assert isinstance(client.page("All"), list)

    oa.fault("token_expire")

    assert client.page("All")["msg"].startswith("token不存在或者超时")
    faults = oa.get("/_sandbox/faults").json()["faults"]
    assert [f for f in faults if f["kind"] == "token_expire"] == []  # one-shot


def test_down_fault_refuses_connections_then_comes_back(oa: Sandbox) -> None:
    oa.fault("down", for_s=1.0)

    assert poll(lambda: refused(oa.oa + REGIST), deadline_s=1.0)
    assert poll(lambda: not refused(oa.oa + REGIST), deadline_s=5.0)


def test_duplicate_webhook_fault_sends_each_webhook_twice(oa: Sandbox, receiver) -> None:
    url, received = receiver
    oa.post("/_sandbox/oa/settings", {"webhook_url": url})
    oa.fault("duplicate_webhook")

    oa.post("/_sandbox/oa/approvals", {"applicant": "E00004", "approvers": ["E00005"]})

    wait_for(received, 2)
    assert len(received) == 2
    assert received[0][1] == received[1][1]


def test_out_of_order_fault_lets_a_later_webhook_overtake(oa: Sandbox, receiver) -> None:
    url, received = receiver
    oa.post("/_sandbox/oa/settings", {"webhook_url": url})
    oa.fault("out_of_order", params={"delay_ms": 800})
    first = oa.post("/_sandbox/oa/approvals", {"applicant": "E00006", "approvers": ["E00007"]})
    time.sleep(0.3)  # the courier thread takes the first webhook while the fault still holds
    oa.clear()

    second = oa.post("/_sandbox/oa/approvals", {"applicant": "E00008", "approvers": ["E00009"]})

    wait_for(received, 2)
    order = [json.loads(body)["requestId"] for _, body in received]
    assert order == [second.json()["requestId"], first.json()["requestId"]]


# -- lifecycle --------------------------------------------------------------------------------
def test_restart_keeps_state(tmp_path: Path) -> None:
    first = Sandbox(tmp_path).wait_ready()
    first.post("/_sandbox/seed", {"approvals": 5})
    created = first.post("/_sandbox/oa/approvals", {"applicant": "E00002", "approvers": ["101"]})
    request_id = created.json()["requestId"]
    first.e9().post("/api/workflow/paService/saveRequestLog", "102", requestId=request_id)
    assert first.stop() == 0

    again = Sandbox(tmp_path, first.port_base).wait_ready()
    try:
        status = again.e9().get("/api/workflow/paService/getRequestStatus", requestId=request_id)
        ledger = again.get("/_sandbox/ledger").json()["entries"]
        assert status["code"] == "SUCCESS"
        assert [e["endpoint"] for e in ledger] == ["/api/workflow/paService/saveRequestLog"]
        assert again.info == first.info
    finally:
        again.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_sandbox_cleanly(tmp_path: Path, sig: int) -> None:
    running = Sandbox(tmp_path).wait_ready()
    children = child_pids(running.proc.pid)

    code = running.stop(sig)

    assert code == 0
    assert children == []
    assert refused(running.control + "/_sandbox/health")
    assert "Traceback" not in running.stderr.read_text()


def test_a_second_sandbox_on_the_same_ports_exits_2_with_one_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    second = Sandbox(tmp_path, sandbox.port_base)

    code = second.proc.wait(timeout=30)

    lines = second.stderr.read_text().strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert f"port {sandbox.port_base}" in lines[0]


def test_given_an_emulator_port_taken_the_sandbox_exits_before_its_control_port_answers(
    tmp_path: Path,
) -> None:
    base = free_port_base()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 3))  # DingTalk's port, held by someone else
        taken.listen(1)
        sandbox = Sandbox(tmp_path, base)
        code = sandbox.proc.wait(timeout=60)
    assert code != 0
    assert refused(f"{sandbox.control}/_sandbox/health")
    assert f"port {base + 3}" in sandbox.stderr.read_text()


def test_port_bases_lie_below_the_kernels_ephemeral_ports() -> None:
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    bases = {free_port_base() for _ in range(20)}
    assert all(base + 10 < ephemeral_low for base in bases), sorted(bases)


def test_the_control_api_keeps_an_idle_connection_open_past_uvicorns_five_seconds(
    sandbox: Sandbox,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port_base, timeout=5)
    conn.request("GET", "/_sandbox/health")
    assert conn.getresponse().read() is not None  # read whole: nothing left on the socket
    assert conn.sock is not None
    conn.sock.settimeout(7)
    with pytest.raises(TimeoutError):  # still open and silent past 5 s: not closed
        conn.sock.recv(1, socket.MSG_PEEK)
    conn.request("GET", "/_sandbox/health")
    assert conn.getresponse().status == 200
    conn.close()
