"""A config directory of this test's own, with a valid starting point to break on purpose."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_pipeline.config.loader import Config, load_config
from sync_pipeline.errors import ConfigError

CONNECTORS: dict[str, Any] = {
    "oa": {
        "vendor": "oa",
        "base_url": "http://127.0.0.1:18601",
        "credentials": {
            "appid": {"env": "OA_APPID"},
            "secret": {"env": "OA_SECRET"},
            "spk": {"env": "OA_SPK"},
        },
        "options": {"userid": "1"},
    },
    "wecom": {
        "vendor": "wecom",
        "base_url": "http://127.0.0.1:18602",
        "credentials": {
            "corpid": {"env": "WECOM_CORPID"},
            "corpsecret": {"env": "WECOM_CORPSECRET"},
        },
        "options": {"agentid": 1000002},
    },
}
ENV = {
    "OA_APPID": "app-1",
    "OA_SECRET": "oa-secret-value",
    "OA_SPK": "spk",
    "WECOM_CORPID": "ww1",
    "WECOM_CORPSECRET": "wecom-secret-value",
}
FLOW: dict[str, Any] = {
    "source": {"connector": "oa", "stream": "approvals"},
    "target": {"connector": "wecom", "stream": "messages"},
    "trigger": {"interval_s": 60},
    "cursor_field": "updated_at",
    "mapping": {
        "fields": {
            "title": {"from": "title"},
            "status": {"from": "status"},
            "applicant": {"user": {"from": "applicant", "from_system": "oa", "to_system": "wecom"}},
        }
    },
}


class ConfigTree:
    """config/connectors.yaml and config/flows/*.yaml under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "flows").mkdir(parents=True)
        self.connectors(CONNECTORS)

    def connectors(self, data: Any) -> Path:
        return self.write("connectors.yaml", data)

    def flow(self, stem: str, data: Any = None, /, **changes: Any) -> Path:
        """A flow file: FLOW with top-level keys replaced (a None value removes the key)."""
        flow = copy.deepcopy(FLOW if data is None else data)
        flow.update(changes)
        return self.write(f"flows/{stem}.yaml", {k: v for k, v in flow.items() if v is not None})

    def write(self, relative: str, data: Any) -> Path:
        path = self.root / relative
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, "utf-8")
        return path

    def load(self, env: dict[str, str] | None = None) -> Config:
        return load_config(self.root, ENV if env is None else env)

    def error(self, env: dict[str, str] | None = None) -> ConfigError:
        with pytest.raises(ConfigError) as caught:
            self.load(env)
        return caught.value


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path / "config")
