"""DingTalk workflow (`/v1.0/workflow/processes/...`, `/v1.0/workflow/processInstances`):
instance ids, one instance, and executing a task; instances are built from the seeded
world until a decision stores them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.dingtalk.base import (
    CST_MS,
    PLATFORM,
    PROCESS_CODES,
    ApiError,
    DingTalkBase,
    as_int,
    dept_id_for,
    invalid,
    missing,
    userid_for,
)
from sync_pipeline.devtools.sandbox.world import DAY_MS, EPOCH_MS, Approval, World

MAX_QUERY_WINDOW_MS = 120 * DAY_MS  # instanceIds/query: endTime - startTime <= 120 days
MAX_LOOKBACK_MS = 365 * DAY_MS  # ... and startTime no older than 365 days
EPOCH_DAY = EPOCH_MS // DAY_MS
EPOCH_DATE = datetime.fromtimestamp(EPOCH_MS / 1000, UTC).date()
TASK_ID_BASE = 60_000_000_000

INSTANCE_STATUS = {"pending": "RUNNING", "approved": "COMPLETED", "rejected": "COMPLETED"}
INSTANCE_STATUS["revoked"] = "TERMINATED"
INSTANCE_RESULT = {"approved": "agree", "rejected": "refuse"}
STATUSES = ("NEW", "RUNNING", "TERMINATED", "COMPLETED", "CANCELED")


def instance_kind(code: str) -> str:
    """Instances are stored per process, so listing one process walks only its own index."""
    return f"instance:{code}"


def instance_id_for(world: World, approval: Approval) -> str:
    """A uuid-shaped id, stable per (seed, number); md5 only because uuid5 slowed seeding."""
    h = hashlib.md5(f"dingtalk-instance/{world.seed}/{approval.number}".encode()).hexdigest()  # noqa: S324
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_minute(ms: int) -> str:
    """DingTalk's workflow times: UTC, to the minute, "yyyy-MM-ddTHH:mmZ"."""
    day, minute = divmod(ms // 60_000, 1440)
    return f"{day_text(day)}T{minute // 60:02d}:{minute % 60:02d}Z"


def china_minute(ms: int) -> str:
    """A form's date and time as DingTalk shows it: China time, "yyyy-MM-dd HH:mm"."""
    day, minute = divmod((ms + CST_MS) // 60_000, 1440)
    return f"{day_text(day)} {minute // 60:02d}:{minute % 60:02d}"


@functools.lru_cache(maxsize=4096)
def day_text(day: int) -> str:
    """yyyy-MM-dd of a day number since 1970; cached, as strftime dominated seeding time."""
    return (EPOCH_DATE + timedelta(days=day - EPOCH_DAY)).isoformat()


DIGITS_ONLY = str.maketrans("", "", "-: ")


class Workflow(DingTalkBase):
    """Approval instances: listing, reading, executing tasks."""

    def _load_instance(self, instance_id: str) -> dict[str, Any] | None:
        """An instance by id, with its `result`: stored once written, else built from the world.

        Seeded instances are stored as their filter fields and world number only, so that
        100,000 of them seed in seconds; the world is deterministic, so the same number always
        gives the same instance. One indexed lookup per process, as instances live per process.
        """
        for code in PROCESS_CODES.values():
            row = self.store.get(PLATFORM, instance_kind(code), instance_id)
            if row is not None:
                if "result" not in row:
                    world, userids = self._world()
                    approval = world.approval(int(row["number"]))
                    row["result"] = instance_result(approval, world, userids, row)
                return row
        return None

    def _world(self) -> tuple[World, dict[str, str]]:
        saved = self.store.setting(PLATFORM, "world") or "[]"
        with self._cache_lock:
            if self._world_cache is None or self._world_cache[0] != saved:
                seed, people = json.loads(saved)
                world = World(seed, people_count=people)
                userids = {p.employee_no: userid_for(p) for p in world.people}
                self._world_cache = (saved, world, userids)
            return self._world_cache[1], self._world_cache[2]

    def _save_instance(self, row: Mapping[str, Any]) -> None:
        kind = instance_kind(row["processCode"])
        self.store.put(PLATFORM, kind, row["processInstanceId"], row, updated_ms=now_ms())

    def _clock_ms(self) -> int:
        clock = self.store.setting(PLATFORM, "clock_ms")
        return now_ms() if clock is None else min(now_ms(), int(clock))

    # -- workflow ----------------------------------------------------------------------------
    def list_instance_ids(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Instance ids of one process created in [startTime, endTime], in creation order."""
        code = args.get("processCode")
        if not code:
            raise missing("processCode")
        if args.get("startTime") in (None, ""):
            raise missing("startTime")
        start = as_int(args["startTime"], "startTime")
        clock = self._clock_ms()
        end = as_int(args["endTime"], "endTime") if args.get("endTime") not in (None, "") else clock
        if end < start:
            raise invalid("endTime must not be before startTime")
        if end - start > MAX_QUERY_WINDOW_MS:
            raise invalid("the time window must not exceed 120 days")
        if start < clock - MAX_LOOKBACK_MS:
            raise invalid("startTime must be within the last 365 days")
        size = as_int(args.get("maxResults", 20), "maxResults")
        if not 0 < size <= 20:
            raise invalid("maxResults must be between 1 and 20")
        offset = as_int(args.get("nextToken", 0) or 0, "nextToken")
        if offset < 0:
            raise invalid("nextToken must not be negative")
        one_of: dict[str, list[Any]] = {}
        user_ids = args.get("userIds") or []
        if not isinstance(user_ids, list) or len(user_ids) > 10:
            raise invalid("userIds must be a list of at most 10 userIds")
        if user_ids:
            one_of["originatorUserId"] = [str(u) for u in user_ids]
        statuses = args.get("statuses") or []
        if not isinstance(statuses, list) or set(statuses) - set(STATUSES):
            raise invalid(f"statuses must be a list of {', '.join(STATUSES)}")
        if statuses:
            one_of["status"] = statuses
        rows = self.store.list(
            PLATFORM,
            instance_kind(str(code)),
            time_field="created_ms",
            from_ms=start,
            to_ms=end + 1,
            one_of=one_of,
            offset=offset,
            limit=size + 1,
        )
        result: dict[str, Any] = {"list": [row["processInstanceId"] for row in rows[:size]]}
        if len(rows) > size:
            result["nextToken"] = str(offset + size)
        return {"result": result, "success": True}

    def get_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        instance_id = args.get("processInstanceId")
        if not instance_id:
            raise missing("processInstanceId")
        row = self._load_instance(str(instance_id))
        if row is None:
            raise invalid("processInstanceId不存在")  # the not-found code is unconfirmed
        return {"result": row["result"], "success": True}

    def execute_task(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Agree or refuse one task; only its current assignee may, and only once."""
        for name in ("processInstanceId", "taskId", "actionerUserId", "result"):
            if args.get(name) in (None, ""):
                raise missing(name)
        decision = str(args["result"])
        if decision not in ("agree", "refuse"):
            raise invalid("result must be agree or refuse")
        with self._write_lock:
            row = self._load_instance(str(args["processInstanceId"]))
            if row is None:
                raise invalid("processInstanceId不存在")
            decide(
                row,
                as_int(args["taskId"], "taskId"),
                str(args["actionerUserId"]),
                decision,
                str(args.get("remark", "")),
            )
            self._save_instance(row)
            self.store.record(PLATFORM, "workflow/processInstances/execute", app, args)
        return {"result": True, "success": True}


# -- the model: instances as DingTalk shows them -----------------------------------------------
def decide(row: dict[str, Any], task_id: int, user_id: str, decision: str, remark: str) -> None:
    """Apply one assignee's agree/refuse to an instance, creating the next task if any."""
    result = row["result"]
    if result["status"] != "RUNNING":
        raise invalid("process instance is not running")
    task = next((t for t in result["tasks"] if t["taskId"] == task_id), None)
    if task is None or task["status"] != "RUNNING":
        raise invalid("task is not running")
    if task["userId"] != user_id:
        raise ApiError(403, "Forbidden.NotTaskOwner", "only the task's assignee may act on it")
    if decision not in ("agree", "refuse"):
        raise invalid("result must be agree or refuse")
    at = now_ms()
    task.update(status="COMPLETED", result=decision.upper(), finishTime=utc_minute(at))
    result["operationRecords"].append(
        {
            "userId": user_id,
            "date": utc_minute(at),
            "type": "EXECUTE_TASK_NORMAL",
            "result": decision.upper(),
            "remark": remark,
            "showName": "审批人",
            "activityId": task["activityId"],
        }
    )
    chain = result["approverUserIds"]
    position = chain.index(user_id) if user_id in chain else len(chain) - 1
    if decision == "agree" and position + 1 < len(chain):
        result["tasks"].append(new_task(row, position + 1, chain[position + 1], at))
        return
    result.update(status="COMPLETED", result=decision, finishTime=utc_minute(at))
    row["status"] = "COMPLETED"


def terminate(row: dict[str, Any]) -> None:
    """The originator withdraws a running instance: its open task is canceled."""
    result = row["result"]
    at = now_ms()
    for task in result["tasks"]:
        if task["status"] == "RUNNING":
            task.update(status="CANCELED", result="NONE", finishTime=utc_minute(at))
    result["operationRecords"].append(
        {
            "userId": result["originatorUserId"],
            "date": utc_minute(at),
            "type": "TERMINATE_PROCESS_INSTANCE",
            "result": "NONE",
            "remark": "",
            "showName": "发起人",
        }
    )
    result.update(status="TERMINATED", result="", finishTime=utc_minute(at))
    row["status"] = "TERMINATED"


def new_task(row: Mapping[str, Any], position: int, user_id: str, at_ms: int) -> dict[str, Any]:
    instance_id = row["processInstanceId"]
    task_id = TASK_ID_BASE + row["number"] * 10 + position
    return {
        "taskId": task_id,
        "userId": user_id,
        "status": "RUNNING",
        "result": "NONE",
        "createTime": utc_minute(at_ms),
        "activityId": f"act_{position + 1}",
        "processInstanceId": instance_id,
        "pcUrl": f"https://aflow.dingtalk.com/dingtalk/pc/query/pchomepage.htm?procInstId={instance_id}&taskId={task_id}",
        "mobileUrl": f"https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm?procInstId={instance_id}&taskId={task_id}",
    }


def instance_stub(
    approval: Approval, world: World, userids: Mapping[str, str]
) -> tuple[str, dict[str, Any], int, int]:
    """What instanceIds/query filters on, and the world number `instance_result` expands."""
    instance_id = instance_id_for(world, approval)
    row: dict[str, Any] = {
        "processInstanceId": instance_id,
        "processCode": PROCESS_CODES[approval.template],
        "number": approval.number,
        "createTimeMs": approval.created_ms,
        "originatorUserId": userids[approval.applicant_no],
        "status": INSTANCE_STATUS[approval.state],
    }
    return instance_id, row, approval.created_ms, approval.updated_ms


def instance_result(
    approval: Approval, world: World, userids: Mapping[str, str], row: Mapping[str, Any]
) -> dict[str, Any]:
    """One world approval as getProcessInstance's `result`."""
    applicant = world.person(approval.applicant_no)
    chain = [userids[n] for n in approval.approver_nos]
    records = [
        {
            "userId": userids[approval.applicant_no],
            "date": utc_minute(approval.created_ms),
            "type": "START_PROCESS_INSTANCE",
            "result": "NONE",
            "remark": "",
            "showName": "发起人",
        }
    ]
    tasks = []
    previous = approval.created_ms
    for step in approval.history[1:]:
        if step.action in ("approve", "reject"):
            position = approval.approver_nos.index(step.approver_no)
            task = new_task(row, position, userids[step.approver_no], previous)
            verdict = "AGREE" if step.action == "approve" else "REFUSE"
            task.update(status="COMPLETED", result=verdict, finishTime=utc_minute(step.at_ms))
            tasks.append(task)
            records.append(
                {
                    "userId": userids[step.approver_no],
                    "date": utc_minute(step.at_ms),
                    "type": "EXECUTE_TASK_NORMAL",
                    "result": verdict,
                    "remark": step.comment,
                    "showName": "审批人",
                    "activityId": task["activityId"],
                }
            )
        elif step.action == "revoke":
            position = len(tasks)
            task = new_task(row, position, chain[position], previous)
            task.update(status="CANCELED", result="NONE", finishTime=utc_minute(step.at_ms))
            tasks.append(task)
            records.append(
                {
                    "userId": userids[approval.applicant_no],
                    "date": utc_minute(step.at_ms),
                    "type": "TERMINATE_PROCESS_INSTANCE",
                    "result": "NONE",
                    "remark": step.comment,
                    "showName": "发起人",
                }
            )
        previous = step.at_ms
    if approval.state == "pending":
        position = len(tasks)
        tasks.append(new_task(row, position, chain[position], previous))
    finished = approval.state != "pending"
    return {
        "title": approval.title,
        "createTime": utc_minute(approval.created_ms),
        "finishTime": utc_minute(approval.updated_ms) if finished else "",
        "originatorUserId": userids[approval.applicant_no],
        "originatorDeptId": str(dept_id_for(applicant.department_id)),
        "originatorDeptName": world.departments[int(applicant.department_id[1:]) - 1].name,
        "status": INSTANCE_STATUS[approval.state],
        "result": INSTANCE_RESULT.get(approval.state, ""),
        "approverUserIds": chain,
        "ccUserIds": [],
        "businessId": china_minute(approval.created_ms).translate(DIGITS_ONLY)
        + f"{approval.number:06d}",
        "bizAction": "NONE",
        "bizData": "",
        "mainProcessInstanceId": "",
        "attachedProcessInstanceIds": [],
        "formComponentValues": form_values(approval),
        "operationRecords": records,
        "tasks": tasks,
    }


def form_values(approval: Approval) -> list[dict[str, Any]]:
    """formComponentValues with DingTalk's component types for the world's templates."""
    form = approval.form

    def field(component: str, name: str, value: str, number: int) -> dict[str, Any]:
        return {
            "componentType": component,
            "name": name,
            "id": f"{component}-J{number:09d}",
            "value": value,
            "extValue": "",
            "bizAlias": "",
        }

    if approval.template == "leave":
        span = json.dumps(
            [
                china_minute(form["start_ms"]),
                china_minute(form["end_ms"]),
            ]
        )
        return [
            field("DDSelectField", "Leave type", form["leave_type"], 1),
            field("DDDateRangeField", "Period", span, 2),
            field("NumberField", "Days", str(form["days"]), 3),
            field("TextareaField", "Reason", form["reason"], 4),
        ]
    if approval.template == "expense":
        return [
            field("MoneyField", "Amount", f"{form['amount']:.2f}", 1),
            field("DDSelectField", "Category", form["category"], 2),
            field("TextareaField", "Reason", form["reason"], 3),
        ]
    return [
        field("TextField", "Subject", form["subject"], 1),
        field("TextareaField", "Detail", form["detail"], 2),
    ]
