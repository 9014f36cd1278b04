"""End to end: after a real worker syncs a flow on the sandbox (its OA failing now and then),
`/metrics` exposes every metric the README lists, with the labels it lists; and no configured
secret's value is in any log line, any table of the database or any Redis key or value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.state.db import engine_for
from tests.conftest import syncctl
from tests.e2e.spine import start_worker, stop, webhook_service
from tests.metrics import exposed_metrics, readme_metrics

pytestmark = pytest.mark.slow

FLOW = "approvals_to_dingtalk"  # OA reads, DingTalk writes: a monthly quota and rate limits
ADMIN_TOKEN = "observability-admin-token-0123456789"
RUN_TIMEOUT_S = "240"
# Credentials that name rather than guard (ids sent in the clear on every call, or a public
# key): every other credential and webhook secret of connectors.yaml is a secret.
IDENTIFIERS = {"appid", "corpid", "app_key", "app_id", "receive_id", "owner_key", "spk"}


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def env(sandbox_env: dict[str, str]) -> dict[str, str]:
    return {**sandbox_env, "SYNC_LOG_FORMAT": "json", "SYNC_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture
def synced(
    env: dict[str, str], sandbox: SandboxClient, tmp_path: Path
) -> Iterator[tuple[str, list[Path]]]:
    """A full sync of FLOW by a real worker while a tenth of the OA's answers are 5xx, the
    webhook service up and one forged delivery refused; yields the service's URL and the logs
    (the worker's, the service's, the commands')."""
    logs = [tmp_path / "worker.log", tmp_path / "webhooks.log", tmp_path / "commands.log"]
    worker = start_worker(env, logs[0])
    try:
        with webhook_service(env, sandbox, logs[1], []) as url:
            sandbox.fault("oa", "error5xx", rate=0.1)
            run = syncctl("run", FLOW, "--wait", "--timeout", RUN_TIMEOUT_S, env=env, timeout=300)
            sandbox.clear_faults()
            logs[2].write_text(run.stdout + run.stderr, "utf-8")
            assert run.returncode == 0, run.stdout + run.stderr
            # A resync of the synced flow, so that its lines and rows are searched too.
            again = syncctl(
                "resync", FLOW, "--wait", "--timeout", RUN_TIMEOUT_S, env=env, timeout=300
            )
            with logs[2].open("a", encoding="utf-8") as commands:
                commands.write(again.stdout + again.stderr)
            assert again.returncode == 0, again.stdout + again.stderr
            forged = requests.post(
                f"{url}/webhooks/sandbox_oa", data=b'{"forged": true}', timeout=10
            )
            assert forged.status_code in (400, 401, 403)
            yield url, logs
    finally:
        stop(worker)


def scrape(url: str) -> str:
    answer = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.text


def test_after_a_run_every_documented_metric_is_on_metrics_with_its_labels_and_figures(
    synced: tuple[str, list[Path]], env: dict[str, str]
) -> None:
    url, _ = synced

    text = scrape(url)

    exposed = exposed_metrics(text)
    assert {name: found for name, found in exposed.items() if name.startswith("sync_")} == (
        readme_metrics()
    )
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    written, done = _written_and_done(env["DATABASE_URL"])
    assert written > 0
    assert samples[("sync_records_written_total", (("flow", FLOW),))] == written
    assert samples[("sync_effects", (("flow", FLOW), ("status", "done")))] == done
    assert samples[("sync_cursor_lag_seconds", (("flow", FLOW),))] == 0
    assert (
        sum(
            value
            for (name, labels), value in samples.items()
            if name == "sync_vendor_errors_total" and ("vendor", "oa") in labels
        )
        > 0
    )


def test_no_configured_secret_is_in_a_log_line_a_table_or_a_redis_key_and_task_lines_say_whose(
    synced: tuple[str, list[Path]], env: dict[str, str]
) -> None:
    _, logs = synced
    worker_lines = [
        json.loads(line) for line in logs[0].read_text("utf-8").splitlines() if line[:1] == "{"
    ]
    task_lines = [line for line in worker_lines if "task_id" in line]
    secrets = configured_secrets(Path(env["SYNC_CONFIG_DIR"]), env)
    assert len(secrets) >= 8  # every connector's: the OA's, WeCom's, DingTalk's, ...

    places = {
        **{f"log {path.name}": path.read_text("utf-8", "replace") for path in logs},
        **database_rows(env["DATABASE_URL"]),
        **redis_entries(env["REDIS_URL"]),
    }

    found = sorted(
        (name, where)
        for where, text in places.items()
        for name, value in secrets.items()
        if value in text
    )
    assert found == []
    assert task_lines
    assert all(line["flow"] == FLOW for line in task_lines if "run_id" in line)


def _written_and_done(database_url: str) -> tuple[int, int]:
    """Records the flow's runs wrote, and its effects done, as PostgreSQL holds them."""
    engine = engine_for(database_url, 10)
    with engine.connect() as conn:
        written = conn.execute(
            sa.text("SELECT sum(written) FROM runs WHERE flow = :flow"), {"flow": FLOW}
        ).scalar_one()
        done = conn.execute(
            sa.text("SELECT count(*) FROM effects WHERE flow = :flow AND status = 'done'"),
            {"flow": FLOW},
        ).scalar_one()
    engine.dispose()
    return int(written or 0), int(done)


# -- where secrets could be ------------------------------------------------------------------------
def configured_secrets(config_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Each secret connectors.yaml names, by its variable: credentials and webhook secrets."""
    connectors = yaml.safe_load((config_dir / "connectors.yaml").read_text("utf-8"))
    found = {}
    for connector in connectors.values():
        refs = {**connector.get("credentials", {}), **connector.get("webhook", {})}
        for key, ref in refs.items():
            if key in IDENTIFIERS or not isinstance(ref, dict) or "env" not in ref:
                continue
            found[ref["env"]] = env[ref["env"]]
    return found


def database_rows(database_url: str) -> dict[str, str]:
    """Every row of every table of the test's schema, as text, by table."""
    engine = engine_for(database_url, 10)
    rows = {}
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_type = 'BASE TABLE' AND table_schema = current_schema()"
            )
        ).scalars()
        for table in list(tables):
            query = f'SELECT t::text FROM "{table}" AS t'  # noqa: S608 - names from the catalog
            rows[f"table {table}"] = "\n".join(conn.execute(sa.text(query)).scalars())
    engine.dispose()
    assert {"table effects", "table runs", "table inbound_events"} <= set(rows)
    return rows


def redis_entries(redis_url: str) -> dict[str, str]:
    """Every key of the test's Redis database and its value, as text (a Celery message's
    base64 body decoded too)."""
    client = redis.Redis.from_url(redis_url)
    entries = {}
    for key in client.scan_iter(count=1000):
        value = _redis_values(client, key)
        parts = [key, *(v for v in value if v is not None)]
        entries[f"redis {key!r}"] = "\n".join(_readable(part) for part in parts)
    client.close()
    return entries


def _redis_values(client: redis.Redis, key: bytes) -> list[Any]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key)]
    if kind == "hash":
        return [b for pair in client.hgetall(key).items() for b in pair]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return list(client.zrange(key, 0, -1))
    if kind == "stream":
        return [str(entry).encode() for entry in client.xrange(key)]
    raise AssertionError(f"a Redis {kind} at {key!r}: search it too")


def _readable(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        message = json.loads(text)
    except ValueError:
        return text
    if isinstance(message, dict) and message.get("properties", {}).get("body_encoding") == "base64":
        text += "\n" + base64.b64decode(message["body"]).decode("utf-8", "replace")
    return text
