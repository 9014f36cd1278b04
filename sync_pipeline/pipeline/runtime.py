"""Per-process resources of a worker: settings, config, database, Redis, HTTP, connectors.

Built lazily on first use and again after a fork (Celery's prefork children), because pooled
connections must never be shared across processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
import requests
from sqlalchemy.engine import Engine

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import Config, load_config
from sync_pipeline.connectors.base import Connector, ConnectorContext
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.errors import ConfigError
from sync_pipeline.http import make_session
from sync_pipeline.settings import Settings, load_settings
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.quotas import PostgresQuotaStore
from sync_pipeline.state.refresh_tokens import PostgresRefreshTokenStore


@dataclass
class Runtime:
    settings: Settings
    config: Config
    engine: Engine
    redis: redis.Redis
    session: requests.Session
    _connectors: dict[str, Connector] = field(default_factory=dict)

    def flow(self, name: str) -> Flow:
        try:
            return self.config.flows[name]
        except KeyError:
            known = ", ".join(sorted(self.config.flows)) or "none"
            raise ConfigError(
                str(self.settings.config_dir / "flows"),
                [(name, f"expected a flow name, one of: {known}")],
            ) from None

    def connector(self, name: str) -> Connector:
        if name not in self._connectors:
            database, timeout = self.settings.urls()[1], self.settings.connect_timeout_s
            quotas = PostgresQuotaStore(database, timeout)
            refresh = PostgresRefreshTokenStore(database, timeout)
            context = ConnectorContext(self.redis, quotas, self.session, refresh)
            self._connectors[name] = make_connector(self.config.connectors[name], context)
        return self._connectors[name]


_runtime: Runtime | None = None
_pid: int | None = None
_preloaded: list[Config] = []  # the worker's configuration, once preload_config loaded it


def preload_config() -> Config:
    """Load the configuration once in a worker's main process, before it forks its pool:
    every child, and every child that later replaces one, runs this very configuration (the
    one the worker's presence records), not whatever the files say when it first needs it."""
    config = load_config(load_settings().config_dir)
    _preloaded[:] = [config]
    return config


def preloaded_digest() -> str:
    """The digest of the configuration `preload_config` loaded ("" if it did not)."""
    return _preloaded[0].digest if _preloaded else ""


def build_runtime(
    settings: Settings, env: Mapping[str, str] | None = None, config: Config | None = None
) -> Runtime:
    """Resources for `settings`; `env` (default: os.environ) resolves the config's secrets,
    unless the `config` is given already loaded."""
    redis_url, database_url = settings.urls()
    return Runtime(
        settings=settings,
        config=config or load_config(settings.config_dir, env),
        engine=engine_for(database_url, settings.connect_timeout_s),
        redis=redis.Redis.from_url(redis_url),
        session=make_session(),
    )


def get_runtime() -> Runtime:
    """This process's runtime, from the environment the worker was started with."""
    global _runtime, _pid  # one runtime per process, rebuilt after fork
    if _runtime is None or _pid != os.getpid():
        preloaded = _preloaded[0] if _preloaded else None
        _runtime, _pid = build_runtime(load_settings(), config=preloaded), os.getpid()
    return _runtime
