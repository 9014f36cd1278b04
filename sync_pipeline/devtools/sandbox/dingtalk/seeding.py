"""DingTalk's view of the seeded `World`: departments, users, approval instances,
attendance and group conversations.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.core import batched
from sync_pipeline.devtools.sandbox.dingtalk.base import (
    CST_MS,
    PLATFORM,
    PROCESS_CODES,
    DingTalkBase,
    conversation_id_for,
    dept_id_for,
    userid_for,
)
from sync_pipeline.devtools.sandbox.dingtalk.workflow import instance_kind, instance_stub
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, Checkin, Person, World

WORLD_END_MS = EPOCH_MS + 300 * DAY_MS  # the world's data ends here (world.py)


class Seeding(DingTalkBase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        creds = self.credentials()
        self.store.set_setting(PLATFORM, "clock_ms", str(WORLD_END_MS))
        self.store.set_setting(PLATFORM, "world", json.dumps([world.seed, world.people_count]))
        userids = {p.employee_no: userid_for(p) for p in world.people}
        heads: dict[str, str] = {}
        for person in world.people:
            heads.setdefault(person.department_id, userids[person.employee_no])
        departments = [
            (
                str(dept_id_for(d.id)),
                {
                    "dept_id": dept_id_for(d.id),
                    "name": d.name,
                    "parent_id": dept_id_for(d.parent_id) if d.parent_id else 0,
                    "create_dept_group": True,
                    "auto_add_user": True,
                },
                None,
                None,
            )
            for d in world.departments
        ]
        self.store.put_many(PLATFORM, "department", departments)
        users = [
            (userids[p.employee_no], user_row(p, userids, heads), None, None) for p in world.people
        ]
        self.store.put_many(PLATFORM, "user", users)
        chats = [
            (
                conversation_id_for(g.id),
                {
                    "openConversationId": conversation_id_for(g.id),
                    "chatid": "chat" + hashlib.sha256(g.id.encode()).hexdigest()[:28],
                    "name": g.name,
                    "owner": userids[g.owner_no],
                    "useridlist": [userids[n] for n in g.member_nos],
                },
                None,
                None,
            )
            for g in world.groups
        ]
        self.store.put_many(PLATFORM, "chat", chats)
        instance_count = 0
        for chunk in batched(world.approvals(approvals)):
            rows = [instance_stub(a, world, userids) for a in chunk]
            for code in PROCESS_CODES.values():
                mine = [r for r in rows if r[1]["processCode"] == code]
                instance_count += self.store.put_many(PLATFORM, instance_kind(code), mine)
        record_count = 0
        for chunk in batched(enumerate(world.checkins(checkin_days), start=1)):
            rows = [attendance_row(n, c, userids, creds["corpId"]) for n, c in chunk]
            record_count += self.store.put_many(PLATFORM, "attendance", rows)
        return {
            "departments": len(departments),
            "users": len(users),
            "chats": len(chats),
            "instances": instance_count,
            "attendance_records": record_count,
        }


def user_row(
    person: Person, userids: Mapping[str, str], heads: Mapping[str, str]
) -> dict[str, Any]:
    userid = userids[person.employee_no]
    return {
        "userid": userid,
        "unionid": hashlib.sha256(f"union/{userid}".encode()).hexdigest()[:27],
        "name": person.name,
        "avatar": "",
        "state_code": "86",
        "mobile": person.mobile.replace("+86-", ""),
        "job_number": person.employee_no,
        "title": "Manager" if heads.get(person.department_id) == userid else "Staff",
        "email": person.email,
        "org_email": person.email,
        "dept_id_list": [dept_id_for(person.department_id)],
        "leader": heads.get(person.department_id) == userid,
        "hired_date": EPOCH_MS - person.index * 30 * DAY_MS,
        "active": True,
        "admin": person.index == 1,
        "boss": person.index == 1,
    }


def attendance_row(
    number: int, checkin: Checkin, userids: Mapping[str, str], corp_id: str
) -> tuple[str, dict[str, Any], int, int]:
    """One punch as /attendance/list shows it; keyed and ordered by work date (China time)."""
    work_date = checkin.day_ms - CST_MS  # the world's day starts 08:00 China time
    base = checkin.day_ms + (3_600_000 if checkin.kind == "on" else 10 * 3_600_000)
    lack = checkin.result == "Lack"
    time_result = {"Normal": "Normal", "Late": "Late", "Early": "Early", "Lack": "NotSigned"}
    record: dict[str, Any] = {
        "id": number,
        "recordId": number,
        "userId": userids[checkin.employee_no],
        "corpId": corp_id,
        "workDate": work_date,
        "checkType": "OnDuty" if checkin.kind == "on" else "OffDuty",
        "timeResult": time_result[checkin.result],
        "locationResult": "NotSigned" if lack else "Normal",
        "sourceType": "SYSTEM" if lack else "ATM",
        "userCheckTime": base if lack else checkin.at_ms,
        "baseCheckTime": base,
        "groupId": 1,
        "planId": number * 3,
    }
    return f"{number:012d}", record, work_date, record["userCheckTime"]
