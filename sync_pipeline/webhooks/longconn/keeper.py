"""What every no-public-URL connection shares: recording an event once, and its liveness."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sync_pipeline import dispatch
from sync_pipeline.errors import Refused
from sync_pipeline.records import EventKind, InboundEvent
from sync_pipeline.settings import Settings
from sync_pipeline.state import connections, inbound
from sync_pipeline.state.db import engine_for
from sync_pipeline.webhooks.stats import DUPLICATE

log = logging.getLogger(__name__)

# How often a live connection's frames are written down, at most: every SEEN_EVERY_S, or every
# half its silence limit when that is shorter. The alert evaluator calls a connection silent
# when nothing was written for twice that limit (pipeline/alerts.py), so a live one must be
# written down well inside it, whatever the phase between the two (a 5 s write against a 4 s
# limit, both on 5 s beats, kept a healthy connection "silent" for good).
SEEN_EVERY_S = 5.0


class Keeper:
    """One connector's recorder (PostgreSQL, the sending thread) and liveness writer. Its
    methods block: the connection calls them in a thread."""

    def __init__(self, settings: Settings, connector: str, silence_s: float) -> None:
        self.connector = connector
        self.seen_every_s = min(SEEN_EVERY_S, silence_s / 2)
        self.engine = engine_for(settings.urls()[1], settings.connect_timeout_s)
        self.sender = dispatch.EventSender(settings)
        self._seen_at = 0.0
        self._alive = False

    def record(self, event: InboundEvent | None) -> bool:
        """Record an event once and have it handled; False when it could not be recorded
        (PostgreSQL down): not acked, the vendor pushes it again."""
        if event is None:
            return True
        try:
            with self.engine.begin() as conn:
                row_id = inbound.record(conn, event)
                if row_id is None:
                    inbound.refuse(conn, self.connector, DUPLICATE)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("events %s: cannot record: %s", self.connector, type(exc).__name__)
            return False
        if row_id is None:
            log.info("events %s: duplicate of event %s", self.connector, event.event_id)
        elif event.kind is not EventKind.UNHANDLED:
            self.sender.put(self.connector, row_id)
        return True

    def refuse(self, refusal: Refused) -> None:
        """A frame that is not a usable event: counted, as the webhook service counts them."""
        log.warning("events %s refused: %s", self.connector, refusal)
        self._write(lambda conn: inbound.refuse(conn, self.connector, refusal.reason.value))

    def heard(self) -> None:
        """A frame arrived: the connection is up (written at once the first time after an
        outage, then every `seen_every_s`)."""
        now = time.monotonic()
        if self._alive and now - self._seen_at < self.seen_every_s:
            return
        if not self._alive:
            log.info("events %s: connection up", self.connector)
            self._write(lambda conn: connections.up(conn, self.connector))
        else:
            self._write(lambda conn: connections.seen(conn, self.connector))
        self._alive, self._seen_at = True, now

    def lost(self, why: str) -> None:
        if self._alive:
            log.warning("events %s: connection lost: %s", self.connector, why)
        self._alive = False
        self._write(lambda conn: connections.down(conn, self.connector, why))

    def _write(self, change: Callable[[Connection], None]) -> None:
        try:
            with self.engine.begin() as conn:
                change(conn)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("events %s: cannot write: %s", self.connector, type(exc).__name__)

    def close(self) -> None:
        self.sender.close()
        self.engine.dispose()
