"""The Seeyon flow model the API families share: form templates, flow (summary) and affair
(事项) states, and how one flow and its affairs are built and kept.

A flow (协同, keyed by its summaryId) runs through its approval nodes in order. Every member
it touches has an affair (事项) of it: the sender an affair in state 2 (已发), the node
holding it one in state 3 (待办) whose `subObjectId` is the workitemId that
`bpm/workitem/finish` takes, and nodes that acted one in state 4 (已办).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sync_pipeline.devtools.sandbox.seeyon.base import APP_NAME, long_id


@dataclass(frozen=True)
class Template:
    key: str  # the world's template: leave | expense | general
    code: str  # templateCode, what bpm/process/start takes
    name: str
    table: str  # the form's main table, the key of its data in bpm/process/start
    fields: tuple[tuple[str, str], ...]  # (world form key, the field's display name)

    @property
    def id(self) -> int:
        return long_id("template", self.code)

    def display(self, key: str) -> str:
        return dict(self.fields).get(key, key)


TEMPLATES = {
    "leave": Template(
        "leave",
        "LEAVE_001",
        "请假单 Leave request",
        "formmain_0101",
        (
            ("leave_type", "假期类型"),
            ("start_time", "开始时间"),
            ("end_time", "结束时间"),
            ("days", "天数"),
            ("reason", "事由"),
        ),
    ),
    "expense": Template(
        "expense",
        "EXPENSE_001",
        "费用报销单 Expense claim",
        "formmain_0102",
        (("amount", "金额"), ("currency", "币种"), ("category", "类别"), ("reason", "事由")),
    ),
    "general": Template(
        "general",
        "GENERAL_001",
        "通用审批 General request",
        "formmain_0103",
        (("subject", "主题"), ("detail", "说明")),
    ),
}
TEMPLATE_BY_CODE = {t.code: t for t in TEMPLATES.values()}

# Flow states, as flow/state/{flowId} answers them.
FLOW_WAITING = 3  # 待处理: sent, nobody has acted yet
FLOW_RUNNING = 4  # 处理中: some nodes have acted
FLOW_REPEALED = 5  # 撤销 by the sender
FLOW_STOPPED = 15  # 终止: stopped, or a node disagreed (the templates end the flow then)
FLOW_FINISHED = 0  # 结束: every node agreed
RUNNING_STATES = (FLOW_WAITING, FLOW_RUNNING)
FLOW_STATE_NAMES = {
    FLOW_WAITING: "待处理",
    FLOW_RUNNING: "处理中",
    FLOW_REPEALED: "撤销",
    FLOW_STOPPED: "终止",
    FLOW_FINISHED: "结束",
}

# Affair states (ctp_affair.state).
AFFAIR_SENT = 2  # 已发
AFFAIR_PENDING = 3  # 待办
AFFAIR_DONE = 4  # 已办
AFFAIR_CANCELLED = 5  # the flow was repealed while this affair was pending
AFFAIR_LISTS = {"pending": AFFAIR_PENDING, "done": AFFAIR_DONE, "sent": AFFAIR_SENT}

# Opinion attitudes (bpm/workitem/finish `attitude` -> the comment's extAtt1).
ATTITUDE_READ, ATTITUDE_AGREE, ATTITUDE_DISAGREE = 1, 2, 3
ATTITUDE_KEYS = {
    ATTITUDE_READ: "collaboration.dealAttitude.haveRead",
    ATTITUDE_AGREE: "collaboration.dealAttitude.agree",
    ATTITUDE_DISAGREE: "collaboration.dealAttitude.disagree",
}
CTYPE_DEAL, CTYPE_SENDER = 0, -1  # a node's opinion; the sender's note (发起人附言)


def affair(
    summary: Mapping[str, Any],
    member_id: int,
    node: int | None,
    state: int,
    received_ms: int,
    completed_ms: int | None,
) -> dict[str, Any]:
    """One affair of `summary` for `member_id` at approval `node` (None: the sender's)."""
    key = "sent" if node is None else node
    return {
        "id": long_id("affair", summary["id"], member_id, key),
        "app": 1,  # 协同
        "objectId": summary["id"],
        "subObjectId": None if node is None else long_id("workitem", summary["id"], key),
        "processId": summary["processId"],
        "memberId": member_id,
        "senderId": summary["senderId"],
        "subject": summary["subject"],
        "state": state,
        "subState": 0,
        "templeteId": TEMPLATE_BY_CODE[summary["templateCode"]].id,
        "nodePolicy": "collaboration" if node is None else "shenpi",
        "importantLevel": 1,
        "createDate": summary["createDate"],
        "receiveTime": received_ms,
        "completeTime": completed_ms,
        "updateDate": summary["updateDate"],
        "finish": state != AFFAIR_PENDING,
        "delete": False,
        "track": 0,
        "node": node,  # sandbox bookkeeping: which approval node (0-based), None for sender
    }


def comment(
    summary: Mapping[str, Any],
    affair_id: int,
    member: Mapping[str, Any],
    content: str,
    attitude: int | None,
    at_ms: int,
    ctype: int = CTYPE_DEAL,
) -> dict[str, Any]:
    index = len(summary["comments"])
    return {
        "id": long_id("comment", summary["id"], index),
        "moduleId": summary["id"],
        "affairId": affair_id,
        "createId": member["id"],
        "createName": member["name"],
        "content": content,
        "extAtt1": ATTITUDE_KEYS.get(attitude, "") if attitude is not None else "",
        "ctype": ctype,
        "createDate": at_ms,
    }


def new_summary(
    summary_id: int,
    template: Template,
    sender_id: int,
    nodes: Iterable[int],
    subject: str,
    form: Mapping[str, str],
    created_ms: int,
) -> dict[str, Any]:
    return {
        "id": summary_id,
        "processId": str(long_id("process", summary_id)),
        "appName": APP_NAME,
        "subject": subject,
        "templateCode": template.code,
        "senderId": sender_id,
        "createDate": created_ms,
        "updateDate": created_ms,
        "state": FLOW_WAITING,
        "nodes": list(nodes),
        "current": 0,  # the node holding the flow (0-based); None once it ended
        "form": {template.display(k): str(v) for k, v in form.items()},
        "comments": [],
    }
