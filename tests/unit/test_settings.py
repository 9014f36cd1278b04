"""Settings are read from the environment, validated at start, and never leak a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from sync_pipeline.errors import ConfigError
from sync_pipeline.settings import load_settings, mask_url


def test_given_no_variables_defaults_choose_embedded_engines() -> None:
    settings = load_settings({})

    assert settings.embedded
    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.data_dir.name == ".sync-data"
    assert settings.visibility_timeout_s > settings.task_time_limit_s


def test_given_both_urls_nothing_is_embedded() -> None:
    settings = load_settings(
        {"REDIS_URL": "redis://127.0.0.1:6379/0", "DATABASE_URL": "postgresql://u@h/db"}
    )

    assert not settings.embedded
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


def test_broker_url_overrides_redis_as_broker() -> None:
    settings = load_settings(
        {"REDIS_URL": "redis://r:6379/0", "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"}
    )

    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672//"


def test_invalid_values_are_all_named_with_what_was_expected() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL": "http://cache:6379", "SYNC_TASK_TIME_LIMIT_S": "soon"})

    keys = dict(caught.value.problems)
    assert caught.value.file == "environment"
    assert keys["REDIS_URL"].startswith("expected a URL starting with redis://")
    assert "integer" in keys["SYNC_TASK_TIME_LIMIT_S"]


def test_visibility_timeout_must_exceed_the_longest_task() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SYNC_VISIBILITY_TIMEOUT_S": "600", "SYNC_TASK_TIME_LIMIT_S": "900"})

    assert "SYNC_VISIBILITY_TIMEOUT_S" in dict(caught.value.problems)


def test_an_invalid_url_error_never_echoes_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"DATABASE_URL": "mysql://admin:hunter2@db/x"})

    assert "hunter2" not in str(caught.value)


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("postgresql://app:s3cret@db:5432/sync\n")

    settings = load_settings({"DATABASE_URL_FILE": str(secret)})

    assert settings.database_url == "postgresql://app:s3cret@db:5432/sync"
    assert "s3cret" not in str(settings.describe())


def test_secret_given_twice_is_an_error(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("admin:pw")

    with pytest.raises(ConfigError) as caught:
        load_settings({"FLOWER_BASIC_AUTH": "a:b", "FLOWER_BASIC_AUTH_FILE": str(secret)})

    assert dict(caught.value.problems)["FLOWER_BASIC_AUTH_FILE"].startswith("expected only one")


def test_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"REDIS_URL_FILE": str(tmp_path / "missing")})

    assert "REDIS_URL_FILE" in dict(caught.value.problems)


def test_flower_auth_needs_user_and_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FLOWER_BASIC_AUTH": "justapassword"})

    assert dict(caught.value.problems)["FLOWER_BASIC_AUTH"].startswith("expected user:password")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/sync", "postgresql://app:***@db:5432/sync"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://:pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        (
            "sentinel://:pw@s1:26379;sentinel://:pw@s2:26379",
            "sentinel://:***@s1:26379;sentinel://:***@s2:26379",
        ),
        ("redis://cache:6379/0?password=pw&db=1", "redis://cache:6379/0?password=***&db=1"),
        (None, "<unset>"),
    ],
)
def test_mask_url_hides_only_the_password(url: str | None, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "auth", [":", "admin:", ":hunter2", " : ", "admin:  ", "admin:hunter2,", "admin:hunter2,bob:"]
)
def test_given_flower_auth_with_an_empty_user_or_password_it_is_refused(auth: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FLOWER_BASIC_AUTH": auth})

    assert "FLOWER_BASIC_AUTH" in dict(caught.value.problems)
    assert "hunter2" not in str(caught.value)


def test_given_flower_auth_from_a_file_with_an_empty_password_it_is_refused(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "auth"
    secret.write_text("admin:\n")

    with pytest.raises(ConfigError) as caught:
        load_settings({"FLOWER_BASIC_AUTH_FILE": str(secret)})

    assert "FLOWER_BASIC_AUTH" in dict(caught.value.problems)


@pytest.mark.parametrize("auth", ["admin:hunter2", "admin:pa:ss", "ann:pw1,bob:pw2"])
def test_given_flower_auth_with_users_and_passwords_it_is_accepted(auth: str) -> None:
    assert load_settings({"FLOWER_BASIC_AUTH": auth}).flower_basic_auth == auth


@pytest.mark.parametrize(
    "token", ["short", "has a space in it 0123456789", "tab\tinside0123456789"]
)
def test_given_an_admin_token_too_short_or_with_spaces_it_is_refused(token: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SYNC_ADMIN_TOKEN": token})

    problem = dict(caught.value.problems)["SYNC_ADMIN_TOKEN"]
    assert problem.startswith("expected at least 16 characters")
    assert token not in str(caught.value)


def test_given_an_admin_token_it_is_kept_but_never_described() -> None:
    token = "Xq3-9vT_2kLmN8pR4sWz"

    settings = load_settings({"SYNC_ADMIN_TOKEN": token})

    assert settings.admin_token == token
    assert token not in str(settings.describe()) + repr(settings)


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("sentinel://:pw1@h1:26379;sentinel://:pw2@h2:26379/0", ["pw1", "pw2"]),
        ("redis://cache:6379/0?password=pw3", ["pw3"]),
        ("postgresql://app@db/sync?sslmode=require&password=pw4", ["pw4"]),
        ("postgresql://app:pw5@db1:5432,db2:5433/sync", ["pw5"]),
        ("redis://:p/w?6#@cache:6379/0", ["p/w?6#"]),
    ],
)
def test_given_a_url_of_any_supported_shape_mask_url_hides_every_password(
    url: str, secrets: list[str]
) -> None:
    masked = mask_url(url)

    assert [secret for secret in secrets if secret in masked] == []
    assert "***" in masked


@examples(max_examples=300, deadline=None)
@given(
    password=st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=4),
    host=st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
)
def test_given_any_password_mask_url_hides_it_whole(password: str, host: str) -> None:
    url = f"redis://user:{password}@{host}:6379/0"
    assume(password not in f"redis://user:***@{host}:6379/0")

    assert password not in mask_url(url)


@examples(max_examples=300, deadline=None)
@given(text=st.text())
def test_given_any_text_mask_url_answers_without_failing(text: str) -> None:
    assert isinstance(mask_url(text), str)


def test_given_no_log_format_lines_are_readable_text() -> None:
    assert load_settings({}).log_format == "text"


def test_given_sync_log_format_json_it_is_kept() -> None:
    assert load_settings({"SYNC_LOG_FORMAT": "json"}).log_format == "json"


def test_given_an_unknown_log_format_it_is_refused_naming_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SYNC_LOG_FORMAT": "xml"})

    assert "text" in dict(caught.value.problems)["SYNC_LOG_FORMAT"]
