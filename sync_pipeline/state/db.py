"""Connections to PostgreSQL, where everything that must survive lives (DESIGN.md section 1).

A connection failure becomes `ServiceUnavailable` naming the server with its password masked,
so the CLI prints one line instead of a psycopg2 traceback. Every jsonb value is written
through `types.json_text`, which cleans what PostgreSQL refuses (state/types.py).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from sync_pipeline.errors import ServiceUnavailable
from sync_pipeline.settings import mask_url
from sync_pipeline.state.types import json_text

HINT = "Check DATABASE_URL, or unset it to use the embedded PostgreSQL."


def sqlalchemy_url(database_url: str) -> str:
    """SQLAlchemy's spelling of a libpq URL, always with the psycopg2 driver."""
    scheme, rest = database_url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg2"
    return f"{scheme}://{rest}"


def with_search_path(database_url: str, schema: str) -> str:
    """`database_url` with `schema` as its search_path, for a test, bench run or demo kept in a
    schema of its own. Libpq options the URL already carries stay; a later -c wins."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query.get('options', '')} -csearch_path={schema}".strip()
    return parts._replace(query=urlencode(query, quote_via=quote)).geturl()


ENGINES_KEPT = 8  # a process uses one or two URLs; tests and benches use a schema each
_engines: OrderedDict[tuple[int, str, float], Engine] = OrderedDict()
_engines_lock = threading.Lock()


def engine_for(database_url: str, connect_timeout_s: float = 3.0) -> Engine:
    """One pooled engine per URL per process.

    Keyed by process id: a Celery prefork child must never use the pool it inherited from
    its parent (two processes on one socket corrupt both). The least recently used engine
    beyond ENGINES_KEPT is disposed, so its connections close now rather than whenever the
    garbage collector gets to them.
    """
    key = (os.getpid(), database_url, connect_timeout_s)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        engine = sa.create_engine(
            sqlalchemy_url(database_url),
            pool_pre_ping=True,  # survives a PostgreSQL restart between tasks
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
            json_serializer=json_text,  # no content can make a jsonb write fail
        )
        _engines[key] = engine
        while len(_engines) > ENGINES_KEPT:
            (pid, _, _), old = _engines.popitem(last=False)
            # An engine inherited from a parent closes nothing of the parent's.
            old.dispose(close=pid == os.getpid())
        return engine


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
