"""Real services for the tests: the configured servers, or embedded engines started once.

With REDIS_URL and DATABASE_URL set (as .ci/run does), tests use those servers; without them,
the session starts the embedded engines under a temporary data dir. Either way each test gets
its own PostgreSQL schema and its own Redis database, so tests never see each other's data.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import redis

from sync_pipeline.state.db import with_search_path

ROOT = Path(__file__).resolve().parent.parent


def _shared_redis_dbs() -> list[int]:
    """Databases 1-15 of the shared Redis, split between pytest-xdist's workers (`make test`
    runs two), so that no two tests running at once ever share one."""
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return list(range(1, 16))[index::count]


_redis_dbs = itertools.cycle(_shared_redis_dbs())


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


@pytest.fixture(scope="session")
def base_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(redis URL, PostgreSQL URL of a database made for this session)."""
    redis_url, database_url = os.environ.get("REDIS_URL"), os.environ.get("DATABASE_URL")
    stack = None
    if not (redis_url and database_url):
        from sync_pipeline.devtools.embedded import EmbeddedStack

        stack = EmbeddedStack(tmp_path_factory.mktemp("engines"))
        urls = stack.start()
        redis_url, database_url = redis_url or urls.redis_url, database_url or urls.database_url
    session_db = f"sp_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = psycopg2.connect(database_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{session_db}"')
    try:
        yield redis_url, _with_database(database_url, session_db)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{session_db}" WITH (FORCE)')
        admin.close()
        if stack is not None:
            stack.stop()


@pytest.fixture
def database_url(base_urls: tuple[str, str]) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of this test's own."""
    base = base_urls[1]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(base)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(base, schema)
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture
def redis_url(base_urls: tuple[str, str]) -> str:
    """A Redis database of this test's own, emptied first."""
    parts = urlsplit(base_urls[0])
    url = urlunsplit((parts.scheme, parts.netloc, f"/{next(_redis_dbs)}", parts.query, ""))
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def service_env(redis_url: str, database_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a syncctl or celery child process using this test's servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "DATABASE_"))}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        SYNC_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
    )
    return env


def syncctl(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real syncctl console script of this interpreter's environment."""
    exe = Path(sys.executable).parent / "syncctl"
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def next_second() -> None:
    """Let the clock leave the second of the last change. A pull reads up to the second it
    starts in, exclusive (its signpost, in whole seconds), so a change made in that very second
    is the next pull's; tests that pull what they just changed wait it out."""
    start = int(time.time())
    wait_for(lambda: int(time.time()) > start, 3, interval_s=0.05, what="the next second")


def wait_for(predicate, deadline_s: float, interval_s: float = 0.2, what: str = "condition"):
    """Poll until `predicate()` is truthy; returns its value. Tests never sleep blindly."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval_s)
