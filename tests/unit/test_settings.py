"""Settings are read from the environment, validated at start, and never leak a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

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

    assert dict(caught.value.problems)["FLOWER_BASIC_AUTH"] == "expected user:password"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/sync", "postgresql://app:***@db:5432/sync"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        (None, "<unset>"),
    ],
)
def test_mask_url_hides_only_the_password(url: str | None, masked: str) -> None:
    assert mask_url(url) == masked
