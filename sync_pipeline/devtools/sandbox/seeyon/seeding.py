"""The Seeyon view of the seeded `World`: the account's departments and members, and every
world approval as a flow with its affairs and opinions."""

from __future__ import annotations

from typing import Any

from sync_pipeline.devtools.sandbox.core import batched
from sync_pipeline.devtools.sandbox.seeyon.base import (
    ACCOUNT_ID,
    LEVEL_ID,
    PLATFORM,
    POST_ID,
    SeeyonBase,
    fmt_time,
    long_id,
)
from sync_pipeline.devtools.sandbox.seeyon.model import (
    AFFAIR_CANCELLED,
    AFFAIR_DONE,
    AFFAIR_PENDING,
    AFFAIR_SENT,
    ATTITUDE_AGREE,
    ATTITUDE_DISAGREE,
    CTYPE_SENDER,
    FLOW_FINISHED,
    FLOW_REPEALED,
    FLOW_RUNNING,
    FLOW_STOPPED,
    FLOW_WAITING,
    TEMPLATES,
    affair,
    comment,
    new_summary,
)
from sync_pipeline.devtools.sandbox.world import EPOCH_MS, Approval, Department, Person, World

Row = tuple[str, dict[str, Any], int | None, int | None]


def member_id(employee_no: str) -> int:
    """A world person's Seeyon member id."""
    return long_id("member", employee_no)


def department_id(world_id: str) -> int:
    return long_id("department", world_id)


def summary_id(request_id: str) -> int:
    """A world approval's Seeyon summaryId (flowId)."""
    return long_id("summary", request_id)


class Seeding(SeeyonBase):
    """Seeds the store from a `World`."""

    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        """Departments, members and `approvals` flows; Seeyon keeps no checkins here."""
        departments = self.store.put_many(
            PLATFORM, "department", (_department(d) for d in world.departments)
        )
        members = {p.employee_no: _member(p) for p in world.people}
        self.store.put_many(
            PLATFORM, "member", ((str(m["id"]), m, EPOCH_MS, EPOCH_MS) for m in members.values())
        )
        flows = affairs = 0
        for batch in batched(world.approvals(approvals)):
            summaries: list[Row] = []
            affair_rows: list[Row] = []
            for approval in batch:
                summary, its_affairs = _flow(approval, members)
                at = int(summary["updateDate"])
                summaries.append((str(summary["id"]), summary, summary["createDate"], at))
                affair_rows += [(str(a["id"]), a, a["receiveTime"], at) for a in its_affairs]
            flows += self.store.put_many(PLATFORM, "summary", summaries)
            affairs += self.store.put_many(PLATFORM, "affair", affair_rows)
        return {
            "departments": departments,
            "members": len(members),
            "flows": flows,
            "affairs": affairs,
        }


def _department(dept: Department) -> Row:
    body = {
        "id": department_id(dept.id),
        "name": dept.name,
        "code": dept.id.upper(),
        "orgAccountId": ACCOUNT_ID,
        "superior": department_id(dept.parent_id) if dept.parent_id else ACCOUNT_ID,
        "sortId": int(dept.id[1:]),
        "enabled": True,
        "isDeleted": False,
    }
    return str(body["id"]), body, EPOCH_MS, EPOCH_MS


def _member(person: Person) -> dict[str, Any]:
    return {
        "id": member_id(person.employee_no),
        "name": person.name,
        "loginName": person.email.split("@")[0],
        "code": person.employee_no,  # 人员编码: the key every platform shares
        "orgAccountId": ACCOUNT_ID,
        "orgDepartmentId": department_id(person.department_id),
        "orgPostId": POST_ID,
        "orgLevelId": LEVEL_ID,
        "telNumber": person.mobile,
        "emailAddress": person.email,
        "sortId": person.index,
        "enabled": True,
        "isDeleted": False,
        "createTime": EPOCH_MS,
        "updateTime": EPOCH_MS,
    }


def _flow(
    a: Approval, members: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A world approval as a flow: its summary and the affairs of everyone it reached."""
    template = TEMPLATES[a.template]
    sender = members[a.applicant_no]
    nodes = [int(members[n]["id"]) for n in a.approver_nos]
    form = {}
    for key, value in a.form.items():
        name = key[:-3] + "_time" if key.endswith("_ms") else key
        form[name] = _form_text(key, value)
    summary = new_summary(
        summary_id(a.request_id), template, int(sender["id"]), nodes, a.title, form, a.created_ms
    )
    summary["updateDate"] = a.updated_ms
    sent = affair(summary, int(sender["id"]), None, AFFAIR_SENT, a.created_ms, a.created_ms)
    affairs = [sent]
    received = a.created_ms
    node = 0
    for step in a.history[1:]:
        who = members[step.approver_no]
        if step.action in ("approve", "reject"):
            done = affair(summary, nodes[node], node, AFFAIR_DONE, received, step.at_ms)
            affairs.append(done)
            attitude = ATTITUDE_AGREE if step.action == "approve" else ATTITUDE_DISAGREE
            summary["comments"].append(
                comment(summary, done["id"], who, step.comment, attitude, step.at_ms)
            )
            received = step.at_ms
            node += 1
        elif step.action == "revoke":
            summary["comments"].append(
                comment(summary, sent["id"], who, step.comment, None, step.at_ms, CTYPE_SENDER)
            )
    if a.state == "pending":
        affairs.append(affair(summary, nodes[node], node, AFFAIR_PENDING, received, None))
        summary.update(state=FLOW_RUNNING if node else FLOW_WAITING, current=node)
    elif a.state == "revoked":
        affairs.append(affair(summary, nodes[node], node, AFFAIR_CANCELLED, received, a.updated_ms))
        summary.update(state=FLOW_REPEALED, current=None)
    else:
        summary.update(state=FLOW_FINISHED if a.state == "approved" else FLOW_STOPPED, current=None)
    for item in affairs:
        item["updateDate"] = a.updated_ms
    return summary, affairs


def _form_text(key: str, value: Any) -> str:
    """Form values are text; dates as A8 shows them, "yyyy-MM-dd HH:mm" in server time."""
    if key.endswith("_ms"):
        return fmt_time(int(value))
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)
