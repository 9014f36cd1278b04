"""Connections to PostgreSQL, where everything that must survive lives (DESIGN.md section 1).

A connection failure becomes `ServiceUnavailable` naming the server with its password masked,
so the CLI prints one line instead of a psycopg2 traceback.
"""

from __future__ import annotations

from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.settings import mask_url

HINT = "Check DATABASE_URL, or unset it to use the embedded PostgreSQL."


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy's spelling of a libpq URL, always with the psycopg2 driver."""
    scheme, rest = database_url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    return f"{scheme}://{rest}"


@lru_cache(maxsize=8)
def engine_for(database_url: str, connect_timeout_s: float = 3.0) -> Engine:
    """One pooled engine per URL per process (Celery's prefork children each get their own)."""
    return sa.create_engine(
        sqlalchemy_url(database_url),
        pool_pre_ping=True,  # survives a PostgreSQL restart between tasks
        pool_size=5,
        max_overflow=5,
        connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
    )


def check_database(database_url: str, connect_timeout_s: float = 3.0) -> str:
    """The server's version, or ServiceUnavailable with one clear reason."""
    try:
        with engine_for(database_url, connect_timeout_s).connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
    except sa.exc.OperationalError as exc:
        raise ServiceUnavailable("PostgreSQL", mask_url(database_url), _reason(exc), HINT) from None


def _reason(exc: sa.exc.DBAPIError) -> str:
    """The first line of the driver's message, which names the problem without the URL."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
