"""WeCom's view of the seeded `World`: departments, users, group chats, approvals and
checkins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import batched
from sync_pipeline.devtools.sandbox.wecom.approvals import approval_stub
from sync_pipeline.devtools.sandbox.wecom.base import (
    CST_MS,
    PLATFORM,
    WeComBase,
    department_id,
    userid_for,
)
from sync_pipeline.devtools.sandbox.wecom.messages import chatid_for
from sync_pipeline.devtools.sandbox.world import Checkin, Person, World


class Seeding(WeComBase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        self.credentials()
        userids = {p.employee_no: userid_for(p) for p in world.people}
        dept_names = {department_id(d.id): d.name for d in world.departments}
        leaders: dict[int, str] = {}
        for person in world.people:
            leaders.setdefault(department_id(person.department_id), userids[person.employee_no])
        departments = [
            (
                str(department_id(d.id)),
                {
                    "id": department_id(d.id),
                    "name": d.name,
                    "name_en": d.name,
                    "department_leader": [leaders[department_id(d.id)]]
                    if department_id(d.id) in leaders
                    else [],
                    "parentid": department_id(d.parent_id) if d.parent_id else 0,
                    "order": 100000000 - department_id(d.id),
                },
                None,
                None,
            )
            for d in world.departments
        ]
        self.store.put_many(PLATFORM, "department", departments)
        users = [
            (userids[p.employee_no], self._user_row(p, userids, leaders, dept_names), None, None)
            for p in world.people
        ]
        self.store.put_many(PLATFORM, "user", users)
        chats = [
            (
                chatid_for(g.id),
                {
                    "chatid": chatid_for(g.id),
                    "name": g.name,
                    "owner": userids[g.owner_no],
                    "userlist": [userids[n] for n in g.member_nos],
                    "chat_type": 0,
                },
                None,
                None,
            )
            for g in world.groups
        ]
        self.store.put_many(PLATFORM, "appchat", chats)
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        approval_count = 0
        for chunk in batched(world.approvals(approvals)):
            rows = [approval_stub(a, world, userids) for a in chunk]
            approval_count += self.store.put_many(PLATFORM, "approval", rows)
        checkin_count = 0
        for chunk in batched(world.checkins(checkin_days)):
            checkin_count += self.store.put_many(
                PLATFORM, "checkin", [self._checkin_row(c, userids) for c in chunk]
            )
        return {
            "departments": len(departments),
            "users": len(users),
            "appchats": len(chats),
            "approvals": approval_count,
            "checkins": checkin_count,
        }

    @staticmethod
    def _user_row(
        person: Person,
        userids: Mapping[str, str],
        leaders: Mapping[int, str],
        dept_names: Mapping[int, str],
    ) -> dict[str, Any]:
        userid = userids[person.employee_no]
        dept = department_id(person.department_id)
        return {
            "userid": userid,
            "name": person.name,
            "department": [dept],
            "order": [0],
            "position": "Manager" if leaders.get(dept) == userid else "Staff",
            "mobile": person.mobile.replace("+86-", ""),
            "gender": "1" if person.index % 2 else "2",
            "email": person.email,
            "biz_mail": person.email,
            "is_leader_in_dept": [1 if leaders.get(dept) == userid else 0],
            "direct_leader": [userids[person.manager_no]] if person.manager_no else [],
            "avatar": "",
            "thumb_avatar": "",
            "telephone": "",
            "alias": "",
            "status": 1,
            "address": "",
            "open_userid": "wo" + hashlib.sha256(userid.encode()).hexdigest()[:30],
            "main_department": dept,
            "extattr": {
                "attrs": [{"type": 0, "name": "employee_no", "text": {"value": person.employee_no}}]
            },
            "_department_name": dept_names[dept],
        }

    @staticmethod
    def _checkin_row(
        checkin: Checkin, userids: Mapping[str, str]
    ) -> tuple[str, dict[str, Any], int, int]:
        userid = userids[checkin.employee_no]
        day = checkin.day_ms - CST_MS  # world days start 08:00 China time; WeCom's at midnight
        scheduled = checkin.day_ms + (3_600_000 if checkin.kind == "on" else 10 * 3_600_000)
        at = checkin.at_ms if checkin.result != "Lack" else scheduled
        exception = {"Late": "时间异常", "Lack": "未打卡", "Early": "时间异常"}.get(
            checkin.result, ""
        )
        row: dict[str, Any] = {
            "userid": userid,
            "groupname": "Office hours",
            "checkin_type": "上班打卡" if checkin.kind == "on" else "下班打卡",
            "exception_type": exception,
            "checkin_time": at // 1000,
            "location_title": "Headquarters" if checkin.result != "Lack" else "",
            "location_detail": "1 Example Road" if checkin.result != "Lack" else "",
            "wifiname": "OFFICE" if checkin.result != "Lack" else "",
            "wifimac": "3c:46:d8:0c:7a:70" if checkin.result != "Lack" else "",
            "notes": "",
            "mediaids": [],
            "sch_checkin_time": scheduled // 1000,
            "groupid": 1,
            "schedule_id": 0,
            "timeline_id": 1,
            "lat": 30547645 if checkin.result != "Lack" else 0,
            "lng": 104063236 if checkin.result != "Lack" else 0,
            "deviceid": "",
            "_day": day,
        }
        return f"{userid}:{day // 1000}:{checkin.kind}", row, at, at
