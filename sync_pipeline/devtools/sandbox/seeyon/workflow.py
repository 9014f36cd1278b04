"""Seeyon 协同 workflow: affair lists (待办/已办/已发) of a member, a flow's state, form data
and opinions, and the bpm writes (start a flow, finish a workitem, stop, repeal); also the
simulated members who act on flows inside the OA (`press`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.emulator import PressError
from sync_pipeline.devtools.sandbox.seeyon.base import (
    ALREADY_DONE,
    APP_NAME,
    BAD_PARAM,
    NO_PERMISSION,
    NOT_FOUND,
    PLATFORM,
    Call,
    JSONResponse,
    Refused,
    SeeyonBase,
    flip_info,
    fresh_id,
    success,
)
from sync_pipeline.devtools.sandbox.seeyon.model import (
    AFFAIR_CANCELLED,
    AFFAIR_DONE,
    AFFAIR_LISTS,
    AFFAIR_PENDING,
    AFFAIR_SENT,
    ATTITUDE_AGREE,
    ATTITUDE_DISAGREE,
    CTYPE_SENDER,
    FLOW_FINISHED,
    FLOW_REPEALED,
    FLOW_RUNNING,
    FLOW_STOPPED,
    RUNNING_STATES,
    TEMPLATE_BY_CODE,
    TEMPLATES,
    Template,
    affair,
    comment,
    new_summary,
)

HEAD_CODE = "E00001"  # the company head: last approver of flows started through the API
ACTIONS = ("approve", "disagree", "stop", "repeal", "save")


class Workflow(SeeyonBase):
    """Flows and their affairs: reads, bpm writes, and the members acting inside the OA."""

    # -- affair lists ------------------------------------------------------------------------
    def _affair_list(self, kind: str, by_code: bool) -> Any:
        state = AFFAIR_LISTS[kind]

        def handler(call: Call) -> Response:
            if by_code:
                member = self.member_by("code", call.path_params.get("code", ""))
                if member is None:
                    raise Refused(NOT_FOUND, f"人员编码 {call.path_params.get('code')} 不存在")
                member_id = int(member["id"])
            elif call.params.get("memberId", "").strip():
                member_id = call.int_param("memberId", 0)
            elif call.member_id is not None:
                member_id = call.member_id
            else:
                raise Refused(BAD_PARAM, "memberId is required (or a token bound by loginName)")
            number, size = call.page()
            where, args = self._affair_filter(member_id, state, call)
            conn = self.store.conn()
            total = int(
                conn.execute(f"SELECT count(*) FROM objects WHERE {where}", args).fetchone()[0]  # noqa: S608
            )
            rows = conn.execute(
                f"SELECT body FROM objects WHERE {where} ORDER BY updated_ms, id"  # noqa: S608
                " LIMIT ? OFFSET ?",
                [*args, size, (number - 1) * size],
            )
            data = [_affair_out(json.loads(r[0])) for r in rows]
            return JSONResponse(flip_info(data, total, number, size))

        return handler

    @staticmethod
    def _affair_filter(member_id: int, state: int, call: Call) -> tuple[str, list[Any]]:
        """Literal platform/kind keep SQLite on the (platform, kind, updated_ms, id) index."""
        clauses = [
            "platform = 'seeyon'",
            "kind = 'affair'",
            "json_extract(body, '$.memberId') = ?",
            "json_extract(body, '$.state') = ?",
        ]
        args: list[Any] = [member_id, state]
        if call.params.get("subject"):
            clauses.append("json_extract(body, '$.subject') LIKE ?")
            args.append(f"%{call.params['subject']}%")
        if call.params.get("updateDateFrom", "").strip():
            clauses.append("updated_ms >= ?")
            args.append(call.int_param("updateDateFrom", 0))
        if call.params.get("updateDateTo", "").strip():
            clauses.append("updated_ms < ?")
            args.append(call.int_param("updateDateTo", 0))
        return " AND ".join(clauses), args

    # -- one flow ----------------------------------------------------------------------------
    def _summary(self, call: Call, name: str = "flowId") -> dict[str, Any]:
        summary_id = call.id_path(name)
        found = self.store.get(PLATFORM, "summary", str(summary_id))
        if found is None:
            raise Refused(NOT_FOUND, f"协同 {summary_id} 不存在")
        return found

    def _flow_state(self, call: Call) -> Response:
        """The bare flow state number (see model.py)."""
        return JSONResponse(int(self._summary(call)["state"]))

    def _flow_data(self, call: Call) -> Response:
        export = call.params.get("exportFormat", "json") or "json"
        if export != "json":
            raise Refused(BAD_PARAM, "exportFormat: the sandbox exports json only")
        summary = self._summary(call)
        template = TEMPLATE_BY_CODE[summary["templateCode"]]
        return JSONResponse(
            {
                "summaryId": summary["id"],
                "processId": summary["processId"],
                "subject": summary["subject"],
                "templateCode": summary["templateCode"],
                "senderId": summary["senderId"],
                "createDate": summary["createDate"],
                "state": summary["state"],
                "formData": {template.table: summary["form"]},
            }
        )

    def _comments(self, call: Call) -> Response:
        if call.path_params.get("type") != "all":
            raise Refused(BAD_PARAM, "type: the sandbox lists opinions of type 'all' only")
        summary = self._summary(call, "summaryId")
        number, size = call.page()
        rows = summary["comments"]
        page = rows[(number - 1) * size : number * size]
        return JSONResponse(flip_info(page, len(rows), number, size))

    # -- bpm writes --------------------------------------------------------------------------
    def _start(self, call: Call) -> Response:
        body = call.json_object()
        _app_name(body)
        data = body.get("data")
        if not isinstance(data, dict):
            raise Refused(BAD_PARAM, "data is required")
        template = TEMPLATE_BY_CODE.get(str(data.get("templateCode", "")))
        if template is None:
            raise Refused(BAD_PARAM, f"templateCode {data.get('templateCode')!r} 不存在")
        if str(data.get("draft", "0")) != "0":
            raise Refused(BAD_PARAM, "draft: the sandbox sends new flows only (draft 0)")
        form_data = data.get("data") or {}
        form = form_data.get(template.table) if isinstance(form_data, dict) else None
        if not isinstance(form, dict):
            raise Refused(BAD_PARAM, f"data.data.{template.table} must be an object of fields")
        sender_login = str(data.get("senderLoginName") or "")
        if sender_login:
            sender = self.member_by("loginName", sender_login)
            if sender is None:
                raise Refused(BAD_PARAM, f"senderLoginName {sender_login} 不存在")
        elif call.member_id is not None:
            sender = self.member(call.member_id)
        else:
            sender = None
        if sender is None:
            raise Refused(
                BAD_PARAM, "no sender: bind the token by loginName or give senderLoginName"
            )
        summary, first = self.start_flow(
            sender,
            self._default_nodes(sender),
            template,
            subject=str(data.get("subject") or ""),
            form={str(k): str(v) for k, v in form.items()},
        )
        self.store.record(PLATFORM, call.endpoint, str(sender["loginName"]), body)
        business = json.dumps({"affairId": str(first), "summaryId": str(summary["id"])})
        return success({"app_bussiness_data": business, "processId": summary["processId"]})

    def _finish(self, call: Call) -> Response:
        body = call.json_object()
        _app_name(body)
        data = _object(body, "data")
        deal = _object(data, "comment_deal")
        try:
            attitude = int(deal.get("attitude", 0))
        except (TypeError, ValueError):
            attitude = 0
        submit = str(data.get("submitType", "1") or "1")
        if submit not in ("1", "2"):
            raise Refused(BAD_PARAM, "submitType must be 1 (提交) or 2 (暂存待办)")
        if submit == "1" and attitude not in (ATTITUDE_AGREE, ATTITUDE_DISAGREE):
            raise Refused(BAD_PARAM, "attitude must be 2 (同意) or 3 (不同意) at an approval node")
        action = (
            "save" if submit == "2" else "approve" if attitude == ATTITUDE_AGREE else "disagree"
        )
        return self._workitem_write(call, body, action, str(deal.get("content") or ""))

    def _stop(self, call: Call) -> Response:
        body = call.json_object()
        _app_name(body)
        data = _object(body, "data")
        return self._workitem_write(call, body, "stop", str(data.get("stopOpinion") or ""))

    def _repeal(self, call: Call) -> Response:
        body = call.json_object()
        _app_name(body)
        data = _object(body, "data")
        content = str(data.get("repealComment") or data.get("stopOpinion") or "")
        return self._workitem_write(call, body, "repeal", content)

    def _workitem_write(
        self, call: Call, body: Mapping[str, Any], action: str, content: str
    ) -> Response:
        try:
            workitem = int(str(body.get("workitemId", "")).strip())
        except ValueError:
            raise Refused(BAD_PARAM, "workitemId must be a numeric id") from None
        item = self.affair_of_workitem(workitem)
        if item is None:
            raise Refused(NOT_FOUND, f"workitem {workitem} 不存在")
        owner_login = self._owner_setting()
        if call.member_id is not None:
            actor = call.member_id
        elif owner_login:  # setting finish_as_workitem_owner=1: an unbound token may act
            summary = self.store.get(PLATFORM, "summary", str(item["objectId"])) or {}
            actor = int(summary.get("senderId", 0)) if action == "repeal" else item["memberId"]
        else:
            raise Refused(NO_PERMISSION, "the token is bound to no member: pass loginName")
        summary = self.transition(int(item["objectId"]), action, actor, content, workitem=workitem)
        member = self.member(actor) or {}
        self.store.record(PLATFORM, call.endpoint, str(member.get("loginName", actor)), body)
        return success({"summaryId": str(summary["id"]), "state": summary["state"]})

    def _owner_setting(self) -> bool:
        return (self.store.setting(PLATFORM, "finish_as_workitem_owner", "0") or "0") == "1"

    # -- the model's transitions -------------------------------------------------------------
    def _default_nodes(self, sender: Mapping[str, Any]) -> list[int]:
        """The department's first member, then the head: A8 takes it from the template."""
        same = self.store.list(
            PLATFORM, "member", equals={"orgDepartmentId": sender["orgDepartmentId"]}
        )
        first = min(same, key=lambda m: m["sortId"], default=None)
        head = self.member_by("code", HEAD_CODE)
        nodes = [int(m["id"]) for m in (first, head) if m and m["id"] != sender["id"]]
        return list(dict.fromkeys(nodes)) or [int(sender["id"])]

    def start_flow(
        self,
        sender: Mapping[str, Any],
        nodes: list[int],
        template: Template,
        *,
        subject: str = "",
        form: Mapping[str, str] | None = None,
        note: str = "",
    ) -> tuple[dict[str, Any], int]:
        """A new flow at its first node; returns it and the sender's affairId."""
        if not nodes:
            raise Refused(BAD_PARAM, "a flow needs at least one approval node")
        at = now_ms()
        summary = new_summary(
            fresh_id(),
            template,
            int(sender["id"]),
            nodes,
            subject or f"{template.name} ({sender['name']})",
            form or {},
            at,
        )
        sent = affair(summary, int(sender["id"]), None, AFFAIR_SENT, at, at)
        if note:
            summary["comments"].append(
                comment(summary, sent["id"], sender, note, None, at, CTYPE_SENDER)
            )
        pending = affair(summary, nodes[0], 0, AFFAIR_PENDING, at, None)
        self._save(summary, [sent, pending])
        return summary, int(sent["id"])

    def transition(
        self,
        summary_id: int,
        action: str,
        actor: int,
        content: str = "",
        *,
        workitem: int | None = None,
    ) -> dict[str, Any]:
        """approve | disagree | stop | save by the node holding the flow, or repeal by its
        sender; bumps the updateDate of the flow and of every affair of it."""
        if action not in ACTIONS:
            raise Refused(BAD_PARAM, f"unknown action {action}")
        with self._lock:
            summary = self.store.get(PLATFORM, "summary", str(summary_id))
            if summary is None:
                raise Refused(NOT_FOUND, f"协同 {summary_id} 不存在")
            affairs = self.affairs_of(summary_id)
            pending = [a for a in affairs if a["state"] == AFFAIR_PENDING]
            if workitem is not None:
                item = next(a for a in affairs if a["subObjectId"] == workitem)
                if item["state"] != AFFAIR_PENDING and action != "repeal":
                    raise Refused(ALREADY_DONE, f"workitem {workitem} 已处理")
            if summary["state"] not in RUNNING_STATES:
                raise Refused(ALREADY_DONE, f"协同 {summary_id} 已结束")
            member = self.member(actor)
            if member is None:
                raise Refused(NO_PERMISSION, f"member {actor} 不存在")
            at = max(now_ms(), int(summary["updateDate"]))
            if action == "repeal":
                if actor != summary["senderId"]:
                    raise Refused(NO_PERMISSION, "only the sender may repeal a flow")
                for item in pending:
                    item.update(state=AFFAIR_CANCELLED, finish=True, completeTime=at)
                sent = next(a for a in affairs if a["state"] == AFFAIR_SENT)
                if content:
                    summary["comments"].append(
                        comment(summary, sent["id"], member, content, None, at, CTYPE_SENDER)
                    )
                summary.update(state=FLOW_REPEALED, current=None)
            else:
                holding = [a for a in pending if a["memberId"] == actor]
                if not holding:
                    raise Refused(NO_PERMISSION, f"member {actor} holds no workitem of the flow")
                item = holding[0]
                if action == "save":
                    attitude = None
                else:
                    item.update(state=AFFAIR_DONE, finish=True, completeTime=at)
                    attitude = ATTITUDE_AGREE if action == "approve" else None
                    if action == "disagree":
                        attitude = ATTITUDE_DISAGREE
                if content or attitude is not None:
                    summary["comments"].append(
                        comment(summary, item["id"], member, content, attitude, at)
                    )
                if action == "approve":
                    node = int(summary["current"]) + 1
                    if node < len(summary["nodes"]):
                        summary.update(state=FLOW_RUNNING, current=node)
                        affairs.append(
                            affair(summary, summary["nodes"][node], node, AFFAIR_PENDING, at, None)
                        )
                    else:
                        summary.update(state=FLOW_FINISHED, current=None)
                elif action in ("disagree", "stop"):
                    summary.update(state=FLOW_STOPPED, current=None)
            summary["updateDate"] = at
            self._save(summary, affairs)
        return summary

    def _save(self, summary: dict[str, Any], affairs: list[dict[str, Any]]) -> None:
        at = int(summary["updateDate"])
        self.store.put(
            PLATFORM,
            "summary",
            str(summary["id"]),
            summary,
            created_ms=summary["createDate"],
            updated_ms=at,
        )
        for item in affairs:
            item["updateDate"] = at
        self.store.put_many(
            PLATFORM,
            "affair",
            ((str(a["id"]), a, a["receiveTime"], at) for a in affairs),
        )

    # -- simulated members -------------------------------------------------------------------
    def press(self, action: Mapping[str, Any]) -> dict[str, Any]:
        """{"action": "create", "applicant", "approvers": [...], "template", "subject",
        "form", "note"} or {"action": "approve|reject|stop|repeal", "summaryId", "by",
        "comment"}; reject is a finish with attitude 不同意, which ends the flow.

        Members are named by employee number (code, "E00003"), loginName or member id.
        """
        kind = str(action.get("action", ""))
        try:
            if kind == "create":
                approvers = action.get("approvers") or []
                if not isinstance(approvers, list):
                    raise PressError("approvers must be a list of members")
                template = TEMPLATES.get(str(action.get("template", "general")))
                if template is None:
                    raise PressError(f"template must be one of {', '.join(TEMPLATES)}")
                sender = self._person(action.get("applicant"))
                nodes = [int(self._person(x)["id"]) for x in approvers]
                summary, _ = self.start_flow(
                    sender,
                    nodes or self._default_nodes(sender),
                    template,
                    subject=str(action.get("subject", "")),
                    form={str(k): str(v) for k, v in dict(action.get("form") or {}).items()},
                    note=str(action.get("note", "")),
                )
            elif kind in ("approve", "reject", "stop", "repeal"):
                try:
                    summary_id = int(str(action.get("summaryId", "")))
                except ValueError:
                    raise PressError("summaryId must be a numeric id") from None
                summary = self.transition(
                    summary_id,
                    "disagree" if kind == "reject" else kind,
                    int(self._person(action.get("by"))["id"]),
                    str(action.get("comment", "")),
                )
            else:
                raise PressError("action must be create, approve, reject, stop or repeal")
        except Refused as refused:
            raise PressError(f"{refused.code}: {refused.message}") from None
        nodes = summary["nodes"]
        current = summary["current"]
        return {
            "summaryId": str(summary["id"]),
            "state": summary["state"],
            "updateDate": summary["updateDate"],
            "pendingMemberIds": [] if current is None else [str(nodes[current])],
        }

    def _person(self, who: Any) -> dict[str, Any]:
        text = str(who or "")
        found = self.member_by("code", text) or self.member_by("loginName", text)
        if found is None and text.lstrip("-").isdigit():
            found = self.member(int(text))
        if found is None:
            raise PressError(f"no Seeyon member {who!r}")
        return found


def _object(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _app_name(body: Mapping[str, Any]) -> None:
    if body.get("appName") != APP_NAME:
        raise Refused(BAD_PARAM, f"appName must be {APP_NAME!r}, not {body.get('appName')!r}")


def _affair_out(stored: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stored.items() if k != "node"}
