"""The shared session: every call times out, cookies never travel, only connects are retried."""

from __future__ import annotations

import os

import pytest
import requests

from sync_pipeline.http.session import TimeoutAdapter, environment_configures_http, make_session
from tests.http.conftest import Answer, ScriptedServer


def test_given_no_timeout_argument_when_the_server_stalls_then_the_read_times_out(
    server: ScriptedServer,
) -> None:
    server.script("/slow", Answer(delay_s=1.0))
    session = make_session(timeout=(1.0, 0.2))

    with pytest.raises(requests.ReadTimeout):
        session.get(f"{server.url}/slow")

    assert len(server.calls("/slow")) == 1  # a read is never resent by the session


def test_given_a_set_cookie_answer_then_no_cookie_is_kept_or_sent(server: ScriptedServer) -> None:
    server.script("/login", Answer(headers={"Set-Cookie": "ecology_JSessionid=abc; Path=/"}))
    session = make_session()

    session.get(f"{server.url}/login")
    session.get(f"{server.url}/next")

    assert len(session.cookies) == 0
    assert "Cookie" not in server.calls("/next")[0].headers


def test_given_a_post_then_only_connect_errors_are_retried_by_urllib3() -> None:
    adapter = make_session(connect_retries=3).get_adapter("https://vendor.example")
    assert isinstance(adapter, TimeoutAdapter)
    retry = adapter.max_retries

    assert retry.connect == 3
    assert retry.read is False  # a read error is raised as it is, never resent
    assert retry.status == 0
    assert retry.allowed_methods is None  # connect retries are safe for POST too


def test_given_no_proxy_ca_bundle_or_netrc_then_the_environment_is_not_read_per_call(
    tmp_path,
) -> None:
    assert environment_configures_http({"PATH": "/usr/bin"}, tmp_path) is False


@pytest.mark.parametrize(
    "env",
    [
        {"HTTPS_PROXY": "http://proxy:3128"},
        {"http_proxy": "http://proxy:3128"},
        {"no_proxy": "localhost"},
        {"NETRC": "/etc/vendor.netrc"},
    ],
)
def test_given_a_proxy_or_netrc_in_the_environment_then_requests_keeps_reading_it(
    env, tmp_path
) -> None:
    assert environment_configures_http(env, tmp_path) is True


def test_given_a_ca_bundle_in_the_environment_then_the_session_verifies_with_it(
    monkeypatch,
) -> None:
    for name in [n for n in os.environ if n.lower().endswith("_proxy")] + ["NETRC"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    monkeypatch.setenv("HOME", "/nonexistent")

    session = make_session()

    assert (session.trust_env, session.verify) == (False, "/etc/ssl/corp.pem")


def test_given_a_netrc_then_requests_keeps_reading_it(tmp_path) -> None:
    (tmp_path / ".netrc").write_text("machine vendor.example login a password b\n")

    assert environment_configures_http({}, tmp_path) is True
