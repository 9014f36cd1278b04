"""Helpers for tests that make PostgreSQL sessions wait on each other: a step run in a thread,
and how many sessions queue behind one that holds a lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state.schema import flow_cursors


def in_thread(step: Callable[[], Any], failed: list[BaseException]) -> threading.Thread:
    """`step` running in a thread of its own; what it raises goes to `failed`."""

    def run() -> None:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - the test asserts there is none
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def blocked_by(rt: Runtime, pid: int) -> int:
    """How many sessions wait, directly or behind another waiter, for the session `pid`."""
    waiting = sa.text(
        "WITH RECURSIVE blocked(pid) AS ("
        " SELECT pid FROM pg_stat_activity WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"
        " UNION SELECT a.pid FROM pg_stat_activity a JOIN blocked b"
        " ON b.pid = ANY(pg_blocking_pids(a.pid))"
        ") SELECT count(*) FROM blocked"
    )
    with rt.engine.connect() as conn:
        return int(conn.execute(waiting, {"pid": pid}).scalar_one())


@contextmanager
def holding_cursor_row(rt: Runtime, flow: str) -> Iterator[int]:
    """The flow's cursor row locked by a session of its own until the block ends; yields that
    session's pid (for `blocked_by`). The row must exist."""
    with rt.engine.connect() as holder, holder.begin():
        locked = holder.execute(
            sa.select(flow_cursors.c.fence).where(flow_cursors.c.flow == flow).with_for_update()
        ).one_or_none()
        assert locked is not None, f"flow {flow} has no cursor row to hold"
        yield int(holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
