"""Feishu's view of the seeded `World`: departments, users, chats, approval instances and
attendance.
"""

from __future__ import annotations

import json

from sync_pipeline.devtools.sandbox.feishu.approvals import (
    APPROVAL_NAMES,
    _approval_code,
    _user_ids,
)
from sync_pipeline.devtools.sandbox.feishu.attendance import _user_tasks
from sync_pipeline.devtools.sandbox.feishu.base import PLATFORM, FeishuBase, _hex, _uuid_like
from sync_pipeline.devtools.sandbox.world import World


class Seeding(FeishuBase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        tenant = self.credentials()["tenant_key"]
        ids = {p.employee_no: _user_ids(world.seed, p.employee_no) for p in world.people}
        root = {d.id for d in world.departments if d.parent_id is None}
        dept_open = {
            d.id: "0" if d.id in root else f"od-{_hex(world.seed, d.id)}" for d in world.departments
        }
        dept_custom = {d.id: "0" if d.id in root else d.id for d in world.departments}
        parent = {d.id: d.parent_id or d.id for d in world.departments}
        counts: dict[str, int] = {}
        counts["departments"] = self.store.put_many(
            PLATFORM,
            "department",
            (
                (
                    dept_custom[d.id],
                    {
                        "name": d.name,
                        "department_id": dept_custom[d.id],
                        "open_department_id": dept_open[d.id],
                        "parent_department_id": dept_custom[parent[d.id]],
                        "_parent_open": dept_open[parent[d.id]],
                        "leader_user_id": next(
                            (
                                ids[p.employee_no]["user_id"]
                                for p in world.people
                                if p.department_id == d.id
                            ),
                            "",
                        ),
                        "member_count": sum(1 for p in world.people if p.department_id == d.id),
                        "status": {"is_deleted": False},
                        "order": i,
                    },
                    i,
                    None,
                )
                for i, d in enumerate(world.departments)
                if d.parent_id is not None  # the root "0" is the tenant itself
            ),
        )
        counts["users"] = self.store.put_many(
            PLATFORM,
            "user",
            (
                (
                    ids[p.employee_no]["open_id"],
                    {
                        **ids[p.employee_no],
                        "name": p.name,
                        "en_name": p.name,
                        "email": p.email,
                        "enterprise_email": p.email,
                        "mobile": p.mobile,
                        "mobile_visible": True,
                        "employee_no": p.employee_no,
                        "employee_type": 1,
                        "department_ids": [dept_open[p.department_id]],
                        "leader_user_id": ids[p.manager_no]["user_id"] if p.manager_no else "",
                        "status": {
                            "is_frozen": False,
                            "is_resigned": False,
                            "is_activated": True,
                            "is_exited": False,
                            "is_unjoin": False,
                        },
                        "job_title": "",
                        "_dept": dept_custom[p.department_id],
                        "_tenant_key": tenant,
                    },
                    p.index,
                    None,
                )
                for p in world.people
            ),
        )
        counts["chats"] = self.store.put_many(
            PLATFORM,
            "chat",
            (
                (
                    f"oc_{_hex(world.seed, 'chat', g.id)}",
                    {
                        "chat_id": f"oc_{_hex(world.seed, 'chat', g.id)}",
                        "avatar": "",
                        "name": g.name,
                        "description": f"Project {g.project_id}" if g.project_id else g.name,
                        "owner_id": ids[g.owner_no]["open_id"],
                        "owner_id_type": "open_id",
                        "external": False,
                        "tenant_key": tenant,
                        "chat_status": "normal",
                        "chat_mode": "group",
                        "_members": [ids[no]["open_id"] for no in g.member_nos],
                    },
                    i,
                    None,
                )
                for i, g in enumerate(world.groups, start=1)
            ),
        )
        self.store.put_many(
            PLATFORM,
            "approval",
            (
                (
                    code,
                    {"approval_code": code, "approval_name": APPROVAL_NAMES[t], "_template": t},
                    None,
                    None,
                )
                for t, code in ((t, _approval_code(world.seed, t)) for t in APPROVAL_NAMES)
            ),
        )
        # Instances are stored as (approval_code, world number) and built on read from the
        # deterministic world, so 100k of them seed in seconds; a write stores the full body.
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        counts["approval_instances"] = 0
        batch = 5000
        for start in range(1, approvals + 1, batch):
            rows = (
                (
                    _uuid_like(world.seed, "instance", a.number),
                    {"approval_code": _approval_code(world.seed, a.template), "_n": a.number},
                    a.created_ms,
                    a.updated_ms,
                )
                for a in world.approvals(min(batch, approvals + 1 - start), start)
            )
            counts["approval_instances"] += self.store.put_many(PLATFORM, "instance", rows)
        counts["attendance_results"] = self.store.put_many(
            PLATFORM, "user_task", _user_tasks(world, world.checkins(checkin_days), ids)
        )
        return counts
