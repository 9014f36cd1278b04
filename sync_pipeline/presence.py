"""A long-running service's presence in PostgreSQL, with the digest of the configuration it
loaded: how `syncctl check` and `status` know which services still run an older flow file.

Why a restart and not a reload: a worker's processes, Beat's schedule and the webhook
service's endpoints are all built from the configuration at start, and a pull's pages are
planned under one flow definition and written under it. Reloading in place would let a run
begin under one mapping and end under another, and each prefork child would have to reload
in step. A restart is safe instead (Celery's warm shutdown finishes the running tasks, and
acks_late redelivers what a killed one held), so the product asks for it and says whom.

It must not stop its service: a database that does not answer is logged and tried again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

import sqlalchemy as sa

from sync_pipeline.state import instances
from sync_pipeline.state.db import engine_for

log = logging.getLogger(__name__)


class Presence:
    """`start` records this process as a `kind` service with `digest`, a daemon thread
    refreshes it every HEARTBEAT_S, `stop` removes it."""

    def __init__(self, database_url: str, kind: str, digest: str) -> None:
        self.database_url, self.kind, self.digest = database_url, kind, digest
        self._id: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._register()
        self._thread = threading.Thread(target=self._beat, name="presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._id is not None:
            try:
                with engine_for(self.database_url).begin() as conn:
                    instances.remove(conn, self._id)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("%s: could not remove its presence (%s)", self.kind, exc)

    def _register(self) -> None:
        try:
            with engine_for(self.database_url).begin() as conn:
                self._id = instances.register(
                    conn, self.kind, socket.gethostname(), os.getpid(), self.digest
                )
        except sa.exc.SQLAlchemyError as exc:
            log.warning("%s: presence not recorded yet (%s)", self.kind, exc)

    def _beat(self) -> None:
        while not self._stopping.wait(instances.HEARTBEAT_S):
            if self._id is None:
                self._register()
                continue
            try:
                with engine_for(self.database_url).begin() as conn:
                    if not instances.heartbeat(conn, self._id):
                        self._id = None  # cleared as stale (a long pause): recorded again
            except sa.exc.SQLAlchemyError as exc:
                log.warning("%s: presence not refreshed (%s)", self.kind, exc)
