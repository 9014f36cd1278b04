"""Holding a lease while a step works: taken at the start, renewed by a heartbeat thread,
released at the end (state/leases.py says what a lease is and who reads it).

The bound a killed worker's work waits before it is sent again is LEASE_S (the lease runs
out) plus the sweeper's interval (sweeper.py); the heartbeat renews three times a lease, so a
slow database answer or a long pause of the process does not lose a live lease.

A lease names its holder's host and process. A step that finds a live lease held by a process
of its own host that is gone (a pool process SIGKILLed alone, whose task Celery gave straight
back) takes it over at once rather than leaving the work to the sweeper.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from sync_pipeline.failures import describe
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import leases
from sync_pipeline.state.leases import Leased

log = logging.getLogger(__name__)

LEASE_S = 60.0


def owner(task_id: str | None) -> str:
    """Who holds a lease: this process, and the task it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id or '-'}"


@contextmanager
def held(
    rt: Runtime, kind: Leased, work_id: int, holder: str, lease_s: float = LEASE_S
) -> Iterator[bool]:
    """Yields True while this holder holds the lease, renewed in the background; False (and
    nothing is held) when another holder's lease is live: the work is theirs."""
    with rt.engine.begin() as conn:
        if not _take(conn, kind, work_id, holder, lease_s):
            yield False
            return
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat,
        args=(rt, kind, work_id, holder, lease_s, stop),
        name=f"lease {kind.value} {work_id}",
        daemon=True,
    )
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        beat.join()
        with rt.engine.begin() as conn:
            leases.release(conn, kind, work_id, holder)


def _take(conn: Connection, kind: Leased, work_id: int, holder: str, lease_s: float) -> bool:
    if leases.take(conn, kind, work_id, holder, lease_s):
        return True
    current = leases.holder(conn, kind, work_id)
    if current is None or not _gone(current):
        return False
    log.info("%s %s: its holder %s is gone; taking its lease over", kind.value, work_id, current)
    return leases.take_from(conn, kind, work_id, current, holder, lease_s)


def _gone(holder: str) -> bool:
    """Whether a lease's holder is a process of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _heartbeat(
    rt: Runtime, kind: Leased, work_id: int, holder: str, lease_s: float, stop: threading.Event
) -> None:
    while not stop.wait(lease_s / 3):
        try:
            with rt.engine.begin() as conn:
                kept = leases.renew(conn, kind, work_id, holder, lease_s)
        except Exception as exc:  # noqa: BLE001 - the next beat tries again
            log.warning(
                "renewing the lease of %s %s failed: %s", kind.value, work_id, describe(exc)
            )
            continue
        if not kept:
            log.warning("the lease of %s %s was taken over; its work goes on", kind.value, work_id)
            return
