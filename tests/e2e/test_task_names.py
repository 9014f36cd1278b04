"""Flower shows a task by its name, arguments and keyword arguments, as the worker's
task-received event carries them: every task of a pull names its flow there, not only the
pull.start that opened it."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from tests.conftest import syncctl

FLOW = "approvals_to_wecom"
RUN_STEPS = {"pull.resume", "pull.plan", "write.page", "pull.commit"}  # args: (run id, ...)


@pytest.fixture
def task_events(sandbox_env: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """Every task-received event the workers publish while the test runs (what Flower reads)."""
    app = Celery("events", broker=sandbox_env["REDIS_URL"], set_as_current=False)
    seen: list[dict[str, Any]] = []
    with app.connection() as conn:
        receiver = app.events.Receiver(conn, handlers={"task-received": seen.append})
        events = receiver.itercapture(limit=None, timeout=None, wakeup=False)
        next(events)  # its queue is bound: no event of the run is missed
        thread = threading.Thread(target=lambda: all(True for _ in events), daemon=True)
        thread.start()
        yield seen
        receiver.should_stop = True
        thread.join(10)
    app.close()


def test_given_a_pull_every_task_it_made_names_its_flow(
    sandbox_env, sandbox_worker, task_events
) -> None:
    result = syncctl("run", FLOW, "--wait", "--timeout", "240", env=sandbox_env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr

    names = {e["name"] for e in task_events}
    assert {"pull.start", "pull.plan", "write.page", "pull.commit"} <= names
    unnamed = [e for e in task_events if FLOW not in e["args"] + e["kwargs"]]
    assert unnamed == []


def test_given_nothing_changed_a_pull_is_one_task_per_page_after_its_start(
    sandbox_env, sandbox_worker, task_events
) -> None:
    first = syncctl("run", FLOW, "--wait", "--timeout", "240", env=sandbox_env, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    task_events.clear()

    again = syncctl("run", FLOW, "--wait", "--timeout", "240", env=sandbox_env, timeout=300)

    assert again.returncode == 0, again.stdout + again.stderr
    of_run = [(run_of(e), e["name"]) for e in task_events if e["name"] in RUN_STEPS]
    last = max(run_id for run_id, _ in of_run)  # a late event of the first run is not this one's
    assert {name for run_id, name in of_run if run_id == last} == {"pull.plan"}


def run_of(event: dict[str, Any]) -> int:
    """The run a task of a pull acts on: its first argument."""
    args = ast.literal_eval(event["args"])
    assert isinstance(args[0], int)
    return args[0]
