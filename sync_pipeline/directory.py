"""The user directory: the same person across platforms, matched by employee number, email or
mobile, refreshed from each platform's user list and kept in PostgreSQL.

A snapshot loaded per page serves the transform stage's `UserDirectory` protocol without a
query per record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

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


def age_s(conn: Connection, system: str) -> float | None:
    """Seconds since the platform's users were last refreshed; None if never."""
    value = conn.execute(
        sa.select(
            sa.func.extract("epoch", sa.func.now() - sa.func.max(directory_users.c.refreshed_at))
        ).where(directory_users.c.system == system)
    ).scalar_one_or_none()
    return None if value is None else float(value)


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
