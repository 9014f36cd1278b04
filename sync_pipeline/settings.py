"""Environment -> validated `Settings`; the one place that reads process-wide configuration.

Every variable has a documented default (README, "Configuration"). Secrets come from the
variable itself or from a file named by `<NAME>_FILE` (Docker/Kubernetes secrets), and are never
printed: URLs are shown with their password masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from sync_pipeline.errors import ConfigError

ENV_SOURCE = "environment"

# Variables that may hold a secret: each can also be given as <NAME>_FILE.
SECRET_VARIABLES = (
    "REDIS_URL",
    "DATABASE_URL",
    "BROKER_URL",
    "FLOWER_BASIC_AUTH",
    "SYNC_ADMIN_TOKEN",
)

MIN_ADMIN_TOKEN_CHARS = 16
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
BROKER_SCHEMES = (*REDIS_SCHEMES, "amqp", "amqps", "pyamqp")


# Where a URL list joins its URLs (a Sentinel URL names each sentinel): a `;` before a scheme.
_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.-]*://)")
# Query parameters that carry a secret: redis-py's password=, libpq's password=, and the like.
_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)


def mask_url(url: str | None) -> str:
    """The URL with every password replaced by ***, safe for logs and error messages: the
    userinfo's of each URL in a `;`-joined list and any query parameter named like one.
    Plain text work, no strict parsing, so no shape of URL makes it fail (it runs while
    reporting errors) and a password holding `/`, `?` or `#` is hidden whole."""
    if not url:
        return "<unset>"
    return ";".join(_mask_one(part) for part in _NEXT_URL.split(url))


def _mask_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hosts = rest.rpartition("@")  # the last @: a password may hold @ too
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{hosts}"
    head, question, query = rest.partition("?")
    if not question:
        return f"{scheme}://{rest}"
    query, hash_, fragment = query.partition("#")
    masked = "&".join(_mask_parameter(item) for item in query.split("&"))
    return f"{scheme}://{head}?{masked}{hash_}{fragment}"


def _mask_parameter(item: str) -> str:
    key, equals, _ = item.partition("=")
    return f"{key}=***" if equals and _SECRET_PARAMETER.search(key) else item


class _UrlField(fields.String):
    """A URL whose scheme must be one of `schemes`; errors never echo the value (it may hold a
    password)."""

    def __init__(self, schemes: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.schemes = schemes

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme not in self.schemes:
            expected = " or ".join(f"{s}://" for s in self.schemes)
            raise ValidationError(f"expected a URL starting with {expected}")
        return text


class SettingsSchema(Schema):
    """The environment variables the product reads, with their defaults."""

    class Meta:
        unknown = EXCLUDE  # the environment holds much more than our variables

    REDIS_URL = _UrlField(REDIS_SCHEMES, load_default=None, allow_none=True)
    DATABASE_URL = _UrlField(POSTGRES_SCHEMES, load_default=None, allow_none=True)
    BROKER_URL = _UrlField(BROKER_SCHEMES, load_default=None, allow_none=True)
    SYNC_DATA_DIR = fields.String(load_default=".sync-data")
    SYNC_CONFIG_DIR = fields.String(load_default="config")
    SYNC_LOG_LEVEL = fields.String(
        load_default="INFO",
        validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    )
    SYNC_LOG_FORMAT = fields.String(load_default="text", validate=validate.OneOf(["text", "json"]))
    SYNC_VISIBILITY_TIMEOUT_S = fields.Integer(
        load_default=3600, validate=validate.Range(min=60, max=43200)
    )
    SYNC_TASK_TIME_LIMIT_S = fields.Integer(
        load_default=1800, validate=validate.Range(min=10, max=43200)
    )
    SYNC_WORKER_CONCURRENCY = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=256)
    )
    SYNC_CONNECT_TIMEOUT_S = fields.Float(
        load_default=3.0, validate=validate.Range(min=0.1, max=60)
    )
    FLOWER_BASIC_AUTH = fields.String(load_default=None, allow_none=True)
    SYNC_ADMIN_TOKEN = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _visibility_above_time_limit(self, data: dict[str, Any], **_: Any) -> None:
        # On Redis, an unacked task is redelivered after the visibility timeout: a task that may
        # run longer than it would run twice (DESIGN.md section 4).
        if data["SYNC_VISIBILITY_TIMEOUT_S"] <= data["SYNC_TASK_TIME_LIMIT_S"]:
            raise ValidationError(
                "expected more seconds than SYNC_TASK_TIME_LIMIT_S (the longest task)",
                "SYNC_VISIBILITY_TIMEOUT_S",
            )

    @validates("FLOWER_BASIC_AUTH")
    def _users_and_passwords(self, value: str | None, **_: Any) -> None:
        """Flower splits the value at commas and admits a login equal to one `user:password`
        whole: an empty user or password would let a blank login in. Never echoes the value."""
        if value is None:
            return
        for pair in value.split(","):
            user, colon, password = pair.partition(":")
            if not (colon and user.strip() and password.strip()):
                raise ValidationError(
                    "expected user:password, neither empty (several separated by commas)"
                )

    @validates("SYNC_ADMIN_TOKEN")
    def _guessable_token(self, value: str | None, **_: Any) -> None:
        """A bearer token goes in an HTTP header (visible ASCII) and must not be guessable."""
        if value is None:
            return
        if len(value) < MIN_ADMIN_TOKEN_CHARS or not all("!" <= c <= "~" for c in value):
            raise ValidationError(
                f"expected at least {MIN_ADMIN_TOKEN_CHARS} characters of visible ASCII, no"
                " spaces (make one with: python -c 'import secrets;"
                " print(secrets.token_urlsafe(32))')"
            )


@dataclass(frozen=True)
class Settings:
    """Validated process settings. `redis_url` / `database_url` None means: use embedded engines."""

    redis_url: str | None
    database_url: str | None
    broker_url_override: str | None
    data_dir: Path
    config_dir: Path
    log_level: str
    visibility_timeout_s: int
    task_time_limit_s: int
    worker_concurrency: int | None
    connect_timeout_s: float
    flower_basic_auth: str | None = field(default=None, repr=False)
    log_format: str = "text"  # "json": one JSON object per line (logging.py)
    admin_token: str | None = field(default=None, repr=False)

    @property
    def broker_url(self) -> str | None:
        """The Celery broker: Redis unless BROKER_URL names another (RabbitMQ, Sentinel)."""
        return self.broker_url_override or self.redis_url

    def urls(self) -> tuple[str, str]:
        """(redis_url, database_url) once resolved; embedded engines fill them in at start."""
        if self.redis_url is None or self.database_url is None:
            raise RuntimeError("resolve the service URLs (sync_pipeline.services) first")
        return self.redis_url, self.database_url

    @property
    def embedded(self) -> bool:
        return self.redis_url is None or self.database_url is None

    def with_urls(self, redis_url: str, database_url: str) -> Settings:
        from dataclasses import replace

        return replace(self, redis_url=redis_url, database_url=database_url)

    def describe(self) -> dict[str, str]:
        """What an operator may see: URLs masked, secrets reduced to set/unset."""
        return {
            "REDIS_URL": mask_url(self.redis_url) if self.redis_url else "<embedded>",
            "DATABASE_URL": mask_url(self.database_url) if self.database_url else "<embedded>",
            "BROKER_URL": mask_url(self.broker_url_override)
            if self.broker_url_override
            else "=REDIS_URL",
            "SYNC_DATA_DIR": str(self.data_dir),
            "SYNC_CONFIG_DIR": str(self.config_dir),
            "SYNC_LOG_LEVEL": self.log_level,
            "SYNC_LOG_FORMAT": self.log_format,
            "SYNC_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
            "SYNC_TASK_TIME_LIMIT_S": str(self.task_time_limit_s),
            "SYNC_WORKER_CONCURRENCY": str(self.worker_concurrency or "cores"),
            "FLOWER_BASIC_AUTH": "set" if self.flower_basic_auth else "unset",
            "SYNC_ADMIN_TOKEN": "set" if self.admin_token else "unset",
        }


def _read_secret_files(env: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Resolve <NAME>_FILE variables; a variable set both ways is an error."""
    values = dict(env)
    problems: list[tuple[str, str]] = []
    for name in SECRET_VARIABLES:
        file_var = f"{name}_FILE"
        path = env.get(file_var)
        if not path:
            continue
        if env.get(name):
            problems.append((file_var, f"expected only one of {name} and {file_var} to be set"))
            continue
        try:
            values[name] = Path(path).read_text("utf-8").strip()
        except OSError as exc:
            problems.append((file_var, f"expected a readable file ({exc.strerror})"))
    return values, problems


