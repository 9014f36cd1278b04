"""What `syncctl bench spine` and `syncctl bench events` both stand on: the flow they drive, a
sandbox and a PostgreSQL schema of each run's own, the config without rate limits, a worker
seen answering, and the baseline's direct loop.

Each run starts from nothing, so runs never see each other's state. Nothing here times or
judges a figure: each bench does that itself.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from sync_pipeline.config.flow import Flow
from sync_pipeline.config.loader import CONNECTORS_FILE, FLOWS_DIR, Config
from sync_pipeline.connectors.base import ConnectorContext, DirectoryUser
from sync_pipeline.connectors.registry import make_connector
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.seed import DEFAULT_SEED
from sync_pipeline.dispatch import run_health_check
from sync_pipeline.errors import ConfigError, SyncError
from sync_pipeline.pipeline.directory import MATCH_ORDER, DirectorySnapshot
from sync_pipeline.pipeline.steps import read_window
from sync_pipeline.records import Record, WriteRequest, WriteStatus
from sync_pipeline.settings import Settings
from sync_pipeline.stages.plan import plan_writes
from sync_pipeline.stages.rules import filter_batch
from sync_pipeline.stages.transform import transform
from sync_pipeline.state.db import engine_for, with_search_path

FLOW = "approvals_to_wecom"
PLATFORMS = ("oa", "wecom")  # the flow's two ends; the other emulators stay empty
SENT = "message/send"  # the WeCom ledger's endpoint for an accepted message or card
WORKER_START_S = 60.0
# WeCom sends template cards only from an app with a callback URL (errcode 43012). Nobody
# presses a card here, so nothing needs to answer at it.
CARD_CALLBACK_URL = "http://127.0.0.1:1/callbacks/wecom"


class BenchError(SyncError):
    """A bench has no honest figures: a count that does not add up, a run that did not end, a
    worker or server that did not start. Its logs and sandbox stay in `workdir` for a look."""

    bench = "bench"
    next_step = "read the logs in the workdir the message names, then run the bench again"

    def __init__(self, problems: Sequence[str], workdir: str) -> None:
        super().__init__(list(problems), workdir)
        self.problems, self.workdir = list(problems), workdir

    def __str__(self) -> str:
        return f"{self.bench}: {'; '.join(self.problems)} (logs and sandbox: {self.workdir})"


class SpineBenchError(BenchError):
    bench = "bench spine"


def write_report(json_path: Path, report: Mapping[str, Any]) -> None:
    json_path.write_text(json.dumps(report, indent=2) + "\n", "utf-8")


@contextmanager
def bench_sandbox(data_dir: Path, approvals: int) -> Iterator[SandboxClient]:
    """The flow's two platforms seeded from World(DEFAULT_SEED), served on free ports, with
    the sandbox's own throttles off."""
    with seeded_sandbox(
        data_dir, seed=DEFAULT_SEED, approvals=approvals, checkin_days=0, platforms=PLATFORMS
    ) as sandbox:
        sandbox.settings("wecom", {"callback_url": CARD_CALLBACK_URL})
        for platform in PLATFORMS:
            sandbox.settings(platform, {"rate_limit_scale": 0})
        yield sandbox


@contextmanager
def fresh_schema(database_url: str) -> Iterator[str]:
    """A schema of this run's own in DATABASE_URL's database, dropped afterwards; yields a URL
    whose search_path is that schema (as the tests make theirs)."""
    schema = f"bench_spine_{uuid.uuid4().hex[:12]}"
    admin = engine_for(database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = with_search_path(database_url, schema)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def bench_config(config_dir: Path, into: Path) -> Path:
    """A copy of `config_dir` whose connectors have no client-side rate limits."""
    source = config_dir / CONNECTORS_FILE
    try:
        connectors = yaml.safe_load(source.read_text("utf-8")) or {}
    except OSError as exc:
        raise ConfigError(str(source), [("file", f"expected a readable file ({exc})")]) from None
    for body in connectors.values():
        if isinstance(body, dict):
            body.pop("rate_limits", None)
    shutil.copytree(config_dir / FLOWS_DIR, into / FLOWS_DIR)
    (into / CONNECTORS_FILE).write_text(yaml.safe_dump(connectors, sort_keys=False), "utf-8")
    return into


def wait_for_worker(settings: Settings, workdir: Path) -> None:
    """The health task answered through the broker: the worker consumes, timing may start."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        run_health_check(settings, WORKER_START_S)
    except CeleryTimeout:
        raise BenchError(
            [f"the worker did not answer the health task within {WORKER_START_S:g} s"],
            str(workdir),
        ) from None


# -- the baselines' direct loop -----------------------------------------------------------------
class RawLoop:
    """Read a page, map it, send each message: no Celery, no PostgreSQL, no effect keys.

    What was sent lives in a dict (source id -> version), so a second sync reads the window the
    pipeline reads (cursor minus lookback, up to now) and sends only what changed.
    """

    def __init__(self, config: Config, flow: Flow, ctx: ConnectorContext) -> None:
        self.flow = flow
        ends = (flow.source.connector, flow.target.connector)
        self.source, self.target = (make_connector(config.connectors[name], ctx) for name in ends)
        self.systems = tuple(config.connectors[name].vendor.value for name in ends)
        self.seen: dict[str, str] = {}
        self.cursor: str | None = None
        self._users: DirectorySnapshot | None = None

    def sync(self) -> int:
        """One pass over the window; returns the messages the target accepted."""
        window = read_window(self.flow, self.cursor, datetime.now(UTC))
        token: str | None = None
        accepted = 0
        while True:
            page = self.source.read_page(
                self.flow.source.stream, window, token, self.flow.page_size
            )
            accepted += self._send(page.records)
            if page.next_token is None:
                return accepted
            token = page.next_token

    def plan(self, records: Sequence[Record]) -> list[WriteRequest]:
        """The writes the flow's own pure stages make of `records`, hydrated first."""
        flow = self.flow
        hydrated = self.source.hydrate(flow.source.stream, records)
        mapped = transform(hydrated, flow.mapping, self._directory())
        kept = filter_batch(mapped.records, flow.rules, {})
        return plan_writes(flow.name, kept.kept, flow.notify, {}, target=self.systems[1])

    def _send(self, records: Sequence[Record]) -> int:
        changed = [r for r in records if self.seen.get(r.source_id) != r.version]
        for record in records:
            self.seen[record.source_id] = record.version
            self.cursor = max(self.cursor or record.cursor_value, record.cursor_value)
        if not changed:
            return 0
        results = [self.target.write(self.flow.target.stream, r) for r in self.plan(changed)]
        return sum(result.status is WriteStatus.DONE for result in results)

    def _directory(self) -> DirectorySnapshot:
        """Both ends' users, listed once (the pipeline keeps them for ten minutes)."""
        if self._users is None:
            ends = zip(self.systems, (self.source, self.target), strict=True)
            self._users = _snapshot({system: end.list_users() for system, end in ends})
        return self._users


def _snapshot(users: Mapping[str, Sequence[DirectoryUser]]) -> DirectorySnapshot:
    """directory.load_snapshot's index, built from the platforms' lists, not PostgreSQL (emails
    lowercased, as directory.replace_users stores them)."""
    snapshot = DirectorySnapshot()
    for system, people in users.items():
        for person in people:
            user = replace(person, email=(person.email or "").lower() or None)
            snapshot.by_user[(system, user.user_id)] = user
            for kind in MATCH_ORDER:
                value = getattr(user, kind)
                if value:
                    snapshot.by_key.setdefault((system, kind, value), user.user_id)
    return snapshot
