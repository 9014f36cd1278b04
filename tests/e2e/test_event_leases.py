"""End to end: no PostgreSQL transaction is held across a vendor's HTTP call (issue 11, point 4).

The OA's change webhook and WeCom's card presses go through the webhook service (a real
process) to a real worker while a vendor answers every call slowly (the sandbox's `latency`
fault). The worker claims its events with a lease committed first, calls the vendors with no
transaction open, and records the outcomes in a short transaction: sampled all the while,
PostgreSQL's `pg_stat_activity` never shows a session of the test's database `idle in
transaction` for longer than a moment between two statements. A scheduled pull's read, plan
and write steps, against slow vendors, are held to the same.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import psycopg2
import pytest

from sync_pipeline.devtools.sandbox import wecom as sandbox_wecom
from sync_pipeline.devtools.sandbox.client import SandboxClient, seeded_sandbox
from sync_pipeline.devtools.sandbox.oa import oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from tests.conftest import next_second, syncctl, wait_for
from tests.e2e.spine import webhook_service
from tests.events.approval_scene import oa_actions, wecom_card, wecom_sends

pytestmark = pytest.mark.slow

SEED = 7
WORLD = World(SEED)
APPLICANT, APPROVER = "E00010", "E00011"
EVENTS = 4  # approvals created one after another: their events arrive while WeCom is slow
SLOW_MS = 2000  # how long WeCom takes to answer each call
# A short transaction is caught idle in transaction for a moment between its statements; one
# held across a vendor call stays so for the call's whole length, far longer than this.
HELD_MS = SLOW_MS // 2
DEADLINE_S = 120
SAMPLE_EVERY_S = 0.05


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxClient]:
    data = tmp_path_factory.mktemp("sandbox")
    with seeded_sandbox(data, seed=SEED, approvals=2, checkin_days=1) as client:
        yield client


@pytest.fixture
def redis_url(private_redis_url: str) -> str:
    """Overrides tests/conftest.py's: a Redis of this module's own (e2e/conftest.py)."""
    return private_redis_url


@pytest.fixture
def webhooks(sandbox_env: dict[str, str], sandbox: SandboxClient, tmp_path: Path) -> Iterator[str]:
    """`syncctl webhooks serve`, with the OA calling it on every change."""
    with webhook_service(sandbox_env, sandbox, tmp_path / "webhooks.log", ("oa", "wecom")) as url:
        yield url


class IdleInTransaction:
    """Samples `pg_stat_activity` in a thread of its own, on an autocommit connection (never
    in a transaction itself): every session of the database found `idle in transaction` for
    longer than HELD_MS, with the last statement it ran."""

    QUERY = """
        SELECT pid, left(query, 120)
        FROM pg_stat_activity
        WHERE datname = current_database()
          AND pid <> pg_backend_pid()
          AND state IN ('idle in transaction', 'idle in transaction (aborted)')
          AND state_change < clock_timestamp() - make_interval(secs => %s)
    """

    def __init__(self, database_url: str) -> None:
        self._conn = psycopg2.connect(database_url)
        self._conn.autocommit = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.samples = 0
        self.seen: set[str] = set()  # "pid: last statement" of each session caught

    def __enter__(self) -> IdleInTransaction:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._conn.close()

    def _sample(self) -> None:
        while not self._stop.is_set():
            with self._conn.cursor() as cur:
                cur.execute(self.QUERY, (HELD_MS / 1000,))
                self.seen |= {f"{pid}: {query}" for pid, query in cur.fetchall()}
            self.samples += 1
            self._stop.wait(SAMPLE_EVERY_S)


def new_approvals(sandbox: SandboxClient, count: int) -> list[tuple[str, str]]:
    """(request id, title) of `count` new requests at APPROVER, each with a title of its own."""
    made = []
    for _ in range(count):
        title = f"Leave request {uuid.uuid4().hex[:8]}"
        answer = sandbox.create_approval(applicant=APPLICANT, approvers=[APPROVER], title=title)
        made.append((str(answer["requestId"]), title))
    return made


def test_no_session_is_idle_in_transaction_while_events_wait_on_a_slow_vendor(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    approver = sandbox_wecom.userid_for(WORLD.person(APPROVER))
    sandbox.fault("wecom", "latency", params={"ms": SLOW_MS})

    with IdleInTransaction(sandbox_env["DATABASE_URL"]) as watch:
        started = time.monotonic()
        titles = [title for _, title in new_approvals(sandbox, EVENTS)]
        wait_for(
            lambda: all(wecom_sends(sandbox, t) for t in titles),
            DEADLINE_S,
            interval_s=0.5,
            what="a card for every approval",
        )
        watched_s = time.monotonic() - started

    assert watched_s > SLOW_MS / 1000  # it watched the slow calls...
    assert watch.samples > 10  # ...many times over
    assert sorted(watch.seen) == []
    for title in titles:
        assert wecom_sends(sandbox, title) == [("card", approver)]


def test_no_session_is_idle_in_transaction_while_card_presses_wait_on_a_slow_oa(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    approver = sandbox_wecom.userid_for(WORLD.person(APPROVER))
    made = new_approvals(sandbox, EVENTS)
    wait_for(
        lambda: all(wecom_sends(sandbox, title) for _, title in made),
        DEADLINE_S,
        interval_s=0.5,
        what="a card for every approval",
    )
    cards = [wecom_card(sandbox, title, approver) for _, title in made]
    sandbox.fault("oa", "latency", params={"ms": SLOW_MS})

    with IdleInTransaction(sandbox_env["DATABASE_URL"]) as watch:
        for (request_id, _), card in zip(made, cards, strict=True):
            press = {"kind": "button", "task_id": card["task_id"], "userid": approver}
            sandbox.press("wecom", {**press, "key": f"approve:{request_id}"})
        wait_for(
            lambda: all(oa_actions(sandbox, request_id) for request_id, _ in made),
            DEADLINE_S,
            interval_s=0.5,
            what="every press applied in the OA",
        )

    assert watch.samples > 10
    assert sorted(watch.seen) == []
    for request_id, _ in made:
        assert oa_actions(sandbox, request_id) == [("approve", oa_user_id(APPROVER))]


def test_no_session_is_idle_in_transaction_while_a_pull_waits_on_slow_vendors(
    sandbox_env, sandbox, webhooks, sandbox_worker
) -> None:
    approver = sandbox_wecom.userid_for(WORLD.person(APPROVER))
    sandbox.settings("oa", {"webhook_url": "http://127.0.0.1:1/lost"})  # the pull's to sync
    made = new_approvals(sandbox, 2)
    next_second()
    for platform in ("oa", "wecom"):
        sandbox.fault(platform, "latency", params={"ms": SLOW_MS})

    with IdleInTransaction(sandbox_env["DATABASE_URL"]) as watch:
        result = syncctl(
            "run", "approvals_to_wecom", "--wait", "--timeout", str(DEADLINE_S), env=sandbox_env
        )

    assert result.returncode == 0, result.stdout + result.stderr
    assert watch.samples > 10
    assert sorted(watch.seen) == []
    for _, title in made:
        assert wecom_sends(sandbox, title) == [("card", approver)]
