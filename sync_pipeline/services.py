"""Find the Redis and PostgreSQL a command will use: the configured ones, or embedded engines.

With REDIS_URL and DATABASE_URL set, nothing is started: the servers are checked and a missing
one is named in one line (ServiceUnavailable). With either unset, real engines installed by the
`embedded` extra are started under SYNC_DATA_DIR (or a running set is attached to) and stopped
when the command ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.settings import Settings, mask_url
from sync_pipeline.state.db import check_database

REDIS_HINT = "Check REDIS_URL, or unset it to use the embedded Redis."


@dataclass(frozen=True)
class Services:
    """The resolved settings (URLs filled in) and what was started for them."""

    settings: Settings
    started: tuple[str, ...]  # human-readable lines, empty when nothing was started

    def env(self) -> dict[str, str]:
        """Environment for child processes (worker, beat) so they use the same servers."""
        redis_url, database_url = self.settings.urls()
        env = {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "SYNC_DATA_DIR": str(self.settings.data_dir),
            "SYNC_CONFIG_DIR": str(self.settings.config_dir),
        }
        if self.settings.broker_url_override:
            env["BROKER_URL"] = self.settings.broker_url_override
        return env


def check_redis(url: str, timeout_s: float = 3.0, *, role: str = "Redis") -> str:
    """The server's version, or ServiceUnavailable with one clear reason."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        info = client.info("server")
    except redis.exceptions.AuthenticationError as exc:
        raise ServiceUnavailable(role, mask_url(url), str(exc), REDIS_HINT) from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        reason = str(exc).split("\n")[0] or type(exc).__name__
        raise ServiceUnavailable(role, mask_url(url), reason, REDIS_HINT) from None
    finally:
        client.close()
    return str(info.get("redis_version", "?"))


def check_broker(url: str, timeout_s: float = 3.0) -> None:
    """A Redis broker is checked as Redis; another (RabbitMQ) by dispatch, through kombu."""
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        check_redis(url, timeout_s, role="broker (Redis)")
    else:
        from sync_pipeline.dispatch import check_amqp_broker  # Celery and kombu only for it

        check_amqp_broker(url, timeout_s)


def check_services(settings: Settings) -> tuple[str, str]:
    """(redis version, postgres version) of configured servers; raises on the first missing."""
    redis_url, database_url = settings.urls()
    redis_version = check_redis(redis_url, settings.connect_timeout_s)
    if settings.broker_url_override:
        check_broker(settings.broker_url_override, settings.connect_timeout_s)
    pg_version = check_database(database_url, settings.connect_timeout_s)
    return redis_version, pg_version


@contextmanager
def services(settings: Settings, *, need_redis: bool = True) -> Iterator[Services]:
    """Resolve the servers for one command; embedded engines stop when the block ends."""
    if not settings.embedded:
        if need_redis:
            check_services(settings)
        else:
            check_database(settings.urls()[1], settings.connect_timeout_s)
        yield Services(settings, ())
        return
    from sync_pipeline.devtools.embedded import EmbeddedStack

    stack = EmbeddedStack(
        settings.data_dir,
        redis=settings.redis_url is None,
        postgres=settings.database_url is None,
    )
    with stack as urls:
        resolved = settings.with_urls(
            settings.redis_url or urls.redis_url, settings.database_url or urls.database_url
        )
        # The configured half of a mixed setup is still checked.
        if settings.redis_url:
            check_redis(settings.redis_url, settings.connect_timeout_s)
        if settings.database_url:
            check_database(settings.database_url, settings.connect_timeout_s)
        yield Services(resolved, tuple(stack.started))


def export_env(resolved: Services) -> None:
    """Make this process's children (and late imports of workers.app) see the same servers."""
    os.environ.update(resolved.env())
