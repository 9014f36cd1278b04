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

from sync_pipeline.errors import LeaseHeld
from sync_pipeline.failures import describe
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.state import leases
from sync_pipeline.state.leases import Leased

log = logging.getLogger(__name__)

LEASE_S = 60.0


def owner(task_id: str | None) -> str:
    """Who holds a lease: this process, and the task it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id or '-'}"


class Lease:
    """A step's lease on its work, folded into the step's own transactions: `take(conn)` in
    the step's first (it raises LeaseHeld when another holder's lease is live), `release(conn)`
    in its last, so holding the lease costs the step no transaction of its own. While held,
    a heartbeat thread renews it. Used as a context manager around the step: on the way out
    the heartbeat stops, and a lease the step did not release (it raised, or returned early)
    is released in a transaction of its own."""

    def __init__(
        self, rt: Runtime, kind: Leased, work_id: int, holder: str, lease_s: float = LEASE_S
    ) -> None:
        self.rt, self.kind, self.work_id, self.holder, self.lease_s = (
            rt,
            kind,
            work_id,
            holder,
            lease_s,
        )
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._released = False

    def take(self, conn: Connection) -> None:
        """Hold the lease, in the caller's transaction; LeaseHeld if another holder's is live."""
        if not _take(conn, self.kind, self.work_id, self.holder, self.lease_s):
            raise LeaseHeld(
                self.kind.value, self.work_id, leases.holder(conn, self.kind, self.work_id) or "?"
            )
        self.adopt()

    def adopt(self) -> None:
        """The lease is this holder's (`take` took it): renew it from now on."""
        if self._beat is not None:
            return
        self._beat = threading.Thread(
            target=_heartbeat,
            args=(self.rt, self.kind, self.work_id, self.holder, self.lease_s, self._stop),
            name=f"lease {self.kind.value} {self.work_id}",
            daemon=True,
        )
        self._beat.start()

    def release(self, conn: Connection) -> None:
        """Let the lease go in the caller's (last) transaction. The heartbeat is told to stop,
        not waited for: its renewal may be queued behind a row this transaction holds (the
        step's page or run), which would wait for the wait. It is joined on the way out; a
        renewal that runs after the release finds the lease no longer this holder's and
        changes nothing."""
        self._stop.set()
        leases.release(conn, self.kind, self.work_id, self.holder)
        self._released = True

    def _halt(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._halt()
        if self._beat is None or (self._released and exc_type is None):
            return  # never taken, or let go in the step's own transaction
        # The step raised (its last transaction, release included, may have rolled back)
        # or ended without releasing: let go now. Only this holder's lease is released.
        with self.rt.engine.begin() as conn:
            leases.release(conn, self.kind, self.work_id, self.holder)


@contextmanager
def held(
    rt: Runtime, kind: Leased, work_id: int, holder: str, lease_s: float = LEASE_S
) -> Iterator[bool]:
    """Yields True while this holder holds the lease, renewed in the background; False (and
    nothing is held) when another holder's lease is live: the work is theirs. The lease is
    taken and released in transactions of their own (a step that can fold them into its own
    transactions uses Lease)."""
    with Lease(rt, kind, work_id, holder, lease_s) as lease:
        try:
            with rt.engine.begin() as conn:
                lease.take(conn)
        except LeaseHeld:
            yield False
            return
        yield True


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
            if not stop.is_set():  # else its holder let it go while this beat waited
                log.warning(
                    "the lease of %s %s was taken over; its work goes on", kind.value, work_id
                )
            return
