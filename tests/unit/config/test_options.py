"""Connector options: each vendor's connector declares the options it reads, with their types
and ranges; anything else in `options:` is refused at load, naming the file and the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sync_pipeline.config.loader import load_config
from sync_pipeline.errors import ConfigError

from .conftest import CONNECTORS, ENV

DINGTALK: dict[str, Any] = {
    "vendor": "dingtalk",
    "base_url": "https://api.dingtalk.com",
    "credentials": {"app_key": {"env": "DT_KEY"}, "app_secret": {"env": "DT_SECRET"}},
    "options": {"agent_id": 3001, "process_centre": {"name": "OA approvals"}},
}
FEISHU: dict[str, Any] = {
    "vendor": "feishu",
    "base_url": "https://open.feishu.cn",
    "credentials": {"app_id": {"env": "FS_ID"}, "app_secret": {"env": "FS_SECRET"}},
    "options": {"approval_center": {"approval_code": "oa"}},
}
AGORA: dict[str, Any] = {
    "vendor": "agora",
    "base_url": "https://a61.chat.agora.io",
    "credentials": {"app_id": {"env": "AG_ID"}, "app_certificate": {"env": "AG_CERT"}},
    "options": {"org_name": "61", "app_name": "oa"},
}
MORE_ENV = {"DT_KEY": "k", "DT_SECRET": "s", "FS_ID": "cli_1", "FS_SECRET": "s"}
MORE_ENV |= {"AG_ID": "a" * 32, "AG_CERT": "b" * 32}


def with_options(tree, name: str, options: dict[str, Any]) -> None:
    """connectors.yaml with `name`'s options replaced; dingtalk, feishu and agora beside oa and
    wecom."""
    connectors = {**copy.deepcopy(CONNECTORS), "dingtalk": DINGTALK, "feishu": FEISHU}
    connectors["agora"] = AGORA
    connectors[name] = {**connectors[name], "options": options}
    tree.connectors(connectors)


def problems(tree, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return tree.error({**ENV, **MORE_ENV, **(env or {})}).problems


def test_given_a_misspelt_option_then_load_names_it_and_the_options_there_are(tree) -> None:
    with_options(tree, "wecom", {"agentid": 1000002, "histroy_days": 30})

    assert problems(tree) == [
        (
            "wecom.options.histroy_days",
            "unknown option; expected one of agentid, employee_no_attr, history_days",
        )
    ]


def test_given_a_misspelt_option_then_check_without_the_environment_refuses_it_too(
    tree,
) -> None:
    with_options(tree, "oa", {"userid": "1", "timezon": "+08:00"})

    with pytest.raises(ConfigError) as caught:
        load_config(tree.root, {}, environment=False)

    assert [key for key, _ in caught.value.problems] == ["oa.options.timezon"]


def test_given_an_option_of_the_wrong_type_then_load_refuses_it(tree) -> None:
    with_options(tree, "wecom", {"agentid": 1000002, "history_days": "abc"})

    assert problems(tree) == [("wecom.options.history_days", "expected a whole number")]


def test_given_an_option_out_of_range_then_load_refuses_it(tree) -> None:
    with_options(tree, "dingtalk", {"agent_id": 3001, "history_days": 400})

    [(key, expected)] = problems(tree)

    assert key == "dingtalk.options.history_days"
    assert "365" in expected


@pytest.mark.parametrize(
    ("name", "options", "key", "expected"),
    [
        (
            "oa",
            {"userid": "1", "timezone": "Mars/Olympus"},
            "timezone",
            "expected a timezone name or +HH:MM",
        ),
        (
            "oa",
            {"userid": "1", "request_url": "{base_url}/r?id={requestid}"},
            "request_url",
            "expected a link with no placeholder but {base_url} and {id}",
        ),
        ("oa", {"userid": True}, "userid", "expected a text"),
        ("wecom", {"agentid": 1000002.5}, "agentid", "expected a whole number"),
        (
            "agora",
            {"org_name": "61", "app_name": "oa", "employee_no_from_username": "lower"},
            "employee_no_from_username",
            "Must be one of: upper, same.",
        ),
        (
            "agora",
            {"org_name": "61", "app_name": "oa", "sender": "Admin Bot"},
            "sender",
            "expected an Agora username",
        ),
    ],
)
def test_given_an_option_value_its_connector_cannot_use_then_load_says_what_it_expects(
    tree, name: str, options: dict[str, Any], key: str, expected: str
) -> None:
    with_options(tree, name, options)

    assert problems(tree) == [(f"{name}.options.{key}", expected)]


@pytest.mark.parametrize("ttl", [3600, 86_401])
def test_given_an_agora_token_lifetime_it_cannot_keep_then_load_refuses_it(tree, ttl) -> None:
    with_options(tree, "agora", {"org_name": "61", "app_name": "oa", "token_ttl_s": ttl})

    [(key, _)] = problems(tree)

    assert key == "agora.options.token_ttl_s"


def test_given_a_required_option_missing_then_load_names_it(tree) -> None:
    with_options(tree, "wecom", {})

    assert problems(tree) == [("wecom.options.agentid", "expected a value (required)")]


def test_given_an_option_from_the_environment_then_its_value_is_typed(tree) -> None:
    with_options(tree, "wecom", {"agentid": {"env": "WECOM_AGENTID"}})

    config = tree.load({**ENV, **MORE_ENV, "WECOM_AGENTID": "1000005"})

    assert config.connectors["wecom"].options.agentid == 1000005  # type: ignore[union-attr]


def test_given_an_option_from_the_environment_of_the_wrong_type_then_load_names_it(tree) -> None:
    with_options(tree, "wecom", {"agentid": {"env": "WECOM_AGENTID"}})

    assert problems(tree, {"WECOM_AGENTID": "one"}) == [
        ("wecom.options.agentid", "expected a whole number")
    ]


def test_given_an_option_from_the_environment_then_check_without_it_leaves_its_value(
    tree,
) -> None:
    with_options(tree, "wecom", {"agentid": {"env": "WECOM_AGENTID"}})

    config = load_config(tree.root, {}, environment=False)

    assert not config.connectors["wecom"].resolved


def test_given_a_misspelt_nested_option_then_load_names_its_whole_path(tree) -> None:
    with_options(tree, "dingtalk", {"agent_id": 3001, "process_centre": {"nmae": "x"}})

    assert problems(tree) == [
        ("dingtalk.options.process_centre.nmae", "unknown option; expected one of name")
    ]


def test_given_a_nested_option_missing_its_required_key_then_load_names_it(tree) -> None:
    with_options(tree, "feishu", {"approval_center": {"approval_name": "OA"}})

    assert problems(tree) == [
        ("feishu.options.approval_center.approval_code", "expected a value (required)")
    ]


def test_given_a_bad_url_option_then_load_refuses_it(tree) -> None:
    center = {"approval_code": "oa", "action_callback_url": "sync.example.com/webhooks/feishu"}
    with_options(tree, "feishu", {"approval_center": center})

    assert problems(tree) == [
        ("feishu.options.approval_center.action_callback_url", "Not a valid URL.")
    ]


def test_given_an_option_naming_a_malformed_variable_then_check_without_it_refuses_it(
    tree,
) -> None:
    with_options(tree, "wecom", {"agentid": {"env": "wecom agent"}})

    with pytest.raises(ConfigError) as caught:
        load_config(tree.root, {}, environment=False)

    assert caught.value.problems == [("wecom.options.agentid.env", "expected an env var NAME")]


def test_given_a_flow_on_a_stream_whose_option_its_connector_lacks_then_load_refuses_it(
    tree,
) -> None:
    with_options(tree, "feishu", {})
    tree.flow(
        "x",
        target={"connector": "feishu", "stream": "approval_center"},
        mapping={"fields": {"status": {"from": "status"}}},
        notify=[{"send": "approval_center", "once_per": "status"}],
    )

    error = tree.error({**ENV, **MORE_ENV})

    assert error.file == str(tree.root / "flows" / "x.yaml")
    assert error.problems == [
        (
            "target.stream",
            f"expected option approval_center of connector feishu in "
            f"{tree.root / 'connectors.yaml'} for stream approval_center",
        )
    ]


def test_given_a_stream_option_given_as_an_empty_list_then_load_refuses_it(tree) -> None:
    with_options(tree, "dingtalk", {"agent_id": 3001, "process_codes": []})

    [(key, _)] = problems(tree)

    assert key == "dingtalk.options.process_codes"
