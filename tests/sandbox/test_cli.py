"""`syncctl sandbox ...` commands, against a real server (or none) on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from sync_pipeline.devtools.sandbox.cli import sandbox
from sync_pipeline.devtools.sandbox.registry import free_port_base
from sync_pipeline.devtools.sandbox.server import SandboxServer, store_path
from tests.conftest import wait_for

COMMANDS = ("up", "info", "env", "seed", "ledger", "calls", "fault", "press", "settings")
NEEDS_SERVER = {
    "ledger": [],
    "calls": [],
    "fault": ["oa", "latency"],
    "press": ["oa", "--json", "{}"],
    "settings": ["wecom", "callback_url=http://127.0.0.1:1/"],
}


def run(*args: str) -> Result:
    return CliRunner().invoke(sandbox, list(args))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SandboxServer]:
    """A real sandbox on free ports, served from a thread of this process."""
    running = SandboxServer(store_path(tmp_path), free_port_base())
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(running.serve(on_ready=ready.set)), daemon=True
    )
    thread.start()
    assert ready.wait(30), "the sandbox did not start"
    yield running
    running.stop()
    thread.join(timeout=30)


def secrets_in(server: SandboxServer) -> list[str]:
    """Every credential value long enough to be recognised, with its first 12 characters (a
    shortened value gives a secret away just as well); URLs (Feishu's domain) are no secret."""
    values = [
        str(value)
        for entry in server.info().values()
        for value in entry.get("credentials", {}).values()
        if len(str(value)) >= 8 and not str(value).startswith("http")
    ]
    return values + [value[:12] for value in values if len(value) >= 12]


def where(server: SandboxServer) -> list[str]:
    return [
        "--port-base",
        str(server.port_base),
        "--data-dir",
        str(server.store.path.parent.parent),
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")

    assert result.exit_code == 0
    assert "--data-dir" in result.output


@pytest.mark.parametrize("command", sorted(NEEDS_SERVER))
def test_given_no_server_a_command_that_needs_it_says_so_in_one_line(
    command: str, tmp_path: Path
) -> None:
    port_base = free_port_base()

    result = run(command, *NEEDS_SERVER[command], "--port-base", str(port_base))

    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"http://127.0.0.1:{port_base}" in lines[0]
    assert "start it with: syncctl sandbox up" in lines[0]


def test_given_no_server_info_comes_from_the_store(tmp_path: Path) -> None:
    port_base = free_port_base()

    result = run("info", "--json", "--port-base", str(port_base), "--data-dir", str(tmp_path))

    info = json.loads(result.stdout)
    assert result.exit_code == 0
    assert info["oa"]["base_url"] == f"http://127.0.0.1:{port_base + 1}"
    assert info["control"]["credentials"]["admin_token"]


def test_info_credentials_are_the_same_with_the_server_up_or_down(
    server: SandboxServer,
) -> None:
    up = json.loads(run("info", "--json", *where(server)).stdout)
    server.stop()

    down = json.loads(run("info", "--json", *where(server)).stdout)

    assert up == down == server.info()


def test_info_prints_a_table_of_platforms(server: SandboxServer) -> None:
    result = run("info", *where(server))

    assert result.exit_code == 0
    assert "running" in result.stdout
    assert server.emulators["oa"].base_url in result.stdout


def test_seed_prints_counts(tmp_path: Path) -> None:
    result = run("seed", "--approvals", "10", "--checkin-days", "1", "--data-dir", str(tmp_path))

    assert result.exit_code == 0
    assert "Seeded world 1" in result.stdout
    assert "approvals" in result.stdout


def test_fault_sets_a_fault_the_server_reports(server: SandboxServer) -> None:
    result = run("fault", "oa", "latency", "--rate", "0.5", "--param", "ms=250", *where(server))

    faults = server.store.faults("oa")
    assert result.exit_code == 0
    assert [(f.kind, f.rate, f.params) for f in faults] == [("latency", 0.5, {"ms": 250})]


def test_fault_clear_removes_it(server: SandboxServer) -> None:
    run("fault", "oa", "error5xx", *where(server))

    result = run("fault", "oa", "--clear", *where(server))

    assert result.exit_code == 0
    assert server.store.faults("oa") == []


def test_fault_without_a_kind_is_a_usage_error(server: SandboxServer) -> None:
    assert run("fault", "oa", *where(server)).exit_code == 2


def test_fault_with_an_unknown_kind_is_a_usage_error(server: SandboxServer) -> None:
    assert run("fault", "oa", "gremlins", *where(server)).exit_code == 2


def test_ledger_json_lists_the_accepted_writes(server: SandboxServer) -> None:
    server.store.record("oa", "/rest/ofs/ReceiveRequestInfoByJson", "SYNC", {"flowid": "f1"})

    result = run("ledger", "--json", "--platform", "oa", *where(server))

    [entry] = json.loads(result.stdout)
    assert (entry["endpoint"], entry["body"]) == (
        "/rest/ofs/ReceiveRequestInfoByJson",
        {"flowid": "f1"},
    )


def test_ledger_platform_lists_only_that_platforms_writes(server: SandboxServer) -> None:
    server.store.record("oa", "/rest/ofs/ReceiveRequestInfoByJson", "SYNC", {})
    server.store.record("wecom", "/cgi-bin/message/send", "1000002", {})

    result = run("ledger", "--json", "--platform", "wecom", *where(server))

    assert [e["platform"] for e in json.loads(result.stdout)] == ["wecom"]


def test_ledger_since_skips_older_writes(server: SandboxServer) -> None:
    first = server.store.record("oa", "/a", "SYNC", {})
    server.store.record("oa", "/b", "SYNC", {})

    result = run("ledger", "--json", "--since", str(first), *where(server))

    assert [e["endpoint"] for e in json.loads(result.stdout)] == ["/b"]


def test_ledger_table_shows_each_write(server: SandboxServer) -> None:
    server.store.record("oa", "/api/kq/monthReport/save", "101", {"kqMonth": "2026-02"})

    result = run("ledger", *where(server))

    assert result.exit_code == 0
    assert "/api/kq/monthReport/save" in result.stdout


def test_calls_json_counts_requests(server: SandboxServer) -> None:
    requests.post(server.emulators["oa"].base_url + "/api/ec/dev/auth/regist", timeout=5)

    result = run("calls", "--json", "--platform", "oa", *where(server))

    assert json.loads(result.stdout) == {"oa POST /api/ec/dev/auth/regist": 1}


def test_press_that_fails_exits_1_with_the_reason(server: SandboxServer) -> None:
    action = json.dumps({"action": "approve", "requestId": "R000001", "by": "1"})

    result = run("press", "oa", "--json", action, *where(server))

    assert result.exit_code == 1
    assert "NO_PERMISSION" in result.stderr


def test_press_with_a_json_that_is_not_an_object_is_a_usage_error(server: SandboxServer) -> None:
    assert run("press", "oa", "--json", "[1]", *where(server)).exit_code == 2


def test_given_up_it_names_each_credential_and_where_to_read_it_but_prints_no_value(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-m", "sync_pipeline.devtools.sandbox.cli", "up"]
    command += ["--port-base", str(free_port_base()), "--data-dir", str(tmp_path)]
    out = tmp_path / "up.txt"
    with out.open("wb") as stdout:  # wide, so that nothing is cut to fit 80 columns
        proc = subprocess.Popen(command, stdout=stdout, env={**os.environ, "COLUMNS": "400"})
    try:
        wait_for(lambda: "stop with Ctrl-C" in out.read_text(), 30, what="the sandbox's banner")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    printed = out.read_text()
    server = SandboxServer(store_path(tmp_path))

    assert [value for value in secrets_in(server) if value in printed] == []
    assert "corpsecret" in printed
    assert "syncctl sandbox env" in printed


def test_given_info_without_json_it_names_the_credentials_but_prints_no_value(
    server: SandboxServer,
) -> None:
    result = run("info", *where(server))

    assert [value for value in secrets_in(server) if value in result.stdout] == []
    assert result.exit_code == 0
    assert "corpsecret" in result.stdout
    assert "syncctl sandbox env" in result.stdout


def test_given_env_it_exports_every_credential_the_operator_asked_for(
    server: SandboxServer,
) -> None:
    result = run("env", *where(server))

    secret = server.info()["wecom"]["credentials"]["corpsecret"]
    assert result.exit_code == 0
    assert f"export SANDBOX_WECOM_CORPSECRET={secret}" in result.stdout.splitlines()


@pytest.mark.parametrize("command", [["ledger"], ["calls"], ["info", "--json"], ["env"]])
def test_given_the_data_dir_of_another_sandbox_a_command_says_so_in_one_line(
    server: SandboxServer, tmp_path: Path, command: list[str]
) -> None:
    other = tmp_path / "other"
    SandboxServer(store_path(other), server.port_base)  # a store with a token of its own

    result = run(*command, "--port-base", str(server.port_base), "--data-dir", str(other))

    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2
    assert len(lines) == 1
    assert "--data-dir" in lines[0]
    assert server.admin_token not in result.output


def test_given_settings_then_the_emulator_keeps_them(server: SandboxServer) -> None:
    url = "http://webhooks:18700/webhooks/sandbox_wecom"

    result = run("settings", "wecom", f"callback_url={url}", "x=1", *where(server))

    assert result.exit_code == 0, result.output
    assert server.store.setting("wecom", "callback_url") == url
    assert server.store.setting("wecom", "x") == "1"


def test_given_a_setting_without_a_value_then_it_is_a_usage_error(server: SandboxServer) -> None:
    result = run("settings", "wecom", "callback_url", *where(server))

    assert result.exit_code == 2
    assert "is not KEY=VALUE" in result.output