def _joined(messages: Any) -> str:
    return "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings; raises ConfigError listing every bad variable at once."""
    env = os.environ if env is None else env
    values, problems = _read_secret_files(env)
    # An empty variable means "unset" (docker-compose passes empty strings through).
    values = {k: v for k, v in values.items() if v != ""}
    try:
        data = SettingsSchema().load(values)
    except ValidationError as exc:
        messages: dict[str, Any] = exc.messages if isinstance(exc.messages, dict) else {}
        problems += [(str(k), _joined(v)) for k, v in sorted(messages.items())]
        data = None
    if problems or data is None:
        raise ConfigError(ENV_SOURCE, problems)
    return Settings(
        redis_url=data["REDIS_URL"],
        database_url=data["DATABASE_URL"],
        broker_url_override=data["BROKER_URL"],
        data_dir=Path(data["SYNC_DATA_DIR"]).absolute(),
        config_dir=Path(data["SYNC_CONFIG_DIR"]).absolute(),
        log_level=data["SYNC_LOG_LEVEL"],
        visibility_timeout_s=data["SYNC_VISIBILITY_TIMEOUT_S"],
        task_time_limit_s=data["SYNC_TASK_TIME_LIMIT_S"],
        worker_concurrency=data["SYNC_WORKER_CONCURRENCY"],
        connect_timeout_s=data["SYNC_CONNECT_TIMEOUT_S"],
        flower_basic_auth=data["FLOWER_BASIC_AUTH"],
        admin_token=data["SYNC_ADMIN_TOKEN"],
        log_format=data["SYNC_LOG_FORMAT"],
    )
