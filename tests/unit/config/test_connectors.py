"""connectors.yaml: vendors, endpoints, limits, and secrets that never show."""

from __future__ import annotations

import copy

import pytest

from sync_pipeline.config.connector import BreakerConfig, RateLimit, Secret, Vendor
from sync_pipeline.connectors.wecom import WeComOptions

from .conftest import CONNECTORS, ENV


def test_credentials_are_read_from_the_named_environment_variables(tree) -> None:
    wecom = tree.load().connectors["wecom"]

    assert wecom.vendor is Vendor.WECOM
    assert wecom.credentials["corpsecret"].reveal() == "wecom-secret-value"


def test_a_secret_never_shows_in_str_or_repr_of_it_or_its_connector(tree) -> None:
    wecom = tree.load().connectors["wecom"]

    shown = str(wecom.credentials["corpsecret"]) + repr(wecom.credentials) + repr(wecom)
    assert "wecom-secret-value" not in shown
    assert repr(Secret("x")) == "Secret('***')"


def test_a_missing_env_var_names_the_file_the_key_and_the_variable(tree) -> None:
    env = {k: v for k, v in ENV.items() if k != "WECOM_CORPSECRET"}

    error = tree.error(env)

    assert error.file == str(tree.root / "connectors.yaml")
    assert error.problems == [
        ("wecom.credentials.corpsecret", "expected environment variable WECOM_CORPSECRET to be set")
    ]


def test_a_credential_can_be_read_from_a_file_beside_the_config(tree) -> None:
    (tree.root / "corpsecret.txt").write_text("from-a-file\n")
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["credentials"]["corpsecret"] = {"file": "corpsecret.txt"}
    tree.connectors(connectors)

    wecom = tree.load().connectors["wecom"]

    assert wecom.credentials["corpsecret"].reveal() == "from-a-file"


def test_a_missing_credential_file_is_named(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["credentials"]["corpsecret"] = {"file": "nope.txt"}
    tree.connectors(connectors)

    [(key, expected)] = tree.error().problems

    assert key == "wecom.credentials.corpsecret"
    assert expected.startswith(f"expected a readable file at {tree.root / 'nope.txt'}")


def test_a_secret_pasted_into_the_file_is_refused_without_being_echoed(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["credentials"]["corpsecret"] = "s3cr3t-pasted"
    tree.connectors(connectors)

    error = tree.error()

    assert error.problems == [
        (
            "wecom.credentials.corpsecret",
            "expected {env: VAR_NAME} or {file: path}, never the secret",
        )
    ]
    assert "s3cr3t-pasted" not in str(error)


def test_options_may_come_from_the_environment_too(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["options"]["agentid"] = {"env": "WECOM_AGENTID"}
    tree.connectors(connectors)

    wecom = tree.load({**ENV, "WECOM_AGENTID": "1000005"}).connectors["wecom"]

    assert wecom.options == WeComOptions(agentid=1000005)


def test_rate_limits_and_quotas_load_as_values(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["rate_limits"] = {"default": [[10000, 60], [150000, 3600]]}
    connectors["wecom"]["monthly_quota"] = {"all": 10000}
    tree.connectors(connectors)

    wecom = tree.load().connectors["wecom"]

    assert wecom.rate_limits == {"default": (RateLimit(10000, 60.0), RateLimit(150000, 3600.0))}
    assert wecom.monthly_quota == {"all": 10000}
    assert wecom.timeout_s == 10.0


def test_a_breaker_left_out_is_the_default_and_one_given_is_loaded(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["breaker"] = {"failures": 3, "reset_s": 5}
    tree.connectors(connectors)

    loaded = tree.load().connectors

    assert loaded["wecom"].breaker == BreakerConfig(failures=3, reset_s=5.0)
    assert all(
        c.breaker == BreakerConfig(failures=5, reset_s=30.0)
        for name, c in loaded.items()
        if name != "wecom"
    )


@pytest.mark.parametrize(
    ("change", "key", "expected"),
    [
        (
            {"vendor": "teams"},
            "wecom.vendor",
            "Must be one of: oa, wecom, dingtalk, feishu, agora, rest, matrix, slack.",
        ),
        ({"base_url": "ftp://x"}, "wecom.base_url", "Not a valid URL."),
        ({"base_url": None}, "wecom.base_url", "Field may not be null."),
        (
            {"timeout_s": 0},
            "wecom.timeout_s",
            "Must be greater than or equal to 0.1 and less than or equal to 300.",
        ),
        (
            {"rate_limits": {"send": [[0, 60]]}},
            "wecom.rate_limits.send.0.0",
            "Must be greater than or equal to 1.",
        ),
        ({"rate_limits": {"send": [[10]]}}, "wecom.rate_limits.send.0", "Length must be 2."),
        (
            {"monthly_quota": {"all": -1}},
            "wecom.monthly_quota.all",
            "Must be greater than or equal to 1.",
        ),
        (
            {"credentials": {"corpid": {"env": "lower"}}},
            "wecom.credentials.corpid.env",
            "expected an env var NAME",
        ),
        (
            {"credentials": {"corpid": {"env": "A", "file": "b"}}},
            "wecom.credentials.corpid",
            "expected exactly one of env: VAR_NAME or file: path",
        ),
        ({"options": {}}, "wecom.options.agentid", "expected a value (required)"),
        ({"agent": 1}, "wecom.agent", "Unknown field."),
        (
            {"breaker": {"reset_s": 0}},
            "wecom.breaker.reset_s",
            "Must be greater than or equal to 1 and less than or equal to 3600.",
        ),
        (
            {"breaker": {"failures": 0}},
            "wecom.breaker.failures",
            "Must be greater than or equal to 1 and less than or equal to 1000.",
        ),
        ({"breaker": {"trips": 3}}, "wecom.breaker.trips", "Unknown field."),
    ],
)
def test_a_bad_connector_setting_is_named_with_what_was_expected(
    tree, change, key, expected
) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"].update(change)
    tree.connectors(connectors)

    assert (key, expected) in tree.error().problems


def test_a_connector_missing_its_vendors_credentials_is_told_which(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["wecom"]["credentials"] = {"corpid": {"env": "WECOM_CORPID"}}
    tree.connectors(connectors)

    assert tree.error().problems == [
        ("wecom.credentials", "expected corpsecret for a wecom connector")
    ]


def test_every_connector_problem_is_reported_at_once(tree) -> None:
    connectors = copy.deepcopy(CONNECTORS)
    connectors["oa"]["vendor"] = "sap"
    del connectors["wecom"]["base_url"]
    connectors["Bad Name"] = {}
    tree.connectors(connectors)

    keys = [key for key, _ in tree.error().problems]

    assert keys == ["oa.vendor", "wecom.base_url", "Bad Name"]
