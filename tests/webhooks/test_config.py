"""The `webhook:` section of connectors.yaml: validated with the rest, resolved by the service."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sync_pipeline.config.connector import CredentialRef
from sync_pipeline.config.loader import load_config
from sync_pipeline.errors import ConfigError
from sync_pipeline.webhooks.app import load_endpoints
from tests.unit.config.conftest import CONNECTORS, ENV, ConfigTree
from tests.webhooks.conftest import CONFIG_DIR

WECOM_WEBHOOK = {
    "token": {"env": "WECOM_CB_TOKEN"},
    "encoding_aes_key": {"env": "WECOM_CB_AES_KEY"},
    "receive_id": {"env": "WECOM_CORPID"},
    "window_s": 120,
}
WEBHOOK_ENV = {
    **ENV,
    "WECOM_CB_TOKEN": "tok",
    "WECOM_CB_AES_KEY": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
}


@pytest.fixture
def tree(tmp_path: Path) -> ConfigTree:
    return ConfigTree(tmp_path / "config")


def with_webhook(tree: ConfigTree, connector: str, webhook: object) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors[connector]["webhook"] = webhook
    tree.connectors(connectors)


def test_a_webhook_section_loads_as_references_and_a_window(tree) -> None:
    with_webhook(tree, "wecom", WECOM_WEBHOOK)

    webhook = tree.load().connectors["wecom"].webhook

    assert webhook is not None
    assert webhook.window_s == 120.0
    assert webhook.secrets["token"] == CredentialRef(env="WECOM_CB_TOKEN", file=None)


def test_a_connector_without_a_webhook_section_receives_nothing(tree) -> None:
    assert tree.load().connectors["wecom"].webhook is None


def test_the_window_defaults_to_300_seconds(tree) -> None:
    with_webhook(tree, "wecom", {k: v for k, v in WECOM_WEBHOOK.items() if k != "window_s"})

    webhook = tree.load().connectors["wecom"].webhook

    assert webhook is not None
    assert webhook.window_s == 300.0


def test_a_vendor_webhook_missing_its_secrets_names_them(tree) -> None:
    with_webhook(tree, "wecom", {"token": {"env": "WECOM_CB_TOKEN"}})

    error = tree.error()

    assert error.file == str(tree.root / "connectors.yaml")
    assert error.problems == [
        ("wecom.webhook", "expected encoding_aes_key, receive_id for a wecom webhook")
    ]


def test_a_secret_another_vendor_uses_is_refused_by_name(tree) -> None:
    with_webhook(tree, "oa", {"secret": {"env": "X"}, "encrypt_key": {"env": "Y"}})

    assert tree.error().problems == [
        ("oa.webhook", "expected only secret for a oa webhook, not encrypt_key")
    ]


def test_a_secret_pasted_into_the_webhook_section_is_refused_without_being_echoed(tree) -> None:
    with_webhook(tree, "oa", {"secret": "hunter2-the-real-secret"})

    error = tree.error()

    assert error.problems == [
        ("oa.webhook.secret", "expected {env: VAR_NAME} or {file: path}, never the secret")
    ]
    assert "hunter2" not in str(error)


def test_a_window_out_of_range_is_named(tree) -> None:
    with_webhook(tree, "wecom", {**WECOM_WEBHOOK, "window_s": 0})

    [(key, expected)] = tree.error().problems

    assert key == "wecom.webhook.window_s"
    assert "greater than or equal to 1" in expected


AGORA = {
    "vendor": "agora",
    "base_url": "http://127.0.0.1:18605",
    "credentials": {"app_id": {"env": "A"}, "app_certificate": {"env": "B"}},
    "options": {"org_name": "o", "app_name": "a"},
}


@pytest.mark.parametrize(("written", "window_s"), [({"window_s": 120}, 120.0), ({}, 300.0)])
def test_an_agora_webhook_has_a_window_like_the_others(tree, written, window_s) -> None:
    # Agora signs its callbacks' timestamp (security = md5(callId + secret + timestamp)).
    connectors = copy.deepcopy(CONNECTORS)
    connectors["agora"] = {**AGORA, "webhook": {"secret": {"env": "C"}, **written}}
    tree.connectors(connectors)

    webhook = tree.load({**ENV, "A": "1", "B": "2"}).connectors["agora"].webhook

    assert webhook is not None
    assert webhook.window_s == window_s


def test_workers_load_the_config_without_the_callback_secrets(tree) -> None:
    with_webhook(tree, "wecom", WECOM_WEBHOOK)

    assert tree.load(ENV).connectors["wecom"].webhook is not None


def test_the_service_names_every_unset_callback_secret_at_once(tree) -> None:
    with_webhook(tree, "wecom", WECOM_WEBHOOK)

    with pytest.raises(ConfigError) as caught:
        load_endpoints(tree.load(ENV), ENV, tree.root)

    assert caught.value.file == str(tree.root / "connectors.yaml")
    assert caught.value.problems == [
        ("wecom.webhook.token", "expected environment variable WECOM_CB_TOKEN to be set"),
        (
            "wecom.webhook.encoding_aes_key",
            "expected environment variable WECOM_CB_AES_KEY to be set",
        ),
    ]


def test_a_variable_both_a_credential_and_a_callback_secret_is_named_for_both_at_once(
    tree,
) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["credentials"]["callback_token"] = {"env": "WECOM_CB_TOKEN"}
    connectors["wecom"]["webhook"] = WECOM_WEBHOOK
    tree.connectors(connectors)
    env = {k: v for k, v in WEBHOOK_ENV.items() if k != "WECOM_CB_TOKEN"}

    with pytest.raises(ConfigError) as caught:
        load_config(tree.root, env, webhook_secrets=True)

    assert caught.value.problems == [
        (
            "wecom.credentials.callback_token",
            "expected environment variable WECOM_CB_TOKEN to be set",
        ),
        ("wecom.webhook.token", "expected environment variable WECOM_CB_TOKEN to be set"),
    ]


def test_the_service_refuses_an_aes_key_of_the_wrong_shape_at_start(tree) -> None:
    with_webhook(tree, "wecom", WECOM_WEBHOOK)
    env = {**WEBHOOK_ENV, "WECOM_CB_AES_KEY": "too-short"}

    with pytest.raises(ConfigError) as caught:
        load_endpoints(tree.load(env), env, tree.root)

    [(key, expected)] = caught.value.problems
    assert key == "wecom.webhook.encoding_aes_key"
    assert "too-short" not in expected


def test_the_service_needs_at_least_one_webhook(tree) -> None:
    with pytest.raises(ConfigError) as caught:
        load_endpoints(tree.load(), ENV, tree.root)

    assert caught.value.problems == [("(top)", "expected a connector with a webhook: section")]


def test_the_sandbox_exports_every_callback_secret_the_shipped_config_names(sandbox) -> None:
    exported = sandbox.env()
    config = load_config(CONFIG_DIR, exported)

    endpoints = load_endpoints(config, exported, CONFIG_DIR)

    assert set(endpoints) == {
        "sandbox_oa",
        "sandbox_wecom",
        "sandbox_dingtalk",
        "sandbox_feishu",
        "sandbox_agora",
        "sandbox_slack",
    }
