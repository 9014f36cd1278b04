"""`syncctl bench sandbox`: how fast the sandbox seeds, and how fast the OA lists.

Seeding runs in this process against a fresh store; listing runs against a real
`syncctl sandbox up` subprocess, so client and server do not share a GIL. The client is one
sequential E9 client paging the modified-since list with pageSize 100, as the sync does.

The server is pinned to one CPU and the baseline (the same pages read straight from the store)
runs on that same CPU, so the ratio compares like with like; the client runs on the other CPUs
when there are any. Figures are refused, not reported, when a side listed the wrong count. The
store lives in a temporary directory that is removed afterwards unless `data_dir` is given.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from sync_pipeline.devtools.sandbox.client import running_sandbox
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import rsa_encrypt
from sync_pipeline.devtools.sandbox.registry import free_port_base, load_registry
from sync_pipeline.devtools.sandbox.seed import seed_all
from sync_pipeline.devtools.sandbox.server import build_emulators, store_path

PAGE_SIZE = 100


class Miscounted(Exception):
    """A side listed another number of approvals than were seeded: no figure is honest then."""

    def __init__(self, seeded: int, listed: int, baseline_listed: int) -> None:
        super().__init__(seeded, listed, baseline_listed)
        self.seeded, self.listed, self.baseline_listed = seeded, listed, baseline_listed

    def __str__(self) -> str:
        return (
            f"bench sandbox: seeded {self.seeded} approvals, but the OA list gave {self.listed}"
            f" and the store {self.baseline_listed}; no figures reported"
        )


def bench_sandbox(approvals: int = 100_000, data_dir: Path | None = None) -> dict[str, Any]:
    """Seed `approvals` into every emulator, then page through the OA list once."""
    if data_dir is not None:
        return _bench(approvals, data_dir)
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as scratch:
        return _bench(approvals, Path(scratch))


def _bench(approvals: int, data_dir: Path) -> dict[str, Any]:
    store = SandboxStore(store_path(data_dir))
    port_base = free_port_base()
    emulators = build_emulators(store, load_registry(), port_base)
    started = time.monotonic()
    counts = seed_all(store, approvals=approvals, emulators=emulators)
    seed_s = time.monotonic() - started
    server_cpu = min(os.sched_getaffinity(0))
    with _on_cpus({server_cpu}):
        baseline_listed, baseline_s = _page_store(store)
    with running_sandbox(data_dir, port_base, cpu=server_cpu) as control:
        server_cpus = sorted(os.sched_getaffinity(control.pid)) if control.pid else []
        control.settings("oa", {"rate_limit_scale": 0})  # measure the server, not the throttle
        oa = control.info()["oa"]
        client_cpus = (os.sched_getaffinity(0) - {server_cpu}) or {server_cpu}
        with _on_cpus(client_cpus):
            listed, list_s = _page_everything(str(oa["base_url"]), oa["credentials"])
    if not listed == baseline_listed == approvals:
        raise Miscounted(approvals, listed, baseline_listed)
    listed_per_s = listed / list_s if list_s else 0.0
    baseline_per_s = baseline_listed / baseline_s if baseline_s else 0.0
    return {
        "approvals": approvals,
        "platforms": sorted(counts),
        "seed_s": round(seed_s, 2),
        "seed_approvals_per_s": round(approvals / seed_s) if seed_s else None,
        "listed": listed,
        "list_s": round(list_s, 2),
        "listed_per_s": round(listed_per_s),
        "baseline_listed": baseline_listed,
        "baseline_s": round(baseline_s, 2),
        "baseline_listed_per_s": round(baseline_per_s),
        "ratio_to_baseline": round(listed_per_s / baseline_per_s, 3) if baseline_per_s else None,
        "page_size": PAGE_SIZE,
        "server_cpus": len(server_cpus),
        "server_cpu_ids": server_cpus,
        "client_cpu_ids": sorted(client_cpus),
    }


@contextmanager
def _on_cpus(cpus: set[int]) -> Iterator[None]:
    """Run this process on `cpus` for a while, then where it ran before."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _page_store(store: SandboxStore) -> tuple[int, float]:
    """The baseline: the same pages read straight from the store, no HTTP, no JSON answer."""
    listed, offset = 0, 0
    started = time.monotonic()
    while True:
        rows = store.list("oa", "approval", offset=offset, limit=PAGE_SIZE)
        listed += len(rows)
        offset += PAGE_SIZE
        if len(rows) < PAGE_SIZE:
            return listed, time.monotonic() - started


def _page_everything(base_url: str, creds: dict[str, str]) -> tuple[int, float]:
    """One E9 client: applytoken, then every page of the modified-since list."""
    session = requests.Session()
    token = session.post(
        f"{base_url}/api/ec/dev/auth/applytoken",
        headers={"appid": creds["appid"], "secret": rsa_encrypt(creds["spk"], creds["secret"])},
        timeout=10,
    ).json()["token"]
    headers = {"appid": creds["appid"], "token": token, "userid": rsa_encrypt(creds["spk"], "1")}
    conditions = json.dumps({"lastOperateTimeFrom": "2000-01-01 00:00:00"})
    url = f"{base_url}/api/workflow/paService/getAllWorkflowRequestList"
    listed, page = 0, 1
    started = time.monotonic()
    while True:
        form = {"pageNo": page, "pageSize": PAGE_SIZE, "conditions": conditions}
        items = session.post(url, headers=headers, data=form, timeout=30).json()
        if not isinstance(items, list):
            raise TypeError(f"the OA list answered {items!r} on page {page}")
        listed += len(items)
        if len(items) < PAGE_SIZE:
            return listed, time.monotonic() - started
        page += 1
