"""Holding a lease while a step works: taken at the start, renewed in the background,
released at the end (state/leases.py says what a lease is and who reads it).

The bound a killed worker's work waits before it is sent again is LEASE_S (the lease runs
out) plus the sweeper's interval (sweeper.py); a lease is renewed three times in its life, so a
slow database answer or a long pause of the process does not lose a live lease.

A lease names its holder's host and process. A step that finds a live lease held by a process
of its own host that is gone (a pool process SIGKILLed alone, whose task Celery gave straight
back) takes it over at once rather than leaving the work to the sweeper.

One thread per process renews every lease held in it (`keep`): the steps' leases here and the
inbound events' (pipeline/events). A thread per lease would be started and joined for every
step and every batch of events, and under load each start and join waits for the OS to
schedule it: on two busy cores, milliseconds per step. A renewal that waits (on a row the
holder's own last transaction holds, for a moment) delays the others by as long; a lease
outlasts two missed renewals, and no transaction is held across a vendor call.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
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
    the process's renewing thread renews it. Used as a context manager around the step: on the
    way out its renewals stop, and a lease the step did not release (it raised, or returned early)
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
        self._beat: Renewal | None = None
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
        rt, kind, work_id, holder, lease_s = (
            self.rt,
            self.kind,
            self.work_id,
            self.holder,
            self.lease_s,
        )

        def renew() -> bool:
            with rt.engine.begin() as conn:
                return leases.renew(conn, kind, work_id, holder, lease_s)

        self._beat = keep(renew, lease_s / BEATS_PER_LEASE, f"{kind.value} {work_id}")

    def release(self, conn: Connection) -> None:
        """Let the lease go in the caller's (last) transaction. Its renewals stop; one at
        work now is not waited for: it may be queued behind a row this transaction holds (the
        step's page or run), which would wait for the wait. A renewal that runs after the
        release finds the lease no longer this holder's and changes nothing."""
        self._halt()
        leases.release(conn, self.kind, self.work_id, self.holder)
        self._released = True

    def _halt(self) -> None:
        if self._beat is not None:
            self._beat.stop()

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


BEATS_PER_LEASE = 3  # a step's lease is renewed three times in its life


class Renewal:
    """One lease kept by the process's renewing thread: `renew` every `every_s` until
    stopped, or until it returns False (the lease is no longer its holder's)."""

    def __init__(
        self, keeper: _Keeper, renew: Callable[[], bool], every_s: float, what: str
    ) -> None:
        self.keeper, self.renew, self.every_s, self.what = keeper, renew, every_s, what
        self.due = time.monotonic() + every_s
        self.stopped = False

    def stop(self) -> None:
        """Renew no more. Does not wait for a renewal at work now (see Lease.release)."""
        self.keeper.drop(self)


class _Keeper:
    """The renewing thread of one process and the leases it keeps. It starts with the first
    lease kept, and sleeps until the next renewal is due; a lease kept meanwhile wakes it
    only when it falls due before that (a step's or a batch's does not: it is due a whole
    interval from now)."""

    def __init__(self) -> None:
        self._kept: set[Renewal] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = -math.inf  # when the sleeping thread wakes; -inf while it is awake

    def forked(self) -> None:
        """In a forked child (a worker's pool process), which has none of its parent's
        threads: start empty, and keep the child's own leases on a thread of its own."""
        self._kept = set()
        self._changed = threading.Condition()
        self._thread = None
        self._wakes_at = -math.inf

    def add(self, renewal: Renewal) -> None:
        with self._changed:
            self._kept.add(renewal)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()
            if renewal.due < self._wakes_at:
                self._changed.notify()

    def drop(self, renewal: Renewal) -> None:
        with self._changed:
            renewal.stopped = True
            self._kept.discard(renewal)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [r for r in self._kept if r.due <= now]
                if not due:
                    wait = min((r.due - now for r in self._kept), default=None)
                    self._wakes_at = math.inf if wait is None else now + wait
                    self._changed.wait(wait)
                    self._wakes_at = -math.inf
                    continue
                for renewal in due:
                    renewal.due = now + renewal.every_s
            for renewal in due:
                self._beat(renewal)

    def _beat(self, renewal: Renewal) -> None:
        if renewal.stopped:
            return
        try:
            kept = renewal.renew()
        except Exception as exc:  # noqa: BLE001 - the next turn tries again
            log.warning("renewing the lease of %s failed: %s", renewal.what, describe(exc))
            return
        if not kept:
            with self._changed:
                self._kept.discard(renewal)
                stopped, renewal.stopped = renewal.stopped, True
            if not stopped:  # else its holder let it go while this renewal waited
                log.warning("the lease of %s was taken over; its work goes on", renewal.what)


_KEEPER = _Keeper()


os.register_at_fork(after_in_child=_KEEPER.forked)


def keep(renew: Callable[[], bool], every_s: float, what: str) -> Renewal:
    """Renew a lease every `every_s` seconds from now, on this process's renewing thread, until
    the returned Renewal is stopped or `renew` returns False (the lease was taken over:
    logged). A renewal that raises is tried again at its next turn."""
    renewal = Renewal(_KEEPER, renew, every_s, what)
    _KEEPER.add(renewal)
    return renewal
