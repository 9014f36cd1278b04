"""`syncctl demo` from nothing on embedded engines, and Ctrl-C in the middle of it.

These tests unset REDIS_URL / DATABASE_URL, so the suite always exercises the fresh-machine
path, whatever servers CI provides.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.embedded


def embedded_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        SYNC_DATA_DIR=str(workdir / ".sync-data"),
        SYNC_CONFIG_DIR=str(ROOT / "config"),
        PYTHONPATH=str(ROOT),
    )
    return env


def processes_using(data_dir: Path) -> list[int]:
    """Pids whose environment names this data dir (children inherit SYNC_DATA_DIR)."""
    needle = f"SYNC_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def port_open(port_file: Path) -> bool:
    if not port_file.exists():
        return False
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", int(port_file.read_text()))) == 0


def run_demo(workdir: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "syncctl"
    return subprocess.run(
        [str(exe), "demo"],
        cwd=workdir,
        env=embedded_env(workdir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_from_nothing_ends_with_its_summary_and_leaves_nothing(tmp_path: Path) -> None:
    result = run_demo(tmp_path)

    assert result.returncode == 0, result.stderr
    assert "sync_pipeline demo: summary" in result.stdout
    assert "redis-server" in result.stdout
    assert "postgres" in result.stdout
    assert processes_using(tmp_path / ".sync-data") == []


def test_ctrl_c_during_demo_leaves_no_process_and_the_next_demo_works(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "syncctl"
    demo = subprocess.Popen(
        [str(exe), "demo"],
        cwd=tmp_path,
        env=embedded_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    data = tmp_path / ".sync-data"
    # Interrupt once Beat is up: the sandbox, the worker and Beat are all running by then.
    wait_for((data / "demo" / "logs" / "beat.log").exists, 120, what="the demo's Beat")
    os.killpg(demo.pid, signal.SIGINT)
    output, _ = demo.communicate(timeout=120)

    assert demo.returncode == 130, output
    assert "interrupted" in output
    wait_for(lambda: processes_using(data) == [], 30, what="every child to exit")
    assert not port_open(data / "redis" / "port")
    assert not port_open(data / "postgres" / "port")

    again = run_demo(tmp_path)

    assert again.returncode == 0, again.stderr
    assert "sync_pipeline demo: summary" in again.stdout
    assert "exactly once" in again.stdout
