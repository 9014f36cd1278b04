"""Agora Chat's view of the seeded `World`: users and groups (it has no approvals)."""

from __future__ import annotations

import uuid

from sync_pipeline.devtools.sandbox.agora.base import PLATFORM, AgoraBase, _hex
from sync_pipeline.devtools.sandbox.agora.groups import _group_id
from sync_pipeline.devtools.sandbox.agora.users import _user, _username
from sync_pipeline.devtools.sandbox.world import EPOCH_MS, World


class Seeding(AgoraBase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """Users (username from the employee number) and groups; Agora has no approvals."""
        users = self.store.put_many(
            PLATFORM,
            "user",
            (
                (
                    _username(p.employee_no),
                    _user(
                        _username(p.employee_no),
                        str(uuid.UUID(_hex(world.seed, p.employee_no))),
                        p.name,
                        created_ms=EPOCH_MS,  # from the world, so reseeding changes nothing
                    ),
                    p.index,
                    None,
                )
                for p in world.people
            ),
        )
        groups = self.store.put_many(
            PLATFORM,
            "group",
            (
                (
                    _group_id(world.seed, g.id),
                    {
                        "groupid": _group_id(world.seed, g.id),
                        "groupname": g.name,
                        "description": f"Project {g.project_id}" if g.project_id else g.name,
                        "public": False,
                        "maxusers": 200,
                        "allowinvites": False,
                        "membersonly": True,
                        "invite_need_confirm": False,
                        "owner": _username(g.owner_no),
                        "members": [_username(n) for n in g.member_nos if n != g.owner_no],
                        "custom": g.project_id or "",
                    },
                    i,
                    None,
                )
                for i, g in enumerate(world.groups, start=1)
            ),
        )
        return {"users": users, "groups": groups}
