"""What `admin.health` reports: the versions of the servers and the schema a worker sees."""

from __future__ import annotations

from typing import Any

from sync_pipeline.services import check_redis
from sync_pipeline.settings import Settings
from sync_pipeline.state.db import check_database
from sync_pipeline.state.migrate import current_revision, head_revision


def report(settings: Settings) -> dict[str, Any]:
    """Raises ServiceUnavailable when a server is missing, so the task fails visibly."""
    redis_url, database_url = settings.urls()
    schema = current_revision(database_url)
    return {
        "redis": check_redis(redis_url, settings.connect_timeout_s),
        "postgres": check_database(database_url, settings.connect_timeout_s),
        "schema": schema,
        "schema_current": schema == head_revision(),
    }
