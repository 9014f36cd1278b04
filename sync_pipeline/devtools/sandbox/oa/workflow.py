"""E9 workflow requests (`/api/workflow/paService/...`): the four lists and their counts, one
request's detail, status, operators and log, and the writes (create, submit, reject,
withdraw, comment); also the simulated users who act on requests inside the OA.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.oa.base import (
    ADMIN_USER_ID,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    OA_TZ,
    PLATFORM,
    Call,
    JSONResponse,
    OABase,
    Refused,
    _floor_s,
    _ledger_params,
    _success,
    fmt_time,
    oa_user_id,
    parse_time,
)

HEAD_USER_ID = "101"  # E00001, the company head; second approver of requests created via API

LOGTYPE_APPROVE, LOGTYPE_SAVE, LOGTYPE_SUBMIT, LOGTYPE_REJECT = "0", "1", "2", "3"
LOGTYPE_COMMENT = "9"  # 批注
LOGTYPE_WITHDRAW = "r"  # 撤回; E9's letter for it is unconfirmed


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    type_id: str
    type_name: str
    form_id: str
    fields: tuple[tuple[str, str], ...]  # (fieldName, fieldShowName) of the main table

    @property
    def table(self) -> str:
        return f"formtable_main_{self.form_id.lstrip('-')}"

    def node_id(self, level: int) -> str:
        """Node ids: creation node wf*100, approval level k wf*100+k, archive wf*100+99."""
        return str(int(self.id) * 100 + level)

    def base_info(self) -> dict[str, str]:
        return {
            "workflowId": self.id,
            "workflowName": self.name,
            "workflowTypeId": self.type_id,
            "workflowTypeName": self.type_name,
            "formId": self.form_id,
        }


WORKFLOWS = {
    "leave": Workflow(
        "1001",
        "请假流程 Leave request",
        "10",
        "人事流程",
        "-101",
        (
            ("leave_type", "假期类型"),
            ("start_time", "开始时间"),
            ("end_time", "结束时间"),
            ("days", "天数"),
            ("reason", "事由"),
        ),
    ),
    "expense": Workflow(
        "1002",
        "费用报销 Expense claim",
        "20",
        "财务流程",
        "-102",
        (("amount", "金额"), ("currency", "币种"), ("category", "类别"), ("reason", "事由")),
    ),
    "general": Workflow(
        "1003",
        "通用审批 General request",
        "30",
        "综合流程",
        "-103",
        (("subject", "主题"), ("detail", "说明")),
    ),
}
WORKFLOW_BY_ID = {wf.id: (template, wf) for template, wf in WORKFLOWS.items()}
ARCHIVE_LEVEL = 99


def _no_permission(isremark: int) -> Refused:
    # Shape observed from E9 when the user may not act on the request.
    return Refused(
        "NO_PERMISSION",
        "no permission to act on this request",
        reqFailMsg={
            "keyParameters": {},
            "msgInfo": {},
            "msgType": "NO_REQUEST_SUBMIT_PERMISSION",
            "otherParams": {},
        },
        err={"isremark": isremark},
    )


class WorkflowRequests(OABase):
    """Workflow requests: lists, one request, writes, and the users acting inside the OA."""

    def _lister(self, name: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            where, args = self._list_filter(name, call)
            page_no = max(1, call.int_param("pageNo", 1))
            page_size = call.int_param("pageSize", DEFAULT_PAGE_SIZE)
            page_size = DEFAULT_PAGE_SIZE if page_size < 1 else min(page_size, MAX_PAGE_SIZE)
            rows = self.store.conn().execute(
                f"SELECT body FROM objects WHERE {where} ORDER BY updated_ms, id"  # noqa: S608
                " LIMIT ? OFFSET ?",
                [*args, page_size, (page_no - 1) * page_size],
            )
            names = self._user_names()
            return JSONResponse([self._list_item(json.loads(r[0]), call.user, names) for r in rows])

        return handler

    def _counter(self, name: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            where, args = self._list_filter(name, call)
            sql = f"SELECT count(*) FROM objects WHERE {where}"  # noqa: S608
            return JSONResponse(int(self.store.conn().execute(sql, args).fetchone()[0]))

        return handler

    def _list_filter(self, name: str, call: Call) -> tuple[str, list[Any]]:
        """SQL over `objects` for one list and the caller's `conditions`.

        Literal platform/kind keep SQLite on the (platform, kind, updated_ms, id) index.
        """
        clauses = ["platform = 'oa'", "kind = 'approval'"]
        args: list[Any] = []
        user = call.user
        acted = "EXISTS (SELECT 1 FROM json_each(body, '$.actors') WHERE value = ?)"
        if name == "ToDo":
            clauses.append("json_extract(body, '$.currentOperatorId') = ?")
            args.append(user)
        elif name == "Handled":
            clauses.append(acted)
            clauses.append("coalesce(json_extract(body, '$.currentOperatorId'), '') != ?")
            args += [user, user]
        elif name == "My":
            clauses.append("json_extract(body, '$.creatorId') = ?")
            args.append(user)
        elif user != ADMIN_USER_ID:  # All: what the user may see; the admin sees everything
            clauses.append(f"({acted} OR json_extract(body, '$.currentOperatorId') = ?)")
            args += [user, user]
        conditions = call.json_param("conditions")
        if not isinstance(conditions, dict):
            raise Refused("PARAM_ERROR", "conditions must be a JSON object")
        more, more_args = _conditions(conditions)
        return " AND ".join(clauses + more), args + more_args

    def _list_item(self, body: Mapping[str, Any], user: str, names: Mapping[str, str]) -> Any:
        node = _node(body)
        return {
            "requestId": body["requestId"],
            "requestName": body["requestName"],
            "requestLevel": body["requestLevel"],
            "createTime": fmt_time(body["createTime"]),
            "creatorId": body["creatorId"],
            "creatorName": names.get(body["creatorId"], ""),
            "currentNodeId": node.node_id,
            "currentNodeName": node.name,
            "currentnodetype": node.node_type,
            "isbereject": "1" if body["state"] == "rejected" else "",
            "isremark": _isremark(body, user),
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
            "lastOperatorId": body["lastOperatorId"],
            "lastOperatorName": names.get(body["lastOperatorId"], ""),
            "receiveTime": fmt_time(body["lastOperateTime"]),
            "status": node.status,
            "userid": user,
            "workflowBaseInfo": WORKFLOW_BY_ID[body["workflowId"]][1].base_info(),
        }

    def _user_names(self) -> dict[str, str]:
        """Every user's name by id. Read from the JSON here: SQLite's json_extract turns a
        lone surrogate kept escaped (core.stored_json) into bytes that are not UTF-8."""
        rows = self.store.conn().execute(
            "SELECT id, body FROM objects WHERE platform = 'oa' AND kind = 'user'"
        )
        names = {str(i): str(json.loads(body).get("lastname")) for i, body in rows}
        return {ADMIN_USER_ID: "系统管理员", **names}

    # -- one request -------------------------------------------------------------------------
    def _visible(self, call: Call) -> dict[str, Any]:
        request_id = call.params.get("requestId") or call.params.get("requestid") or ""
        if not request_id.strip():
            raise Refused("PARAM_ERROR", "requestId is required")
        body = self.store.get(PLATFORM, "approval", request_id.strip())
        # E9 checks rights before it loads, so a request that does not exist is a permission
        # failure too (unconfirmed).
        if body is None or not _may_view(body, call.user):
            raise _no_permission(-1)
        return body

    def _detail(self, call: Call) -> Response:
        body = self._visible(call)
        names = self._user_names()
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        node = _node(body)
        can_edit = body.get("currentOperatorId") == call.user
        fields = [
            {
                "fieldId": f"{wf.id}{i:02d}",
                "fieldName": name,
                "fieldShowName": label,
                "fieldValue": body["form"].get(name, ""),
                "fieldShowValue": body["form"].get(name, ""),
                "fieldHtmlType": "1",
                "fieldType": "1",
                "fieldOrder": i,
                "view": True,
                "edit": can_edit,
                "mand": False,
            }
            for i, (name, label) in enumerate(wf.fields)
        ]
        data = {
            **{k: v for k, v in self._list_item(body, call.user, names).items() if k != "userid"},
            "canView": True,
            "canEdit": can_edit,
            "workflowMainTableInfo": {
                "tableDBName": wf.table,
                "requestRecords": [{"recordOrder": 0, "workflowRequestTableFields": fields}],
            },
            "workflowDetailTableInfos": [],
            "workflowRequestLogs": _logs_out(body, names),
        }
        data["currentNodeId"], data["currentNodeName"] = node.node_id, node.name
        return _success(data)

    def _status(self, call: Call) -> Response:
        body = self._visible(call)
        node = _node(body)
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        return _success(
            {
                "requestId": body["requestId"],
                "requestName": body["requestName"],
                "requestLevel": body["requestLevel"],
                "status": node.status,
                "currentNodeId": node.node_id,
                "currentNodeType": node.node_type,
                "creatorId": body["creatorId"],
                "isremark": int(_isremark(body, call.user) or -1),
                "workflowId": int(wf.id),
                "workflowBaseInfo": wf.base_info(),
            }
        )

    def _operators(self, call: Call) -> Response:
        """Who holds or held the request at each node (response shape unconfirmed)."""
        body = self._visible(call)
        names = self._user_names()
        wf = WORKFLOW_BY_ID[body["workflowId"]][1]
        rows = []
        for level, operator in enumerate(body["chain"], start=1):
            done = [x for x in body["logs"] if x["operator"] == operator and x["level"] == level]
            if body.get("currentOperatorId") == operator and body["level"] == level:
                isremark = "0"
            elif done:
                isremark = "2"
            else:
                continue  # not reached yet
            received = _received_ms(body, level)
            rows.append(
                {
                    "userid": operator,
                    "username": names.get(operator, ""),
                    "nodeid": wf.node_id(level),
                    "nodename": f"审批{level}",
                    "isremark": isremark,
                    "receivedate": fmt_time(received)[:10],
                    "receivetime": fmt_time(received)[11:],
                    "operatedate": fmt_time(done[-1]["ms"])[:10] if done else "",
                    "operatetime": fmt_time(done[-1]["ms"])[11:] if done else "",
                }
            )
        return _success(rows)

    def _request_log(self, call: Call) -> Response:
        body = self._visible(call)
        paging = call.json_param("otherParams")
        logs = _logs_out(body, self._user_names())
        if isinstance(paging, dict) and paging.get("pageSize"):
            try:
                size = max(1, int(paging["pageSize"]))
                number = max(1, int(paging.get("pageNumber", 1)))
            except (TypeError, ValueError):
                raise Refused(
                    "PARAM_ERROR", "otherParams.pageSize/pageNumber must be integers"
                ) from None
            logs = logs[(number - 1) * size : number * size]
        return _success(logs)

    # -- workflow writes ---------------------------------------------------------------------
    def _create(self, call: Call) -> Response:
        workflow_id = call.params.get("workflowId", "").strip()
        if workflow_id not in WORKFLOW_BY_ID:
            # E9 reports a mapping error as workflowId 0 (platform-apis.md §7.1).
            raise Refused("PARAM_ERROR", f"workflowId {workflow_id or 0} does not exist")
        main_data = call.json_param("mainData") or []
        if not isinstance(main_data, list) or not all(
            isinstance(x, dict) and "fieldName" in x for x in main_data
        ):
            raise Refused("PARAM_ERROR", "mainData must be a JSON array of {fieldName, fieldValue}")
        form = {str(x["fieldName"]): str(x.get("fieldValue", "")) for x in main_data}
        template = WORKFLOW_BY_ID[workflow_id][0]
        name = call.params.get("requestName") or f"{WORKFLOWS[template].name} ({call.user})"
        body = self.create_approval(
            call.user,
            self._default_chain(call.user),
            template=template,
            title=name,
            form=form,
            remark=call.params.get("remark", ""),
            level=call.params.get("requestLevel", "0") or "0",
        )
        self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)
        return _success({"requestid": body["requestId"]})

    def _action(self, action: str) -> Callable[[Call], Response]:
        def handler(call: Call) -> Response:
            request_id = call.required("requestId")
            other = call.json_param("otherParams")
            if action == "approve" and isinstance(other, dict) and other.get("src") == "save":
                action_now = "save"
            else:
                action_now = action
            main_data = call.json_param("mainData") or []
            form = {}
            if isinstance(main_data, list):
                form = {
                    str(x["fieldName"]): str(x.get("fieldValue", ""))
                    for x in main_data
                    if isinstance(x, dict) and "fieldName" in x
                }
            self.transition(
                request_id, action_now, call.user, call.params.get("remark", ""), form=form
            )
            self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)
            return JSONResponse(
                {
                    "code": "SUCCESS",
                    "errMsg": {},
                    "reqFailMsg": {
                        "keyParameters": {},
                        "msgInfo": {},
                        "otherParams": {"doAutoApprove": "0"},
                    },
                }
            )

        return handler

    def _default_chain(self, creator: str) -> list[str]:
        """The department's first member, then the head: E9 would take it from the workflow."""
        user = self.store.get(PLATFORM, "user", creator)
        chain: list[str] = []
        if user is not None:
            members = self.store.list(
                PLATFORM, "user", equals={"departmentid": user["departmentid"]}
            )
            manager = min((m["id"] for m in members), key=int, default=None)
            chain = [x for x in (manager, HEAD_USER_ID) if x and x != creator]
        return list(dict.fromkeys(chain)) or [ADMIN_USER_ID]

    def create_approval(
        self,
        creator: str,
        approvers: Iterable[str],
        *,
        template: str = "general",
        title: str = "",
        form: Mapping[str, str] | None = None,
        remark: str = "",
        level: str = "0",
    ) -> dict[str, Any]:
        """A new pending request at its first approver; fires the webhook."""
        wf = WORKFLOWS[template]
        chain = [str(x) for x in approvers]
        if not chain:
            raise Refused("PARAM_ERROR", "a request needs at least one approver")
        at = _floor_s(now_ms())
        with self._lock:
            number = int(self.store.setting(PLATFORM, "next_request_no", "1") or "1")
            self.store.set_setting(PLATFORM, "next_request_no", str(number + 1))
        request_id = f"R{number:06d}"
        body: dict[str, Any] = {
            "requestId": request_id,
            "workflowId": wf.id,
            "requestName": title or f"{wf.name} #{number}",
            "requestLevel": level,
            "creatorId": creator,
            "createTime": at,
            "chain": chain,
            "state": "pending",
            "level": 1,
            "currentOperatorId": chain[0],
            "lastOperatorId": creator,
            "lastOperateTime": at,
            "form": {name: str((form or {}).get(name, "")) for name, _ in wf.fields},
            "logs": [_log(request_id, 0, creator, LOGTYPE_SUBMIT, 0, at, remark, [chain[0]])],
            "actors": [creator],
        }
        body["form"].update({k: str(v) for k, v in (form or {}).items()})
        self.store.put(PLATFORM, "approval", request_id, body, created_ms=at, updated_ms=at)
        self._notify("created", body)
        return body

    def transition(
        self,
        request_id: str,
        action: str,
        by: str,
        remark: str = "",
        *,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """approve | reject | revoke | comment | save as user `by`; bumps lastOperateTime.

        A decided request (approved, rejected, revoked) refuses approve, reject, save and
        revoke with NO_PERMISSION, as E9 does once nobody holds it; comments stay possible.
        Resubmitting a returned request is not modelled.
        """
        with self._lock:
            body = self.store.get(PLATFORM, "approval", request_id)
            if body is None or not _may_view(body, by):
                raise _no_permission(-1)
            at = max(_floor_s(now_ms()), body["lastOperateTime"])
            level = body["level"]
            current = body.get("currentOperatorId")
            pending = body["state"] == "pending"
            if action in ("approve", "reject", "save") and (not pending or current != by):
                raise _no_permission(2 if by in body["actors"] else -1)
            if action == "revoke" and (not pending or by != body["creatorId"]):
                raise _no_permission(2 if by in body["actors"] else -1)
            if action == "comment" and by not in (*body["actors"], current, ADMIN_USER_ID):
                raise _no_permission(-1)
            if action not in ("approve", "reject", "save", "revoke", "comment"):
                raise Refused("PARAM_ERROR", f"unknown action {action}")
            body["form"].update({k: str(v) for k, v in (form or {}).items()})
            logtype, log_level, received = {
                "approve": (LOGTYPE_APPROVE, level, []),
                "reject": (LOGTYPE_REJECT, level, [body["creatorId"]]),
                "save": (LOGTYPE_SAVE, level, []),
                "revoke": (LOGTYPE_WITHDRAW, 0, []),
                "comment": (LOGTYPE_COMMENT, level if pending else 0, []),
            }[action]
            if action == "approve":
                if level < len(body["chain"]):
                    body["level"], body["currentOperatorId"] = level + 1, body["chain"][level]
                    received = [body["chain"][level]]
                else:
                    body["state"], body["level"], body["currentOperatorId"] = (
                        "approved",
                        ARCHIVE_LEVEL,
                        None,
                    )
            elif action in ("reject", "revoke"):
                body["state"] = "rejected" if action == "reject" else "revoked"
                body["level"], body["currentOperatorId"] = 0, None
            index = len(body["logs"])
            body["logs"].append(
                _log(request_id, index, by, logtype, log_level, at, remark, received)
            )
            if by not in body["actors"]:
                body["actors"].append(by)
            if action != "save":
                body["lastOperatorId"], body["lastOperateTime"] = by, at
            self.store.put(
                PLATFORM,
                "approval",
                request_id,
                body,
                created_ms=body["createTime"],
                updated_ms=body["lastOperateTime"],
            )
        if action != "save":
            self._notify(EVENTS[action], body)
        return body

    # -- simulated users ---------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """{"action": "create", "applicant", "approvers": [...], "template", "title", "form"}
        or {"action": "approve|reject|revoke|comment", "requestId", "by", "remark"}.

        People are named by employee number ("E00003") or OA user id ("103").
        """
        kind = str(action.get("action", ""))
        try:
            if kind == "create":
                approvers = action.get("approvers") or []
                if not isinstance(approvers, list):
                    raise PressError("approvers must be a list of people")
                template = str(action.get("template", "general"))
                if template not in WORKFLOWS:
                    raise PressError(f"template must be one of {', '.join(WORKFLOWS)}")
                body = self.create_approval(
                    self._person(action.get("applicant")),
                    [self._person(x) for x in approvers],
                    template=template,
                    title=str(action.get("title", "")),
                    form={str(k): str(v) for k, v in dict(action.get("form") or {}).items()},
                    remark=str(action.get("remark", "")),
                )
            elif kind in ("approve", "reject", "revoke", "comment"):
                body = self.transition(
                    str(action.get("requestId", "")),
                    kind,
                    self._person(action.get("by")),
                    str(action.get("remark", "")),
                )
            else:
                raise PressError("action must be create, approve, reject, revoke or comment")
        except Refused as refused:
            raise PressError(f"{refused.code}: {refused.message}") from None
        return {
            "requestId": body["requestId"],
            "status": body["state"],
            "lastOperateTime": fmt_time(body["lastOperateTime"]),
            "currentOperatorId": body["currentOperatorId"],
        }

    def _person(self, who: Any) -> str:
        text = str(who or "")
        if text.startswith("E") and text[1:].isdigit():
            text = oa_user_id(text)
        if text != ADMIN_USER_ID and self.store.get(PLATFORM, "user", text) is None:
            raise PressError(f"no OA user {who!r}")
        return text


LISTS = ("ToDo", "Handled", "My", "All")
EVENTS = {"approve": "approved", "reject": "rejected", "revoke": "revoked", "comment": "commented"}


@dataclass(frozen=True)
class _Node:
    node_id: str
    name: str
    node_type: str  # 0 create, 1 approve, 2 submit, 3 archive
    status: str


def _node(body: Mapping[str, Any]) -> _Node:
    wf = WORKFLOW_BY_ID[body["workflowId"]][1]
    state = body["state"]
    if state == "pending":
        level = body["level"]
        return _Node(wf.node_id(level), f"审批{level}", "1", f"审批{level}")
    if state == "approved":
        return _Node(wf.node_id(ARCHIVE_LEVEL), "归档", "3", "归档")
    # Returned (退回) and withdrawn (撤回) requests sit at the creation node.
    return _Node(wf.node_id(0), "创建", "0", "退回" if state == "rejected" else "撤回")


def _isremark(body: Mapping[str, Any], user: str) -> str:
    if body.get("currentOperatorId") == user:
        return "0"
    return "2" if user in body["actors"] else ""


def _may_view(body: Mapping[str, Any], user: str) -> bool:
    return user in (ADMIN_USER_ID, body.get("currentOperatorId"), *body["actors"], *body["chain"])


def _received_ms(body: Mapping[str, Any], level: int) -> int:
    """When the request reached approval `level`: the log that sent it there."""
    for entry in body["logs"]:
        if body["chain"][level - 1] in entry["received"] and entry["level"] == level - 1:
            return int(entry["ms"])
    return int(body["createTime"])


def _log(
    request_id: str,
    index: int,
    operator: str,
    logtype: str,
    level: int,
    at_ms: int,
    remark: str,
    received: list[str],
) -> dict[str, Any]:
    return {
        "id": str(int(request_id[1:]) * 1000 + index),
        "operator": operator,
        "logtype": logtype,
        "level": level,
        "ms": at_ms,
        "remark": remark,
        "received": received,
    }


def _logs_out(body: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """workflowRequestLogs / getRequestLog entries, newest first, with E9's field names."""
    wf = WORKFLOW_BY_ID[body["workflowId"]][1]
    out = []
    for entry in reversed(body["logs"]):
        level = entry["level"]
        at = fmt_time(entry["ms"])
        out.append(
            {
                "id": entry["id"],
                "logid": entry["id"],
                "nodeid": wf.node_id(level),
                "nodename": "创建" if level == 0 else f"审批{level}",
                "operator": entry["operator"],
                "operatorName": names.get(entry["operator"], ""),
                "operatortype": "0",
                "operatedate": at[:10],
                "operatetime": at[11:],
                "logtype": entry["logtype"],
                "remark": entry["remark"],
                "remarkHtml": f"<p>{html.escape(entry['remark'])}</p>" if entry["remark"] else "",
                "receivedPersonids": ",".join(entry["received"]),
                "receivedPersons": ",".join(names.get(x, "") for x in entry["received"]),
                "agenttype": "0",
                "isbranche": "0",
            }
        )
    return out


def _conditions(conditions: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """E9 `conditions` keys we honour; the rest of E9's many keys are ignored."""
    clauses: list[str] = []
    args: list[Any] = []
    try:
        if conditions.get("requestname"):
            clauses.append("json_extract(body, '$.requestName') LIKE ?")
            args.append(f"%{conditions['requestname']}%")
        if conditions.get("workflowIds"):
            ids = [x.strip() for x in str(conditions["workflowIds"]).split(",") if x.strip()]
            clauses.append(f"json_extract(body, '$.workflowId') IN ({','.join('?' * len(ids))})")
            args += ids
        node_type = str(conditions.get("nodetype", "")).strip()
        if node_type:
            states = {"0": ["rejected", "revoked"], "1": ["pending"], "3": ["approved"]}
            wanted = states.get(node_type, [])
            marks = ",".join("?" * len(wanted)) or "NULL"
            clauses.append(f"json_extract(body, '$.state') IN ({marks})")
            args += wanted
        created = _created_window(conditions)
        if created is not None:
            clauses.append("created_ms >= ? AND created_ms < ?")
            args += list(created)
        if conditions.get("lastOperateTimeFrom"):
            clauses.append("updated_ms >= ?")
            args.append(parse_time(str(conditions["lastOperateTimeFrom"])))
        if conditions.get("lastOperateTimeTo"):
            clauses.append("updated_ms < ?")
            args.append(parse_time(str(conditions["lastOperateTimeTo"])))
    except ValueError as exc:
        raise Refused("PARAM_ERROR", f"conditions: {exc}") from None
    return clauses, args


def _created_window(conditions: Mapping[str, Any]) -> tuple[int, int] | None:
    """E9's createdateselect: 0 all, 1 today, 2 this week, 3 this month, 4 this season,
    5 this year, 6 createdatefrom..createdateto (dates, both inclusive), 7 last month,
    8 last year."""
    select = str(conditions.get("createdateselect", "0") or "0")
    today = datetime.now(OA_TZ).date()
    if select == "0":
        return None
    if select == "6":
        start = date.fromisoformat(str(conditions.get("createdatefrom") or "1970-01-01"))
        end = date.fromisoformat(str(conditions.get("createdateto") or "9999-12-30"))
        return _day_ms(start), _day_ms(end + timedelta(days=1))
    month_start = today.replace(day=1)
    season_start = month_start.replace(month=(today.month - 1) // 3 * 3 + 1)
    last_month_start = (month_start - timedelta(days=1)).replace(day=1)
    windows = {
        "1": (today, today + timedelta(days=1)),
        "2": (today - timedelta(days=today.weekday()), today + timedelta(days=1)),
        "3": (month_start, today + timedelta(days=1)),
        "4": (season_start, today + timedelta(days=1)),
        "5": (today.replace(month=1, day=1), today + timedelta(days=1)),
        "7": (last_month_start, month_start),
        "8": (date(today.year - 1, 1, 1), date(today.year, 1, 1)),
    }
    if select not in windows:
        raise ValueError(f"createdateselect must be 0..8, not {select}")
    start, end = windows[select]
    return _day_ms(start), _day_ms(end)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=OA_TZ).timestamp() * 1000)
