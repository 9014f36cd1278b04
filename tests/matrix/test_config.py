"""The Matrix example configuration (config/examples/matrix) with the shipped OA: it loads,
its flow is disabled until enabled, Beat reads Matrix with /sync only for an enabled flow, and
what Matrix cannot have (a webhook) is refused at load with the file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from sync_pipeline.config.connector import Vendor
from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.matrix import MatrixOptions
from sync_pipeline.errors import ConfigError
from sync_pipeline.pipeline import matrix_sync
from tests.conftest import ROOT
from workers.beat import matrix_schedule

EXAMPLE = ROOT / "config" / "examples" / "matrix"
FLOW = "approvals_to_matrix"
ENV = {
    "SANDBOX_OA_APPID": "a",
    "SANDBOX_OA_SECRET": "s",
    "SANDBOX_OA_SPK": "k",
    "SANDBOX_OA_OFS_SYSCODE": "c",
    "MATRIX_BOT_ACCESS_TOKEN": "syt_bot",
}


def deployment(tmp_path: Path, *, enabled: bool = False, webhook: bool = False) -> Path:
    """The shipped OA connector and the Matrix example, as a deployment would combine them."""
    config = tmp_path / "config"
    (config / "flows").mkdir(parents=True)
    shipped = yaml.safe_load((ROOT / "config" / "connectors.yaml").read_text())
    matrix = yaml.safe_load((EXAMPLE / "connectors.yaml").read_text())
    if webhook:
        matrix["matrix"]["webhook"] = {"secret": {"env": "MATRIX_SECRET"}}
    connectors = {"sandbox_oa": shipped["sandbox_oa"], **matrix}
    (config / "connectors.yaml").write_text(yaml.safe_dump(connectors, allow_unicode=True))
    shutil.copy(EXAMPLE / "flows" / f"{FLOW}.yaml", config / "flows")
    if enabled:
        path = config / "flows" / f"{FLOW}.yaml"
        path.write_text(path.read_text().replace("enabled: false", "enabled: true"))
    return config


def test_the_example_loads_with_its_flow_disabled(tmp_path: Path) -> None:
    config = load_config(deployment(tmp_path), ENV)

    assert config.connectors["matrix"].vendor is Vendor.MATRIX
    assert isinstance(config.connectors["matrix"].options, MatrixOptions)
    assert config.connectors["matrix"].options.employee_no_from_localpart == "upper"
    assert config.flows[FLOW].enabled is False


def test_beat_reads_matrix_with_sync_only_while_a_flow_writes_there(tmp_path: Path) -> None:
    disabled = load_config(deployment(tmp_path / "off"), environment=False)
    enabled = load_config(deployment(tmp_path / "on", enabled=True), environment=False)

    assert matrix_schedule(disabled) == {}
    [entry] = matrix_schedule(enabled).values()
    assert entry["task"] == matrix_sync.SYNC_TASK
    assert entry["args"] == ("matrix",)
    assert entry["schedule"] == matrix_sync.SYNC_EVERY_S
    assert entry["options"]["queue"] == "events"


def test_a_webhook_for_matrix_is_refused_at_load_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(deployment(tmp_path, webhook=True), ENV)

    assert "matrix.webhook" in str(refused.value)
    assert "no callbacks" in str(refused.value)


def test_a_room_that_is_not_a_room_id_is_refused_at_load(tmp_path: Path) -> None:
    config = deployment(tmp_path)
    path = config / "connectors.yaml"
    path.write_text(
        path.read_text().replace("users:", "room: '#approvals:example.com'\n    users:")
    )

    with pytest.raises(ConfigError) as refused:
        load_config(config, ENV)

    assert "matrix.options.room" in str(refused.value)
