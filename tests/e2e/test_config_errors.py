"""A bad configuration stops every command before it does anything: one line per problem,
naming the file and where in it, exit code 2, never a traceback."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from sync_pipeline.processes import free_port
from tests.conftest import ROOT, syncctl

ENV_NAME = re.compile(r"env: ([A-Z_][A-Z0-9_]*)")


def sandbox_secrets() -> dict[str, str]:
    """A value for every variable the shipped connectors.yaml names."""
    text = (ROOT / "config" / "connectors.yaml").read_text("utf-8")
    return {name: f"value-of-{name}" for name in ENV_NAME.findall(text)}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the shipped config, to break on purpose."""
    copied = tmp_path / "config"
    shutil.copytree(ROOT / "config", copied)
    return copied


@pytest.fixture
def env(service_env: dict[str, str], config_dir: Path) -> dict[str, str]:
    return {**service_env, **sandbox_secrets(), "SYNC_CONFIG_DIR": str(config_dir)}


def one_line_exit_2(result) -> str:
    """The only line on stderr of a command that could not run."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    return str(line)


COMMANDS = {
    "check": ["check"],
    "run": ["run", "approvals_to_wecom"],
    "webhooks serve": ["webhooks", "serve", "--port", "0"],
    "worker": ["worker"],
    "beat": ["beat"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_given_a_byte_that_is_not_utf8_in_a_comment_each_command_names_file_and_line(
    command: str, env: dict[str, str], config_dir: Path
) -> None:
    flow = config_dir / "flows" / "approvals_to_dingtalk.yaml"
    flow.write_bytes(b"# caf\xe9\n" + flow.read_bytes())
    argv = [a if a != "0" else str(free_port()) for a in COMMANDS[command]]

    line = one_line_exit_2(syncctl(*argv, env=env, timeout=60))

    assert line == (
        f"syncctl: {flow}: line 1, column 6: expected UTF-8 text; byte 0xe9 is not "
        "(save it as UTF-8)"
    )


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_given_an_invalid_flow_worker_and_beat_refuse_to_start(
    command: str, env: dict[str, str], config_dir: Path
) -> None:
    flow = config_dir / "flows" / "approvals_to_wecom.yaml"
    flow.write_text(flow.read_text("utf-8").replace("page_size: 100", "page_size: 0"), "utf-8")

    line = one_line_exit_2(syncctl(command, env=env, timeout=60))

    assert line.startswith(f"syncctl: {flow}: page_size: Must be greater than or equal to 1")


def test_given_a_yaml_syntax_error_check_names_file_line_and_column(
    env: dict[str, str], config_dir: Path
) -> None:
    flow = config_dir / "flows" / "approvals_to_wecom.yaml"
    flow.write_text("source: {connector: sandbox_oa\ntarget: x\n", "utf-8")

    line = one_line_exit_2(syncctl("check", env=env, timeout=60))

    assert line.startswith(f"syncctl: {flow}: line 2, column 7: expected valid YAML:")


def test_given_an_unknown_alert_kind_then_check_names_the_file_and_key_and_exits_2(
    env: dict[str, str], config_dir: Path
) -> None:
    alerts = config_dir / "alerts.yaml"
    alerts.write_text(alerts.read_text("utf-8").replace("kind: quota", "kind: disk_full"), "utf-8")

    line = one_line_exit_2(syncctl("check", env=env))

    assert line.startswith(f"syncctl: {alerts}: rules.quota.kind: expected one of: ")
