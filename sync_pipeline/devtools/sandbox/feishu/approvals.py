"""Feishu approval v4 (`/approval/v4/instances`, `tasks/approve|reject`, `subscribe`):
instances are built from the seeded world until a decision stores them.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.feishu.base import (
    API,
    PLATFORM,
    FeishuBase,
    FeishuError,
    _approval_param_error,
    _Caller,
    _digits,
    _encode_token,
    _hex,
    _public,
    _uuid_like,
    _ymd,
)
from sync_pipeline.devtools.sandbox.world import Approval, World

APPROVAL_NAMES = {"leave": "Leave", "expense": "Expense claim", "general": "General request"}
INSTANCE_STATUS = {
    "pending": "PENDING",
    "approved": "APPROVED",
    "rejected": "REJECTED",
    "revoked": "CANCELED",
}


class Approvals(FeishuBase):
    """Approval instances, task decisions and event subscriptions."""

    def _list_instances(self, request: Request, caller: _Caller) -> dict[str, Any]:
        q = request.query_params
        code = q.get("approval_code", "")
        if not code:
            raise _approval_param_error("approval_code is required")
        if self.store.get(PLATFORM, "approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        try:
            start, end = int(q.get("start_time", "")), int(q.get("end_time", ""))
        except ValueError:
            raise _approval_param_error("start_time and end_time are required (ms)") from None
        size = self._page_size(request, 100, 100, _approval_param_error)  # max 100 (unconfirmed)
        after = self._cursor(q.get("page_token"), _approval_param_error)
        rows = self._keyset(
            "instance",
            "approval_code",
            code,
            from_ms=start,
            to_ms=end,
            after=after,
            limit=size + 1,
            with_body=False,
        )
        data: dict[str, Any] = {"instance_code_list": [i for _, i, _ in rows[:size]]}
        data["has_more"] = len(rows) > size
        if data["has_more"]:
            data["page_token"] = _encode_token(rows[size - 1][:2])
        return data

    def _get_instance(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "approval.instance.get")
        instance = self._instance(request.path_params["instance_id"])
        if instance is None:
            raise FeishuError(1390003, "instance code not found")
        return _public(instance)

    async def _approve_task(self, request: Request, caller: _Caller) -> dict[str, Any]:
        return self._decide(await self._json(request), request, caller, approve=True)

    async def _reject_task(self, request: Request, caller: _Caller) -> dict[str, Any]:
        return self._decide(await self._json(request), request, caller, approve=False)

    def _decide(
        self, body: Mapping[str, Any], request: Request, caller: _Caller, *, approve: bool
    ) -> dict[str, Any]:
        for field in ("approval_code", "instance_code", "user_id", "task_id"):
            if not body.get(field):
                raise _approval_param_error(f"{field} is required")
        id_type = request.query_params.get("user_id_type", "open_id")
        if id_type not in ("open_id", "user_id", "union_id"):
            raise _approval_param_error("user_id_type must be open_id, user_id or union_id")
        instance = self._instance(str(body["instance_code"]))
        if instance is None:
            raise FeishuError(1390003, "instance code not found")
        if instance["approval_code"] != body["approval_code"]:
            raise FeishuError(1390002, "approval code not found")
        user = self._user_by(id_type, str(body["user_id"]))
        task = next((t for t in instance["task_list"] if t["id"] == body["task_id"]), None)
        if task is None or user is None or task["open_id"] != user["open_id"]:
            raise _approval_param_error("task_id does not belong to user_id")
        if task["status"] != "PENDING" or instance["status"] != "PENDING":
            raise _approval_param_error("task is not pending")
        endpoint = f"POST {API}/approval/v4/tasks/{'approve' if approve else 'reject'}"
        self.store.record(PLATFORM, endpoint, caller.app_id, dict(body))
        updated = self._apply_decision(instance, task, user, approve, str(body.get("comment", "")))
        if self._subscribed(updated["approval_code"]):
            threading.Thread(
                target=self._send_approval_events, args=(updated, task["id"]), daemon=True
            ).start()
        return {}

    def _apply_decision(
        self,
        instance: dict[str, Any],
        task: dict[str, Any],
        user: Mapping[str, Any],
        approve: bool,
        comment: str,
    ) -> dict[str, Any]:
        """Close `task`, open the next approver's task or finish the instance; store it."""
        at = str(now_ms())
        task.update(status="APPROVED" if approve else "REJECTED", end_time=at)
        instance["timeline"].append(
            {
                "type": "PASS" if approve else "REJECT",
                "create_time": at,
                "user_id": user["user_id"],
                "open_id": user["open_id"],
                "task_id": task["id"],
                "comment": comment,
                "node_key": task["node_id"],
                "ext": "{}",
            }
        )
        if comment:
            instance["comment_list"].append(
                {
                    "id": _digits(instance["instance_code"], "comment", at),
                    "user_id": user["user_id"],
                    "open_id": user["open_id"],
                    "comment": comment,
                    "create_time": at,
                }
            )
        chain: list[dict[str, str]] = instance["_chain"]
        step = len([t for t in instance["task_list"] if t["status"] == "APPROVED"])
        if approve and step < len(chain):
            nxt = chain[step]
            instance["task_list"].append(
                _task(instance["instance_code"], step, nxt, "PENDING", int(at), None)
            )
        else:
            instance["status"] = "APPROVED" if approve else "REJECTED"
            instance["end_time"] = at
        self.store.put(
            PLATFORM, "instance", instance["instance_code"], instance, updated_ms=int(at)
        )
        return instance

    def _instance(self, instance_code: str) -> dict[str, Any] | None:
        """An instance as the API shows it: stored whole once written, else built from the world."""
        row = self.store.get(PLATFORM, "instance", instance_code)
        if row is None or "_n" not in row:
            return row
        raw = self.store.setting(PLATFORM, "world")
        if raw is None:
            return None
        seed, people = json.loads(raw)
        view = _world_view(int(seed), int(people))
        return _instance_body(seed, view.world.approval(int(row["_n"])), view.ids, view.dept_of)

    def _subscribed(self, approval_code: str) -> bool:
        return self.store.get(PLATFORM, "subscription", approval_code) is not None

    def _subscribe(self, request: Request, caller: _Caller) -> dict[str, Any]:
        code = request.path_params["approval_code"]
        if self.store.get(PLATFORM, "approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        if self._subscribed(code):
            raise FeishuError(1390007, "subscription existed")  # code (unconfirmed)
        self.store.put(
            PLATFORM, "subscription", code, {"approval_code": code, "app_id": caller.app_id}
        )
        self.store.record(
            PLATFORM,
            f"POST {API}/approval/v4/approvals/:approval_code/subscribe",
            caller.app_id,
            {"approval_code": code},
        )
        return {}


def _user_ids(seed: int, employee_no: str) -> dict[str, str]:
    return {
        "open_id": f"ou_{_hex(seed, 'open', employee_no)}",
        "user_id": _hex(seed, "user", employee_no, n=8),
        "union_id": f"on_{_hex(seed, 'union', employee_no)}",
    }


def _approval_code(seed: int, template: str) -> str:
    return _uuid_like(seed, "approval", template)


def _task(
    instance_code: str,
    step: int,
    approver: Mapping[str, str],
    status: str,
    start: int,
    end: int | None,
) -> dict[str, Any]:
    return {
        "id": _digits(instance_code, "task", step),
        "user_id": approver["user_id"],
        "open_id": approver["open_id"],
        "status": status,
        "node_id": _node_id(step),
        "node_name": f"Approver {step + 1}",
        "custom_node_id": f"approver_{step + 1}",
        "type": "AND",
        "start_time": str(start),
        "end_time": str(end or 0),
    }


@dataclass(frozen=True)
class _WorldView:
    world: World
    ids: dict[str, dict[str, str]]  # employee_no -> open_id, user_id, union_id
    dept_of: dict[str, str]  # employee_no -> department_id


@functools.lru_cache(maxsize=4)
def _world_view(seed: int, people: int) -> _WorldView:
    world = World(seed, people_count=people)
    root = {d.id for d in world.departments if d.parent_id is None}
    return _WorldView(
        world,
        {p.employee_no: _user_ids(seed, p.employee_no) for p in world.people},
        {p.employee_no: "0" if p.department_id in root else p.department_id for p in world.people},
    )


@functools.cache
def _node_id(step: int) -> str:
    return _hex("node", step)


def _form(values: Mapping[str, Any]) -> str:
    widgets = [
        {
            "id": f"widget{i}",
            "custom_id": key,
            "name": key.replace("_", " ").capitalize(),
            "type": "number" if isinstance(value, int | float) else "input",
            "value": value,
        }
        for i, (key, value) in enumerate(values.items(), start=1)
    ]
    return json.dumps(widgets, ensure_ascii=False)


def _instance_body(
    seed: int,
    a: Approval,
    ids: Mapping[str, Mapping[str, str]],
    dept_of: Mapping[str, str],
) -> dict[str, Any]:
    """The `instances/:instance_id` answer for one world approval (plus the remaining chain)."""
    code = _uuid_like(seed, "instance", a.number)
    applicant = ids[a.applicant_no]
    tasks: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    comments: list[dict[str, Any]] = []
    opened = a.created_ms
    for step in a.history:
        who = ids[step.approver_no]
        entry = {
            "create_time": str(step.at_ms),
            "user_id": who["user_id"],
            "open_id": who["open_id"],
            "ext": "{}",
        }
        if step.action == "submit":
            timeline.append({**entry, "type": "START", "comment": ""})
            continue
        if step.action == "revoke":
            timeline.append({**entry, "type": "CANCEL", "comment": step.comment})
            continue
        index = len(tasks)
        status = "APPROVED" if step.action == "approve" else "REJECTED"
        task = _task(code, index, who, status, opened, step.at_ms)
        tasks.append(task)
        opened = step.at_ms
        kind = "PASS" if step.action == "approve" else "REJECT"
        timeline.append(
            {
                **entry,
                "type": kind,
                "task_id": task["id"],
                "comment": step.comment,
                "node_key": task["node_id"],
            }
        )
        if step.comment:
            comments.append(
                {
                    "id": _digits(code, "comment", index),
                    "user_id": who["user_id"],
                    "open_id": who["open_id"],
                    "comment": step.comment,
                    "create_time": str(step.at_ms),
                }
            )
    for no in a.current_approver_nos:
        tasks.append(_task(code, len(tasks), ids[no], "PENDING", opened, None))
    if a.state == "revoked" and len(tasks) < len(a.approver_nos):
        tasks.append(
            _task(code, len(tasks), ids[a.approver_nos[len(tasks)]], "DONE", opened, a.updated_ms)
        )
    return {
        "approval_code": _approval_code(seed, a.template),
        "approval_name": APPROVAL_NAMES[a.template],
        "instance_code": code,
        "serial_number": f"{_ymd(a.created_ms)}{a.number:06d}",
        "status": INSTANCE_STATUS[a.state],
        "start_time": str(a.created_ms),
        "end_time": "0" if a.state == "pending" else str(a.updated_ms),
        "user_id": applicant["user_id"],
        "open_id": applicant["open_id"],
        "department_id": dept_of[a.applicant_no],
        "uuid": "",
        "form": _form(a.form),
        "task_list": tasks,
        "comment_list": comments,
        "timeline": timeline,
        "reverted": False,
        "_chain": [{k: ids[no][k] for k in ("open_id", "user_id")} for no in a.approver_nos],
    }
