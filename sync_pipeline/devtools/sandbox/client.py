"""A client of the sandbox's control API, and the sandbox as a child process.

Used by `make demo`, the end-to-end tests and the benchmarks to start the sandbox, read its
ledger and call counters, inject faults and act as OA users. Every call but the health check
carries the admin token, which the client reads from the sandbox's store (server.py says why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict, Unpack

import requests

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.registry import free_port_base, load_registry, port_for
from sync_pipeline.devtools.sandbox.seed import seed_all
from sync_pipeline.devtools.sandbox.server import build_emulators, env_vars, store_path

START_TIMEOUT_S = 60.0


class SandboxClient:
    """The control API on 127.0.0.1:<port base>, with the sandbox's admin token."""

    def __init__(
        self, port_base: int, token: str, timeout_s: float = 30.0, pid: int | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port_for('control', port_base)}"
        self.timeout_s = timeout_s
        self.pid = pid  # the server's process, when running_sandbox started it
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self._info: dict[str, dict[str, Any]] | None = None

    # -- reading -------------------------------------------------------------------------------
    def healthy(self) -> bool:
        """Whether the server answers; needs no token."""
        try:
            answer = requests.get(f"{self.url}/_sandbox/health", timeout=self.timeout_s)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def info(self) -> dict[str, dict[str, Any]]:
        if self._info is None:
            answer = self.session.get(f"{self.url}/_sandbox/info", timeout=self.timeout_s)
            answer.raise_for_status()
            self._info = answer.json()
        return self._info

    def env(self) -> dict[str, str]:
        """SANDBOX_* variables for the shipped config/connectors.yaml."""
        return env_vars(self.info())

    def ledger(self, platform: str | None = None, since_seq: int = 0) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"since_seq": since_seq}
        if platform:
            params["platform"] = platform
        answer = self.session.get(f"{self.url}/_sandbox/ledger", params=params, timeout=60)
        answer.raise_for_status()
        entries: list[dict[str, Any]] = answer.json()["entries"]
        return entries

    def last_seq(self) -> int:
        entries = self.ledger()
        return int(entries[-1]["seq"]) if entries else 0

    def calls(self, platform: str | None = None) -> dict[str, int]:
        params = {"platform": platform} if platform else {}
        answer = self.session.get(f"{self.url}/_sandbox/calls", params=params, timeout=30)
        answer.raise_for_status()
        calls: dict[str, int] = answer.json()["calls"]  # "platform METHOD /path" -> count
        return calls

    # -- acting --------------------------------------------------------------------------------
    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        answer = self.session.post(f"{self.url}{path}", json=dict(body), timeout=self.timeout_s)
        if answer.status_code >= 400:
            raise RuntimeError(f"sandbox {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def fault(
        self,
        platform: str,
        kind: str,
        rate: float = 1.0,
        for_s: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        body = {"platform": platform, "kind": kind, "rate": rate, "params": dict(params or {})}
        if for_s is not None:
            body["for_s"] = for_s
        return self._post("/_sandbox/fault", body)

    def faults(self) -> list[dict[str, Any]]:
        """The faults in force: {platform, kind, rate, until_ms, params} each."""
        answer = self.session.get(f"{self.url}/_sandbox/faults", timeout=self.timeout_s)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["faults"]
        return found

    def clear_faults(self, platform: str | None = None) -> None:
        params = {"platform": platform} if platform else {}
        answer = self.session.delete(f"{self.url}/_sandbox/fault", params=params, timeout=30)
        answer.raise_for_status()

    def settings(self, platform: str, values: Mapping[str, Any]) -> Any:
        return self._post(f"/_sandbox/{platform}/settings", values)

    def create_approval(self, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/_sandbox/oa/approvals", fields)
        return result

    def transition(self, request_id: str, action: str, by: str, **extra: Any) -> dict[str, Any]:
        body = {"action": action, "by": by, **extra}
        result: dict[str, Any] = self._post(f"/_sandbox/oa/approvals/{request_id}/transition", body)
        return result

    def press(self, platform: str, action: Mapping[str, Any]) -> Any:
        return self._post(f"/_sandbox/{platform}/press", action)


@contextmanager
def running_sandbox(
    data_dir: Path,
    port_base: int,
    *,
    env: Mapping[str, str] | None = None,
    cpu: int | None = None,
) -> Iterator[SandboxClient]:
    """`syncctl sandbox up` as a child process in its own session (pinned to one CPU when
    `cpu` is given), stopped with SIGTERM on the way out."""
    command = [sys.executable, "-m", "sync_pipeline.devtools.sandbox.cli", "up"]
    command += ["--port-base", str(port_base), "--data-dir", str(data_dir)]
    data_dir.mkdir(parents=True, exist_ok=True)
    token = SandboxStore(store_path(data_dir)).admin_token()  # the server finds it there

    def pin() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    log = open(data_dir / "sandbox.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=pin,  # noqa: PLW1509 - only sets the CPU affinity before exec
    )
    try:
        yield _wait_until_up(SandboxClient(port_base, token, pid=proc.pid), proc, data_dir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


class Seeding(TypedDict, total=False):
    """seed_all's choices of world; what is left out takes its default."""

    seed: int
    approvals: int
    checkin_days: int
    progress_per_project: int


def seeded_store(
    data_dir: Path,
    port_base: int,
    *,
    platforms: Collection[str] | None = None,
    **seeding: Unpack[Seeding],
) -> SandboxStore:
    """The store of a sandbox to serve at `port_base`, seeded from the world `seeding` names:
    every platform, or only `platforms` (the others stay empty)."""
    store = SandboxStore(store_path(data_dir))
    emulators = build_emulators(store, load_registry(), port_base)
    if platforms is not None:
        emulators = {platform: emulators[platform] for platform in platforms}
    seed_all(store, emulators=emulators, **seeding)
    return store


@contextmanager
def seeded_sandbox(
    data_dir: Path, *, platforms: Collection[str] | None = None, **seeding: Unpack[Seeding]
) -> Iterator[SandboxClient]:
    """A sandbox seeded as `seeded_store` seeds it, served on free ports until the block ends."""
    port_base = free_port_base()
    seeded_store(data_dir, port_base, platforms=platforms, **seeding)
    with running_sandbox(data_dir, port_base) as client:
        yield client


def _wait_until_up(
    client: SandboxClient, proc: subprocess.Popen[bytes], data_dir: Path
) -> SandboxClient:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (data_dir / "sandbox.log").read_text("utf-8", "replace").strip()[-500:]
            raise RuntimeError(f"the sandbox exited with {proc.returncode}: {tail}")
        if client.healthy():
            client.info()
            return client
        time.sleep(0.1)
    raise RuntimeError(f"the sandbox did not answer within {START_TIMEOUT_S:g} s")
