"""Feishu's approval center as a target: OA approvals mirrored as third-party ("external")
instances, kept current as they move, with quick Approve / Reject for the approvers.

Contract (open.feishu.cn "三方审批", lark-oapi approval v4 external_* models; the sandbox's
feishu module docstring lists what is confirmed): we own a definition (`approval_code`,
created or replaced once per process), and each OA request is one instance whose
`instance_id` is the OA request id. A sync is an upsert by that id, so sending the same state
again changes nothing: that is what makes a resend safe (DESIGN.md section 3).

Keeping it current: the first sync of a request replaces the instance whole (REPLACE: the
request's status and a PENDING task per current approver). A later one first asks Feishu which
of the instance's tasks are still pending (`external_tasks`), then pushes in UPDATE mode the
new state: the tasks of the approvers who must act now, and every other pending task closed:
APPROVED or REJECTED for the approver who acted last (`last_operator`), DONE for the rest (an
any-one node others decided). Nothing is removed, so an approver keeps the done task.

A task id is `<node>/<open_id>`: unique per instance, and the approver can be read back from it.
With a callback configured, each task offers quick Approve and Reject; its `action_context`
names the OA request and the approver's open_id, which is how the webhook service turns
Feishu's quick-approval callback into a card_action event (webhooks/feishu_approval.py):
Feishu only lets a task's own approver act on it, and its callback names them by user_id,
which our directory does not hold. The callback's token and key are the app's Verification
Token and Encrypt Key, so the webhook service needs no other secret.

Options (`approval_center:` of the connector, `ApprovalCenterOptionsSchema`):
`approval_code`, `approval_name`, `group_code`, and `action_callback_url` (the webhook
service's `.../webhooks/<connector>?callback=quick_approval`; without it the tasks only
link to the OA). Credentials `action_callback_token` and `action_callback_key` (the same
variables as the webhook's `verification_token` and `encrypt_key`) go with the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_pipeline.config.connector import ConnectorConfig
from sync_pipeline.config.options import OptionsSchema, Text, Url
from sync_pipeline.connectors.base import TargetView, ViewPage
from sync_pipeline.connectors.buttons import feishu_approval as quick
from sync_pipeline.connectors.notify import approval_instance, pending_approvers, rejected
from sync_pipeline.errors import ConfigError
from sync_pipeline.records import WriteRequest, WriteResult, WriteStatus, parse_iso_utc

STREAM = "approval_center"
KIND = "approval_center"
INSTANCE_STATUS = {
    "pending": "PENDING",
    "approved": "APPROVED",
    "rejected": "REJECTED",
    "revoked": "CANCELED",
}
TASKS_PAGE_SIZE = 100
TASKS_MAX_IDS = 20  # instance ids (and approval codes) an external_tasks query may name
CHECK_BATCH = 50  # instances per external_instances/check
GONE = "DELETED"  # the status Feishu removes an external instance by

# (method, path under open-apis/, api bucket, json body) -> the answer's `data`
Call = Callable[[str, str, str, Any], Mapping[str, Any]]


@dataclass(frozen=True)
class ApprovalCenterOptions:
    approval_code: str  # our definition's code
    approval_name: str | None = None  # None: the code
    group_code: str = "sync_pipeline"
    action_callback_url: str | None = None  # None: tasks only link to the OA


class ApprovalCenterOptionsSchema(OptionsSchema):
    BUILDS = ApprovalCenterOptions
    approval_code = Text(required=True)
    approval_name = Text()
    group_code = Text()
    action_callback_url = Url()


@dataclass(frozen=True)
class CenterConfig:
    approval_code: str
    approval_name: str
    group_code: str
    callback_url: str | None
    callback_token: str | None
    callback_key: str | None


def center_config(
    config: ConnectorConfig, option: ApprovalCenterOptions | None
) -> CenterConfig | None:
    """The connector's `approval_center` option with the credentials it names, or None when
    it has none."""
    if option is None:
        return None
    url = option.action_callback_url
    secrets = {k: config.credentials.get(f"action_callback_{k}") for k in ("token", "key")}
    if url and secrets["token"] is None:
        problem = "expected credentials action_callback_token with action_callback_url"
        where = f"{config.name}.options.approval_center"
        raise ConfigError("connectors.yaml", [(where, problem)])
    return CenterConfig(
        approval_code=option.approval_code,
        approval_name=option.approval_name or option.approval_code,
        group_code=option.group_code,
        callback_url=url,
        callback_token=secrets["token"].reveal() if secrets["token"] else None,
        callback_key=secrets["key"].reveal() if secrets["key"] else None,
    )


class ApprovalCenter:
    """Writes of stream "approval_center" for one Feishu app."""

    def __init__(self, center: CenterConfig, call: Call) -> None:
        self.center = center
        self._call = call
        self._defined = False

    def write(self, request: WriteRequest) -> WriteResult:
        content, problem = approval_instance(
            request, "an approval center instance", INSTANCE_STATUS
        )
        if problem:
            return rejected(request, problem)
        self._define()
        instance_id = request.source_id
        held = self._pending_tasks(instance_id) if request.target_id else None
        body = self._instance(instance_id, content, held)
        self._call("POST", "approval/v4/external_instances", "approval/v4/external_instances", body)
        return WriteResult(
            request.effect_key,
            WriteStatus.DONE,
            instance_id,
            extra={"instance_id": instance_id, "approval_code": self.center.approval_code},
        )

    # -- reading back (reconciliation) ---------------------------------------------------------
    def expected_view(self, request: WriteRequest) -> TargetView | None:
        """The instance a write of `request` leaves: its status and whose tasks are open."""
        content, problem = approval_instance(
            request, "an approval center instance", INSTANCE_STATUS
        )
        if problem:
            return None
        status = INSTANCE_STATUS[str(content["status"])]
        return _view(request.source_id, status, pending_approvers(content))

    def suspects(self, requests: Sequence[WriteRequest]) -> set[str]:
        """Feishu's own check: the instances whose update time differs from the one these
        writes pushed, or that it does not hold (an instance edited or removed by someone
        else gets a new update time)."""
        entries = []
        for request in requests:
            content = request.notification.content
            stamp = content.get("updated_at") or content.get("created_at")
            at = str(_ms(str(stamp))) if stamp else "0"
            entries.append({"instance_id": request.source_id, "update_time": at})
        differ: set[str] = set()
        for start in range(0, len(entries), CHECK_BATCH):
            data = self._call(
                "POST",
                "approval/v4/external_instances/check",
                "approval/v4/external_instances/check",
                {"instances": entries[start : start + CHECK_BATCH]},
            )
            differ |= {
                str(item["instance_id"])
                for item in data.get("diff_instances") or []
                if isinstance(item, Mapping) and item.get("instance_id")
            }
        return differ

    def read_back(self, instance_ids: Sequence[str]) -> dict[str, TargetView]:
        """The instances Feishu holds, by id (a DELETED one is not there)."""
        found: dict[str, TargetView] = {}
        for start in range(0, len(instance_ids), TASKS_MAX_IDS):
            body = {"instance_ids": list(instance_ids[start : start + TASKS_MAX_IDS])}
            token: str | None = None
            while True:
                page = self._tasks_page(body, token, TASKS_PAGE_SIZE)
                found.update((view.target_id, view) for view in page.views)
                if page.next_token is None:
                    break
                token = page.next_token
        return found

    def list_back(self, page_token: str | None, limit: int) -> ViewPage:
        """One page of the instances of our definition (DELETED ones left out)."""
        return self._tasks_page({"approval_codes": [self.center.approval_code]}, page_token, limit)

    def remove_back(self, instance_id: str, request: WriteRequest) -> WriteResult:
        """An instance of our definition that no OA request made, removed as Feishu removes
        one: status DELETED (UPDATE mode: nothing else of it is touched)."""
        self._define()
        at = _ms(str(request.notification.content.get("at") or "1970-01-01T00:00:00Z"))
        body = {
            "approval_code": self.center.approval_code,
            "instance_id": instance_id,
            "status": GONE,
            "update_mode": "UPDATE",
            "update_time": at,
        }
        self._call("POST", "approval/v4/external_instances", "approval/v4/external_instances", body)
        return WriteResult(request.effect_key, WriteStatus.DONE, instance_id)

    def _tasks_page(self, body: Mapping[str, Any], token: str | None, limit: int) -> ViewPage:
        path = f"approval/v4/external_tasks?page_size={max(1, min(limit, 500))}"
        if token:
            path += f"&page_token={token}"
        data = self._call("GET", path, "approval/v4/external_tasks", dict(body))
        views = tuple(
            _view(
                str(item["instance_id"]),
                str(item.get("status")),
                [
                    str(task["id"]).rsplit("/", 1)[-1]
                    for task in item.get("tasks") or []
                    if isinstance(task, Mapping) and task.get("status") == "PENDING"
                ],
            )
            for item in data.get("data") or []
            if isinstance(item, Mapping) and item.get("instance_id") and item.get("status") != GONE
        )
        more = bool(data.get("has_more")) and bool(data.get("page_token"))
        return ViewPage(views, str(data["page_token"]) if more else None)

    # -- calls ---------------------------------------------------------------------------------
    def _define(self) -> None:
        """Create or replace our definition, once per process (a create is an upsert)."""
        if self._defined:
            return
        center = self.center
        external: dict[str, Any] = {
            "biz_name": center.approval_name,
            "support_pc": True,
            "support_mobile": True,
            "support_batch_read": False,
            "enable_mark_readed": False,
            "enable_quick_operate": center.callback_url is not None,
        }
        if center.callback_url:
            external["action_callback_url"] = center.callback_url
            external["action_callback_token"] = center.callback_token
            if center.callback_key:
                external["action_callback_key"] = center.callback_key
        body = {
            "approval_name": center.approval_name,
            "approval_code": center.approval_code,
            "group_code": center.group_code,
            "group_name": center.approval_name,
            "external": external,
            "viewers": [{"viewer_type": "TENANT"}],
        }
        self._call("POST", "approval/v4/external_approvals", "approval/v4/external_approvals", body)
        self._defined = True

    def _pending_tasks(self, instance_id: str) -> list[str]:
        """The ids of the instance's tasks Feishu holds as PENDING now."""
        data = self._call(
            "GET",
            f"approval/v4/external_tasks?page_size={TASKS_PAGE_SIZE}",
            "approval/v4/external_tasks",
            {"instance_ids": [instance_id], "status": "PENDING"},
        )
        return [
            str(task["id"])
            for item in data.get("data") or []
            if isinstance(item, Mapping) and item.get("instance_id") == instance_id
            for task in item.get("tasks") or []
            if isinstance(task, Mapping) and task.get("status") == "PENDING"
        ]

    # -- the instance --------------------------------------------------------------------------
    def _instance(
        self, instance_id: str, content: Mapping[str, Any], held: Sequence[str] | None
    ) -> dict[str, Any]:
        """The push: REPLACE the first time (`held` None), else UPDATE with the closes."""
        status = str(content["status"])
        at = _ms(str(content.get("updated_at") or content["created_at"]))
        links = {"pc_link": str(content["url"]), "mobile_link": str(content["url"])}
        node = str(content.get("node") or "-")
        approvers = pending_approvers(content)
        tasks = [self._open_task(instance_id, node, a, content, links, at) for a in approvers]
        wanted = {t["task_id"] for t in tasks}
        for task_id in held or ():
            if task_id not in wanted:
                tasks.append(_closed_task(task_id, content, links, at))
        form = content.get("form")
        return {
            "approval_code": self.center.approval_code,
            "instance_id": instance_id,
            "status": INSTANCE_STATUS.get(status, "HIDDEN"),
            "links": links,
            "title": str(content.get("title") or instance_id),
            "form": [
                {"name": str(k), "value": "" if v is None else str(v)}
                for k, v in (form.items() if isinstance(form, Mapping) else ())
            ],
            "open_id": str(content["applicant"]),
            "start_time": _ms(str(content["created_at"])),
            "end_time": 0 if status == "pending" else at,
            "update_time": at,
            "update_mode": "REPLACE" if held is None else "UPDATE",
            "task_list": tasks,
        }

    def _open_task(
        self,
        instance_id: str,
        node: str,
        approver: str,
        content: Mapping[str, Any],
        links: Mapping[str, str],
        at: int,
    ) -> dict[str, Any]:
        task: dict[str, Any] = {
            "task_id": f"{node}/{approver}",
            "open_id": approver,
            "title": str(content.get("title") or instance_id),
            "links": dict(links),
            "status": "PENDING",
            "create_time": at,
            "end_time": 0,
            "update_time": at,
            "node_id": node,
        }
        if self.center.callback_url:
            task["action_context"] = quick.encode(quick.QuickContext(instance_id, approver))
            task["action_configs"] = [dict(a) for a in quick.QUICK_ACTIONS]
        return task


def _closed_task(
    task_id: str, content: Mapping[str, Any], links: Mapping[str, str], at: int
) -> dict[str, Any]:
    """A task pending until now, closed: decided by its approver if they acted last."""
    approver = task_id.rsplit("/", 1)[-1]
    status = "DONE"
    if approver == content.get("last_operator"):
        status = {"rejected": "REJECTED", "revoked": "DONE"}.get(str(content["status"]), "APPROVED")
    return {
        "task_id": task_id,
        "open_id": approver,
        "links": dict(links),
        "status": status,
        "end_time": at,
        "update_time": at,
    }


def _view(instance_id: str, status: str, open_for: Sequence[str]) -> TargetView:
    return TargetView(instance_id, (("status", status), ("open_tasks", ",".join(sorted(open_for)))))


def _ms(iso: str) -> int:
    return int(parse_iso_utc(iso).timestamp() * 1000)
