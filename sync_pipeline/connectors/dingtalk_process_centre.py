"""DingTalk's process centre as a target: OA approvals mirrored as third-party instances
with a todo task per current approver, kept current as they move.

Contract (alibabacloud-dingtalk workflow_1_0, `/v1.0/workflow/processCentres/...`; the
sandbox's dingtalk module docstring lists what is confirmed): a schema (ours, found by name
or saved once), an instance per OA request (`processInstanceId` chosen by DingTalk), todo
tasks per approver (`taskId` chosen by DingTalk), each task and the instance closed with a
status and result. A todo links back to the OA by `url`: DingTalk has no action callback to
the integrator for these, so approvers decide in the OA.

Nothing here has a dedupe handle, so idempotency is our own bookkeeping (DESIGN.md section 3):
the handle of what DingTalk holds for a request, {"i": processInstanceId, "t": {"<node>/<userId>":
taskId of each open task}, "f": finished, "n": changes made so far}, is the write's target id, which
the id map keeps and the planner hands to the next write of that request: "check before
create". Inside one write, each call that changes DingTalk is noted at once in Redis under the
request, so a retry after a failure part-way resumes from what was made (the handle with more
changes wins) instead of making it again. Only a create whose answer was lost is unknown; it
raises OutcomeUnknown and the write step parks it for an operator, never resends it. The same
Redis key, taken with SET NX before an instance is created, keeps two writes of one request
(a pull and a webhook at once) from creating two instances.

Options (`process_centre:` of the connector, `ProcessCentreOptionsSchema`): `name` (the
schema's name, default "OA approvals").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from sync_pipeline.config.options import OptionsSchema, Text
from sync_pipeline.connectors.base import TargetView
from sync_pipeline.connectors.notify import approval_instance, pending_approvers, rejected
from sync_pipeline.errors import OutcomeUnknown, VendorRejected, VendorUnavailable
from sync_pipeline.records import WriteRequest, WriteResult, WriteStatus

VENDOR = "dingtalk"
STREAM = "approval_center"
KIND = "approval_center"
CENTRE = "v1.0/workflow/processCentres"
DEFAULT_NAME = "OA approvals"
FINAL = {"approved": ("COMPLETED", "agree"), "rejected": ("COMPLETED", "refuse")}
FINAL["revoked"] = ("TERMINATED", "")
NOTE_TTL_S = 7 * 86_400  # the id map holds the handle for good; the note covers one write
CREATING_TTL_S = 60  # how long a create may take before another write may try
STATUSES = ("pending", *FINAL)
RUNNING = "RUNNING"  # a task still to do (todoTasks lists only these)
TODO_PAGE_SIZE = 100  # the most todoTasks gives a page
TODO_MAX_PAGES = 1000  # a bound on one user's list, so a looping answer cannot go on forever

# (method, path under v1.0/workflow/processCentres, api bucket, body, idempotent) -> answer;
# a GET's body goes as its query
Call = Callable[[str, str, str, Any, bool], Mapping[str, Any]]


@dataclass(frozen=True)
class ProcessCentreOptions:
    name: str = DEFAULT_NAME  # the schema DingTalk shows the instances under, found by name


class ProcessCentreOptionsSchema(OptionsSchema):
    BUILDS = ProcessCentreOptions
    name = Text()


@dataclass
class Handle:
    """What DingTalk holds for one request (module docstring)."""

    instance: str
    tasks: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    changes: int = 0  # calls that changed DingTalk, so the more advanced of two copies wins

    def text(self) -> str:
        data = {"i": self.instance, "t": self.tasks, "f": self.finished, "n": self.changes}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str | bytes | None) -> Handle | None:
        try:
            data = json.loads(text) if text else None
        except ValueError:
            return None
        if not isinstance(data, dict) or not data.get("i"):
            return None
        tasks = {str(k): int(v) for k, v in (data.get("t") or {}).items()}
        return cls(str(data["i"]), tasks, bool(data.get("f")), int(data.get("n") or 0))


class ProcessCentre:
    """Writes of stream "approval_center" for one DingTalk app."""

    def __init__(self, call: Call, notes: redis.Redis, app: str, name: str) -> None:
        self._call = call
        self._notes = notes
        self._app = app
        self.name = name
        self._process_code: str | None = None

    def write(self, request: WriteRequest) -> WriteResult:
        content, problem = approval_instance(request, "a process centre instance", STATUSES)
        if problem:
            return rejected(request, problem)
        handle = self._handle(request)
        if handle is None:
            handle = self._create(request.source_id, content)
        self._move(request.source_id, handle, content)
        return WriteResult(
            request.effect_key, WriteStatus.DONE, handle.text(), extra={"instance": handle.instance}
        )

    # -- reading back (reconciliation) ---------------------------------------------------------
    # DingTalk documents no read of an instance; its one read, `todoTasks`, lists one user's
    # open (RUNNING) tasks. So what is compared is whose tasks are open on each instance, read
    # through the todo lists of the users concerned (the instance's approvers now, and those
    # the handle holds tasks for), among the todos we hold or plan: a todo of ours closed or
    # cancelled behind our back shows, and one we hold that should be closed. The instance's
    # own status cannot be read, a todo opened behind our back for someone else is not seen,
    # and there is no listing of every instance, so nothing is found missing or extra.
    def expected_view(self, request: WriteRequest) -> TargetView | None:
        """The instance a write of `request` leaves: whose tasks are open, as node/user."""
        content, problem = approval_instance(request, "a process centre instance", STATUSES)
        handle = Handle.parse(request.target_id)
        if problem or handle is None:
            return None
        node = str(content.get("node") or "-")
        return _view(handle.instance, [f"{node}/{user}" for user in pending_approvers(content)])

    def read_back(self, requests: Sequence[WriteRequest]) -> dict[str, TargetView]:
        """The instances these writes made, each with whose tasks DingTalk has open on it."""
        ours: dict[str, set[str]] = {}  # instance -> the node/user todos we hold or plan
        for request in requests:
            handle = Handle.parse(request.target_id)
            if handle is None:
                continue
            view = self.expected_view(request)
            planned = view.as_dict()["open_tasks"].split(",") if view else []
            ours[handle.instance] = ours.get(handle.instance, set()) | {*handle.tasks, *planned}
        users = {key.rsplit("/", 1)[-1] for keys in ours.values() for key in keys if key}
        open_on: dict[str, list[str]] = {instance: [] for instance in ours}
        for user in sorted(users):
            for task in self._todo(user):
                instance = str(task.get("processInstanceId"))
                key = f"{task.get('activityId') or '-'}/{user}"
                if key in ours.get(instance, ()) and task.get("status") == RUNNING:
                    open_on[instance].append(key)
        return {instance: _view(instance, keys) for instance, keys in open_on.items()}

    def repair_request(self, request: WriteRequest, held: TargetView | None) -> WriteRequest:
        """The request's write on a handle that holds only the tasks DingTalk has open: the
        write opens again (one call) the tasks closed behind our back, and closes the ones
        that are over, on the same instance; the handle outranks the last write's note."""
        handle = Handle.parse(request.target_id)
        if handle is None or held is None:
            return request  # nothing of ours to build on: the write says why (rejected)
        noted = Handle.parse(self._notes.get(self._key(request.source_id)))
        open_now = set(filter(None, held.as_dict().get("open_tasks", "").split(",")))
        handle.tasks = {key: task for key, task in handle.tasks.items() if key in open_now}
        handle.changes = max(handle.changes, noted.changes if noted else 0) + 1
        return replace(request, target_id=handle.text())

    def _todo(self, user: str) -> list[Mapping[str, Any]]:
        """Every open task of `user` in the process centre, page by page."""
        tasks: list[Mapping[str, Any]] = []
        number = 1
        while True:
            query = {"userId": user, "pageNumber": number, "pageSize": TODO_PAGE_SIZE}
            found = self._call("GET", "todoTasks", "processCentres/todoTasks", query, True)
            result = found.get("result") or {}
            tasks += [t for t in result.get("list") or [] if isinstance(t, Mapping)]
            if not result.get("hasMore") or number >= TODO_MAX_PAGES:
                return tasks
            number += 1

    # -- bookkeeping ---------------------------------------------------------------------------
    def _key(self, source_id: str) -> str:
        return f"dingtalk:process_centre:{self._app}:{source_id}"

    def _handle(self, request: WriteRequest) -> Handle | None:
        """The newer of the id map's handle and the note of a write that stopped part-way."""
        held = Handle.parse(request.target_id)
        noted = Handle.parse(self._notes.get(self._key(request.source_id)))
        found = [h for h in (held, noted) if h is not None]
        return max(found, key=lambda h: h.changes) if found else None

    def _note(self, source_id: str, handle: Handle) -> None:
        """Count one change made at DingTalk and keep the handle until the id map has it."""
        handle.changes += 1
        self._notes.set(self._key(source_id), handle.text(), ex=NOTE_TTL_S)

    # -- calls ---------------------------------------------------------------------------------
    def process_code(self) -> str:
        """Our schema's code: found by name, else saved once (then found by name)."""
        if self._process_code is None:
            try:
                found = self._call(
                    "GET",
                    "schemaNames/processCodes",
                    "processCentres/schemaNames/processCodes",
                    {"name": self.name},
                    True,
                )
                code = _code(found.get("result"))
            except VendorRejected:  # no schema of that name yet
                code = None
            if code is None:
                saved = self._call(
                    "POST",
                    "schemas",
                    "processCentres/schemas",
                    {
                        "name": self.name,
                        "description": "Approvals kept by the OA",
                        "formComponents": [
                            {
                                "componentType": "TextField",
                                "props": {"componentId": "TextField_summary", "label": "Summary"},
                            }
                        ],
                    },
                    False,
                )
                code = _code(saved.get("result"))
                if code is None:
                    raise OutcomeUnknown(VENDOR, "no_process_code", "processCentres/schemas")
            self._process_code = code
        return self._process_code

    def _create(self, source_id: str, content: Mapping[str, Any]) -> Handle:
        """The request's instance, made once: the Redis claim keeps a concurrent write out."""
        claim = self._key(source_id) + ":creating"
        if not self._notes.set(claim, "1", nx=True, ex=CREATING_TTL_S):
            raise VendorUnavailable(VENDOR, "instance_being_created", source_id)
        form = content.get("form")
        body = self._call(
            "POST",
            "instances",
            "processCentres/instances",
            {
                "processCode": self.process_code(),
                "originatorUserId": str(content["applicant"]),
                "title": str(content.get("title") or source_id),
                "url": str(content["url"]),
                "formComponentValueList": [
                    {"name": str(k), "value": "" if v is None else str(v)}
                    for k, v in (form.items() if isinstance(form, Mapping) else ())
                ],
            },
            False,
        )
        instance = (body.get("result") or {}).get("processInstanceId")
        if not instance:
            raise OutcomeUnknown(VENDOR, "no_process_instance_id", "processCentres/instances")
        handle = Handle(str(instance))
        self._note(source_id, handle)
        return handle

    def _move(self, source_id: str, handle: Handle, content: Mapping[str, Any]) -> None:
        """Close the tasks that are over, open the ones due now, finish the instance if it is.

        Each change is noted before the next call, so a retry resumes where this stopped."""
        status = str(content["status"])
        node = str(content.get("node") or "-")
        approvers = pending_approvers(content)
        wanted = {f"{node}/{user}": user for user in approvers}
        over = {key: task for key, task in handle.tasks.items() if key not in wanted}
        if over:
            last = content.get("last_operator")
            self._call(
                "PUT",
                "tasks",
                "processCentres/tasks",
                {
                    "processInstanceId": handle.instance,
                    "tasks": [_closed(task, key, status, last) for key, task in over.items()],
                },
                True,  # a task closed twice with the same state stays as it is
            )
            handle.tasks = {k: t for k, t in handle.tasks.items() if k not in over}
            self._note(source_id, handle)
        due = {key: user for key, user in wanted.items() if key not in handle.tasks}
        if due and not handle.finished:
            made = self._call(
                "POST",
                "tasks",
                "processCentres/tasks",
                {
                    "processInstanceId": handle.instance,
                    "activityId": node,
                    "tasks": [
                        {"userId": user, "url": str(content["url"])} for user in due.values()
                    ],
                },
                False,
            )
            by_user = {
                str(t.get("userId")): int(t["taskId"])
                for t in made.get("result") or []
                if isinstance(t, Mapping) and t.get("taskId") is not None
            }
            if set(by_user) != set(due.values()):
                raise OutcomeUnknown(VENDOR, "tasks_not_all_made", "processCentres/tasks")
            handle.tasks.update({key: by_user[user] for key, user in due.items()})
            self._note(source_id, handle)
        if status in FINAL and not handle.finished:
            final, result = FINAL[status]
            body = {"processInstanceId": handle.instance, "status": final}
            if result:
                body["result"] = result
            self._call("PUT", "instances", "processCentres/instances", body, True)
            handle.finished = True
            self._note(source_id, handle)
        self._notes.delete(self._key(source_id) + ":creating")


def _view(instance: str, open_tasks: Sequence[str]) -> TargetView:
    return TargetView(instance, (("open_tasks", ",".join(sorted(set(open_tasks)))),))


def _closed(task: int, key: str, status: str, last: Any) -> dict[str, Any]:
    """A task that is over: decided by its approver if they acted last, else cancelled."""
    if key.rsplit("/", 1)[-1] == last and status != "revoked":
        return {
            "taskId": task,
            "status": "COMPLETED",
            "result": "refuse" if status == "rejected" else "agree",
        }
    return {"taskId": task, "status": "CANCELED"}


def _code(result: Any) -> str | None:
    code = result.get("processCode") if isinstance(result, Mapping) else None
    return str(code) if code else None
