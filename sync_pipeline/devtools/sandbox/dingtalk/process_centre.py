"""The third-party process centre ("三方流程" / integrated todos: an OA keeps its own flow and
DingTalk's approval center shows it), from alibabacloud-dingtalk workflow_1_0 (client paths and
request / response models) and the older topapi process/workrecord pages it replaces:
    POST /v1.0/workflow/processCentres/schemas       SaveProcess {name*, description,
         formComponents*[{componentType, props{componentId, label}}], processCode (given:
         update that schema), templateConfig, processFeatureConfig} -> result.processCode
    GET  /v1.0/workflow/processCentres/schemaNames/processCodes?name= -> result{processCode,
         gmtModified}
    POST /v1.0/workflow/processCentres/instances     SaveIntegratedInstance {processCode*,
         originatorUserId*, url*, title, formComponentValueList[{name, value}], notifiers,
         bizData, featureConfig} -> result.processInstanceId
    PUT  /v1.0/workflow/processCentres/instances     UpdateProcessInstance {processInstanceId*,
         status* COMPLETED | TERMINATED, result agree | refuse, notifiers} -> success
    POST /v1.0/workflow/processCentres/tasks         CreateIntegratedTask {processInstanceId*,
         activityId, tasks*[{userId, url, customData, dueTimestamp}]} -> result[{taskId, userId}]
    PUT  /v1.0/workflow/processCentres/tasks         UpdateIntegratedTask {processInstanceId,
         tasks*[{taskId*, status*, result}]} -> success
    POST /v1.0/workflow/processCentres/tasks/cancel  CancelIntegratedTask {processInstanceId*,
         activityId*, activityIds} -> success
    GET  /v1.0/workflow/processCentres/todoTasks?userId&pageNumber&pageSize -> result{hasMore,
         list[{processInstanceId, taskId, activityId, status, result, createTime, finishTime,
         userId}]}
There is no dedupe handle on any of these: a repeated create makes a second instance or task.
A todo links back to the OA by its `url`; DingTalk sends the integrator no signed action
callback for these todos (featureConfig.features[].callback {apiKey, appUuid, version} points
at a DingTalk connector app, not at an HTTP URL of ours), so nothing is pressed here.
Unconfirmed, and chosen here: a new instance is RUNNING with no result; task statuses are
RUNNING (to do), COMPLETED and CANCELED, and results agree | refuse (the topapi task update's
words); a finished instance or task takes the same final state again (success) but no other;
result is required with COMPLETED; unknown ids are InvalidParameter (HTTP 400).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.dingtalk.base import (
    CHINA,
    PLATFORM,
    DingTalkBase,
    as_int,
    invalid,
    missing,
)

PC_INSTANCE_STATUSES = ("COMPLETED", "TERMINATED")  # what an integrator may set
PC_TASK_STATUSES = ("COMPLETED", "CANCELED")
PC_RESULTS = ("agree", "refuse")
PC_TASK_ID_BASE = 70_000_000_000


class ProcessCentre(DingTalkBase):
    """The third-party process centre: schemas, integrated instances and their todo tasks."""

    def pc_save_schema(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("name"):
            raise missing("name")
        components = args.get("formComponents")
        if not isinstance(components, list) or not components:
            raise missing("formComponents")
        for component in components:
            props = component.get("props") if isinstance(component, dict) else None
            if not component.get("componentType") or not isinstance(props, dict):
                raise invalid("formComponents[] need componentType and props")
        with self._write_lock:
            code = str(args.get("processCode") or "")
            if code and self.store.get(PLATFORM, "pc_schema", code) is None:
                raise invalid("processCode不存在")
            code = code or "PROC-" + str(uuid.uuid4()).upper()
            saved = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
            row = {**args, "processCode": code, "_saved": saved}
            self.store.put(PLATFORM, "pc_schema", code, row)
            self.store.record(PLATFORM, "workflow/processCentres/schemas", app, args)
        return {"result": {"processCode": code}}

    def pc_code_by_name(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("name"):
            raise missing("name")
        found = self.store.list(PLATFORM, "pc_schema", equals={"name": str(args["name"])})
        if not found:
            raise invalid("name不存在")  # the not-found code is unconfirmed
        newest = found[-1]
        return {"result": {"processCode": newest["processCode"], "gmtModified": newest["_saved"]}}

    def pc_save_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        for name in ("processCode", "originatorUserId", "url"):
            if not args.get(name):
                raise missing(name)
        if self.store.get(PLATFORM, "pc_schema", str(args["processCode"])) is None:
            raise invalid("processCode不存在")
        if self.store.get(PLATFORM, "user", str(args["originatorUserId"])) is None:
            raise invalid("originatorUserId不存在")
        values = args.get("formComponentValueList") or []
        if not isinstance(values, list) or not all(
            isinstance(v, dict) and v.get("name") for v in values
        ):
            raise invalid("formComponentValueList[] need a name")
        instance_id = str(uuid.uuid4())
        row = {
            **args,
            "processInstanceId": instance_id,
            "status": "RUNNING",
            "result": "",
            "createTime": now_ms(),
            "tasks": [],
        }
        with self._write_lock:
            self.store.put(PLATFORM, "pc_instance", instance_id, row)
            body = {**args, "processInstanceId": instance_id}
            self.store.record(PLATFORM, "workflow/processCentres/instances", app, body)
        return {"result": {"processInstanceId": instance_id}}

    def _pc_instance(self, args: Mapping[str, Any]) -> dict[str, Any]:
        if not args.get("processInstanceId"):
            raise missing("processInstanceId")
        row = self.store.get(PLATFORM, "pc_instance", str(args["processInstanceId"]))
        if row is None:
            raise invalid("processInstanceId不存在")
        return row

    def pc_update_instance(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        status, result = args.get("status"), args.get("result") or ""
        if not status:
            raise missing("status")
        if status not in PC_INSTANCE_STATUSES:
            raise invalid(f"status must be one of {', '.join(PC_INSTANCE_STATUSES)}")
        if status == "COMPLETED" and result not in PC_RESULTS:
            raise invalid("result must be agree or refuse when the status is COMPLETED")
        with self._write_lock:
            row = self._pc_instance(args)
            if row["status"] != "RUNNING" and (row["status"], row["result"]) != (status, result):
                raise invalid(f"the instance is {row['status']} already")
            row.update(status=status, result=result, finishTime=row.get("finishTime") or now_ms())
            self.store.put(PLATFORM, "pc_instance", row["processInstanceId"], row)
            self.store.record(PLATFORM, "workflow/processCentres/instances PUT", app, args)
        return {"success": True}

    def pc_create_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise missing("tasks")
        with self._write_lock:
            row = self._pc_instance(args)
            if row["status"] != "RUNNING":
                raise invalid(f"the instance is {row['status']}")
            made: list[dict[str, Any]] = []
            for task in tasks:
                user = str(task.get("userId", "")) if isinstance(task, dict) else ""
                if self.store.get(PLATFORM, "user", user) is None:
                    raise invalid(f"userId {user!r}不存在")
                task_id = PC_TASK_ID_BASE + self.store.count(PLATFORM, "pc_task") + len(made)
                made.append(
                    {
                        "taskId": task_id,
                        "userId": user,
                        "url": task.get("url") or row["url"],
                        "activityId": str(args.get("activityId") or ""),
                        "status": "RUNNING",
                        "result": "",
                        "createTime": now_ms(),
                        "processInstanceId": row["processInstanceId"],
                    }
                )
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in made]
            )
            row["tasks"] += [t["taskId"] for t in made]
            self.store.put(PLATFORM, "pc_instance", row["processInstanceId"], row)
            body = {**args, "taskIds": [t["taskId"] for t in made]}
            self.store.record(PLATFORM, "workflow/processCentres/tasks", app, body)
        return {
            "success": True,
            "result": [{"taskId": t["taskId"], "userId": t["userId"]} for t in made],
        }

    def pc_update_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        tasks = args.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise missing("tasks")
        with self._write_lock:
            changed = []
            for entry in tasks:
                if not isinstance(entry, dict) or not entry.get("taskId"):
                    raise missing("taskId")
                status, result = entry.get("status"), entry.get("result") or ""
                if status not in PC_TASK_STATUSES:
                    raise invalid(f"status must be one of {', '.join(PC_TASK_STATUSES)}")
                if result and result not in PC_RESULTS:
                    raise invalid("result must be agree or refuse")
                task = self.store.get(PLATFORM, "pc_task", str(entry["taskId"]))
                wanted = args.get("processInstanceId")
                if task is None or wanted not in (None, "", task["processInstanceId"]):
                    raise invalid(f"taskId {entry['taskId']}不存在")
                if task["status"] != "RUNNING" and (task["status"], task["result"]) != (
                    status,
                    result,
                ):
                    raise invalid(f"task {entry['taskId']} is {task['status']} already")
                task.update(status=status, result=result)
                task["finishTime"] = task.get("finishTime") or now_ms()
                changed.append(task)
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in changed]
            )
            self.store.record(PLATFORM, "workflow/processCentres/tasks PUT", app, args)
        return {"success": True}

    def pc_cancel_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("activityId"):
            raise missing("activityId")
        activities = {str(args["activityId"]), *(str(a) for a in args.get("activityIds") or [])}
        with self._write_lock:
            row = self._pc_instance(args)
            open_tasks = [
                task
                for task in self.store.list(
                    PLATFORM, "pc_task", one_of={"taskId": list(row["tasks"])}
                )
                if task["status"] == "RUNNING" and task["activityId"] in activities
            ]
            for task in open_tasks:
                task.update(status="CANCELED", finishTime=now_ms())
            self.store.put_many(
                PLATFORM, "pc_task", [(str(t["taskId"]), t, None, None) for t in open_tasks]
            )
            self.store.record(PLATFORM, "workflow/processCentres/tasks/cancel", app, args)
        return {"success": True}

    def pc_todo_tasks(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("userId"):
            raise missing("userId")
        number = as_int(args.get("pageNumber", 1), "pageNumber")
        size = as_int(args.get("pageSize", 20), "pageSize")
        if number < 1 or not 1 <= size <= 100:
            raise invalid("pageNumber starts at 1 and pageSize is 1 to 100")
        todo = self.store.list(
            PLATFORM,
            "pc_task",
            time_field="created_ms",
            equals={"userId": str(args["userId"]), "status": "RUNNING"},
        )
        page = todo[(number - 1) * size : number * size]
        keys = ("processInstanceId", "taskId", "activityId", "status", "result", "createTime")
        listed = [{k: t.get(k) for k in (*keys, "userId")} for t in page]
        return {"result": {"hasMore": number * size < len(todo), "list": listed}}
