"""The OA's view of the seeded `World`: HRM, projects, progress records and approvals."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from sync_pipeline.devtools.sandbox.oa.base import PLATFORM, OABase, _floor_s, fmt_time, oa_user_id
from sync_pipeline.devtools.sandbox.oa.workflow import (
    ARCHIVE_LEVEL,
    LOGTYPE_APPROVE,
    LOGTYPE_COMMENT,
    LOGTYPE_REJECT,
    LOGTYPE_SUBMIT,
    LOGTYPE_WITHDRAW,
    WORKFLOWS,
    _log,
)
from sync_pipeline.devtools.sandbox.world import Approval, World

SEED_BATCH = 5000


class Seeding(OABase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """HRM, projects, progress records and `approvals` requests; attendance reports are
        written later by the sync. Progress records per project come from setting
        `progress_per_project` (default 10)."""
        users = self.store.put_many(PLATFORM, "user", _hrm_users(world))
        departments = self.store.put_many(PLATFORM, "department", _hrm_departments(world))
        projects = self.store.put_many(
            PLATFORM,
            "project",
            (
                (
                    p.id,
                    {
                        "projectId": p.id,
                        "projectName": p.name,
                        "managerId": oa_user_id(p.owner_no),
                        "memberIds": [oa_user_id(m) for m in p.member_nos],
                    },
                    None,
                    None,
                )
                for p in world.projects
            ),
        )
        per_project = int(self.store.setting(PLATFORM, "progress_per_project", "10") or "10")
        progress = self.store.put_many(PLATFORM, "progress", _progress_rows(world, per_project))
        seeded = 0
        for batch in _batches(world.approvals(approvals), SEED_BATCH):
            seeded += self.store.put_many(PLATFORM, "approval", (_approval_row(a) for a in batch))
        self.store.set_setting(PLATFORM, "next_request_no", str(approvals + 1))
        return {
            "users": users,
            "departments": departments,
            "approvals": seeded,
            "projects": projects,
            "progress": progress,
        }


def _batches(items: Iterable[Approval], size: int) -> Iterator[list[Approval]]:
    batch: list[Approval] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _hrm_users(world: World) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    departments = {d.id: d for d in world.departments}
    for person in world.people:
        dept = departments[person.department_id]
        uid = oa_user_id(person.employee_no)
        yield (
            uid,
            {
                "id": uid,
                "workcode": person.employee_no,
                "loginid": person.email.split("@")[0],
                "lastname": person.name,
                "email": person.email,
                "mobile": person.mobile,
                "departmentid": _dept_id(dept.id),
                "departmentname": dept.name,
                "departmentcode": dept.id.upper(),
                "subcompanyid1": "1",
                "managerid": oa_user_id(person.manager_no) if person.manager_no else "",
                "status": "1",  # 正式
            },
            None,
            None,
        )


def _dept_id(world_id: str) -> str:
    return str(10 + int(world_id[1:]))  # d1 -> "11": E9 department ids are integers


def _hrm_departments(world: World) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    for dept in world.departments:
        yield (
            _dept_id(dept.id),
            {
                "id": _dept_id(dept.id),
                "departmentname": dept.name,
                "departmentmark": dept.name,
                "departmentcode": dept.id.upper(),
                "supdepid": _dept_id(dept.parent_id) if dept.parent_id else "0",
                "subcompanyid1": "1",
                "canceled": "0",
            },
            None,
            None,
        )


def _progress_rows(
    world: World, per_project: int
) -> Iterator[tuple[str, dict[str, Any], int | None, int | None]]:
    for record in world.progress(per_project):
        at = _floor_s(record.at_ms)
        yield (
            record.record_id,
            {
                "recordId": record.record_id,
                "projectId": record.project_id,
                "authorId": oa_user_id(record.author_no),
                "percent": record.percent,
                "content": record.text,
                "createTime": at,
                "lastModifyTime": at,
                "comments": [],
            },
            at,
            at,
        )


def _approval_row(a: Approval) -> tuple[str, dict[str, Any], int, int]:
    """A world approval as the OA keeps it; times to the second, as E9 stores them."""
    wf = WORKFLOWS[a.template]
    creator = oa_user_id(a.applicant_no)
    chain = [oa_user_id(n) for n in a.approver_nos]
    logs: list[dict[str, Any]] = []
    level = 0
    for step in a.history:
        at = _floor_s(step.at_ms)
        who = oa_user_id(step.approver_no)
        if step.action == "submit":
            logs.append(_log(a.request_id, len(logs), who, LOGTYPE_SUBMIT, 0, at, "", chain[:1]))
            level = 1
        elif step.action == "approve":
            nxt = chain[level : level + 1]
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_APPROVE, level, at, step.comment, nxt)
            )
            level += 1
        elif step.action == "reject":
            entry = _log(
                a.request_id, len(logs), who, LOGTYPE_REJECT, level, at, step.comment, [creator]
            )
            logs.append(entry)
        elif step.action == "revoke":
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_WITHDRAW, 0, at, step.comment, [])
            )
        else:
            logs.append(
                _log(a.request_id, len(logs), who, LOGTYPE_COMMENT, level, at, step.comment, [])
            )
    state = a.state
    current = oa_user_id(a.current_approver_nos[0]) if a.current_approver_nos else None
    node_level = {"pending": level, "approved": ARCHIVE_LEVEL}.get(state, 0)
    form = {}
    for key, value in a.form.items():
        name = key[:-3] + "_time" if key.endswith("_ms") else key
        form[name] = fmt_time(int(value)) if key.endswith("_ms") else _text(value)
    created = _floor_s(a.created_ms)
    updated = _floor_s(a.updated_ms)
    body = {
        "requestId": a.request_id,
        "workflowId": wf.id,
        "requestName": a.title,
        "requestLevel": "0",
        "creatorId": creator,
        "createTime": created,
        "chain": chain,
        "state": state,
        "level": node_level,
        "currentOperatorId": current,
        "lastOperatorId": logs[-1]["operator"],
        "lastOperateTime": updated,
        "form": form,
        "logs": logs,
        "actors": list(dict.fromkeys(entry["operator"] for entry in logs)),
    }
    return a.request_id, body, created, updated


def _text(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)
