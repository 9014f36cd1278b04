"""The user directory: the same person across platforms, matched by employee number, email or
mobile, refreshed from each platform's user list and kept in PostgreSQL.

A snapshot loaded per page serves the transform stage's `UserDirectory` protocol without a
query per record. A process keeps the snapshot it loaded (per database) and reuses it while
every platform's users are as they were then: one small query (each platform's last refresh
and user count) instead of reading every user again for each batch.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from sync_pipeline.connectors.base import DirectoryUser
from sync_pipeline.state.schema import directory_users

REFRESH_AFTER_S = 600.0
MATCH_ORDER = ("employee_no", "email", "mobile")


def replace_users(conn: Connection, system: str, users: Iterable[DirectoryUser]) -> int:
    """The platform's whole user list replaces what we had (people leave, too).

    Pages of one run refresh concurrently on several workers; a transaction-scoped advisory
    lock per system serialises the delete-then-insert, which READ COMMITTED alone would let
    collide on the primary key.
    """
    rows = [
        {
            "system": system,
            "user_id": u.user_id,
            "employee_no": u.employee_no,
            "email": (u.email or "").lower() or None,
            "mobile": u.mobile,
            "name": u.name,
        }
        for u in users
    ]
    conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"directory_users:{system}")))
    )
    conn.execute(directory_users.delete().where(directory_users.c.system == system))
    if rows:
        conn.execute(directory_users.insert(), rows)
    return len(rows)


@dataclass(frozen=True)
class Refresh:
    """One platform's users as stored: when they were last refreshed, how many, how long ago."""

    at: datetime
    users: int
    age_s: float


def refreshes(conn: Connection, systems: Sequence[str]) -> dict[str, Refresh]:
    """The platforms of `systems` that have users, with their last refresh (one query)."""
    last = sa.func.max(directory_users.c.refreshed_at)
    rows = conn.execute(
        sa.select(
            directory_users.c.system,
            last,
            sa.func.count(),
            sa.func.extract("epoch", sa.func.now() - last),
        )
        .where(directory_users.c.system.in_(list(systems)))
        .group_by(directory_users.c.system)
    )
    return {str(s): Refresh(at, int(n), float(age)) for s, at, n, age in rows}


@dataclass
class DirectorySnapshot:
    """Every user of some systems, indexed both ways; implements stages' UserDirectory."""

    by_user: dict[tuple[str, str], DirectoryUser] = field(default_factory=dict)
    by_key: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (system, kind, value)

    def map_user(self, from_system: str, user_id: str, to_system: str) -> str | None:
        person = self.by_user.get((from_system, str(user_id)))
        if person is None:
            return None
        for kind in MATCH_ORDER:
            value = getattr(person, kind)
            if value:
                found = self.by_key.get(
                    (to_system, kind, value.lower() if kind == "email" else value)
                )
                if found is not None:
                    return found
        return None

    def employee_no(self, system: str, user_id: str) -> str | None:
        person = self.by_user.get((system, str(user_id)))
        return None if person is None else person.employee_no


def load_snapshot(conn: Connection, systems: Sequence[str]) -> DirectorySnapshot:
    snapshot = DirectorySnapshot()
    rows = conn.execute(
        sa.select(directory_users).where(directory_users.c.system.in_(list(systems)))
    )
    for row in rows:
        user = DirectoryUser(row.user_id, row.employee_no, row.email, row.mobile, row.name)
        snapshot.by_user[(row.system, row.user_id)] = user
        for kind in MATCH_ORDER:
            value = getattr(user, kind)
            if value:
                snapshot.by_key.setdefault((row.system, kind, value), user.user_id)
    return snapshot


Stamp = tuple[tuple[str, datetime | None, int], ...]


class SnapshotCache:
    """The last snapshot of each set of systems, with the refreshes it was loaded at."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[str, ...], tuple[Stamp, DirectorySnapshot]] = {}
        self._lock = threading.Lock()

    def load(
        self, conn: Connection, systems: Sequence[str], found: Mapping[str, Refresh]
    ) -> DirectorySnapshot:
        """The snapshot of `systems` as `found` describes them: the kept one if nothing was
        refreshed since it was loaded, else a new one (kept in its place)."""
        key = tuple(systems)
        stamp = tuple(
            (system, r.at, r.users) if (r := found.get(system)) else (system, None, 0)
            for system in systems
        )
        with self._lock:
            kept = self._snapshots.get(key)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        snapshot = load_snapshot(conn, systems)
        with self._lock:
            self._snapshots[key] = (stamp, snapshot)
        return snapshot


_caches: weakref.WeakKeyDictionary[Engine, SnapshotCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def snapshot_cache(engine: Engine) -> SnapshotCache:
    """This process's snapshots of the database `engine` reaches."""
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = SnapshotCache()
        return cache
