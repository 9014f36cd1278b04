"""Third-party ("external") approvals, the approval center of an OA that keeps its own flow
(lark-oapi `api/approval/v4/model/external_*`, open.feishu.cn "三方审批定义 / 实例 / 任务",
"三方快捷审批回调"). Confirmed from the SDK models and the docs:
- `POST /approval/v4/external_approvals` creates, or with a known `approval_code` replaces, a
  definition {approval_name, approval_code, group_code, group_name, description, external{
  biz_name, support_pc, support_mobile, enable_quick_operate, action_callback_url,
  action_callback_token, action_callback_key, ...}, viewers, i18n_resources, managers};
  answers data.approval_code. `GET /approval/v4/external_approvals/:approval_code` reads it.
- `POST /approval/v4/external_instances` syncs one instance by the caller's own `instance_id`
  (an upsert): status PENDING | APPROVED | REJECTED | CANCELED | DELETED | HIDDEN | TERMINATED,
  links{pc_link, mobile_link} (one at least), user_id or open_id, times in ms, and
  task_list[]{task_id, user_id | open_id, links, status PENDING | APPROVED | REJECTED |
  TRANSFERRED | DONE, create_time, end_time, update_time, action_context, action_configs[]{
  action_type APPROVE | REJECT | a key, action_name, is_need_reason, is_reason_required}}.
  update_mode REPLACE (the default: the push is the whole truth, tasks and CCs not in it are
  removed) or UPDATE (tasks and CCs are added or updated by id, none removed). Answers
  data.data = the instance as stored. Ids of instance, tasks and CCs must differ from each
  other. 1390014 "Do not synchronize the same approval instance for a short period of time!"
  exists; how short is (unconfirmed), so it only fires with `external_sync_min_interval_ms`.
- `POST /approval/v4/external_instances/check` {instances[]{instance_id, update_time, tasks[]{
  task_id, update_time}}} answers diff_instances: those unknown here or whose times differ.
- `GET /approval/v4/external_tasks` (a GET with a JSON body {approval_codes, instance_ids,
  user_ids, status}, each list at most 20; page_size default 50, at most 500) answers data[]{
  instance_id, approval_id, approval_code, status, update_time, tasks[]{id, status,
  update_time}}, page_token, has_more.
- The quick-approval callback: when an approver presses Approve / Reject on a task with
  action_configs, Feishu POSTs {action_type, action_context, user_id (the presser's user_id),
  approval_code, instance_id, task_id, reason, token = action_callback_token} to the
  definition's action_callback_url; with an action_callback_key the body is {"encrypt": ...},
  the same AES-256-CBC scheme as events (key sha256(action_callback_key), b64(iv || ct)). No
  signature header and no timestamp. Timeout 10 s (5 s in the English page). Feishu does not
  change the task itself: the third party syncs the instance back.
Unconfirmed, and chosen here: the exact codes for an unknown definition (1390002) or a bad
field (1390001); a task or CC user the tenant does not know is refused (1390001); the answer
the callback wants is HTTP 200 `{"code": 0}` (any other code counts as not accepted); an
instance push older than the one held is still applied, as given.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    _public,
)

EXTERNAL_INSTANCE_STATUSES = (
    "PENDING",
    "APPROVED",
    "REJECTED",
    "CANCELED",
    "DELETED",
    "HIDDEN",
    "TERMINATED",
)
EXTERNAL_TASK_STATUSES = ("PENDING", "APPROVED", "REJECTED", "TRANSFERRED", "DONE")
EXTERNAL_TASKS_MAX_IDS = 20  # approval_codes / instance_ids / user_ids per query


class ExternalApprovals(FeishuBase):
    """Third-party approval definitions, instances and tasks."""

    async def _create_external_approval(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        for field in ("approval_name", "approval_code", "group_code"):
            if not isinstance(body.get(field), str) or not body[field]:
                raise _approval_param_error(f"{field} is required")
        external = body.get("external")
        if not isinstance(external, dict):
            raise _approval_param_error("external is required")
        if external.get("support_pc") is False and external.get("support_mobile") is False:
            raise _approval_param_error("support_pc and support_mobile cannot both be false")
        url = external.get("action_callback_url")
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise _approval_param_error("action_callback_url must be an http(s) URL")
        texts = _i18n_texts(body.get("i18n_resources"))
        for field in ("approval_name", "group_name"):
            value = body.get(field)
            if isinstance(value, str) and value.startswith("@i18n@") and value not in texts:
                raise _approval_param_error(f"{field} {value} has no i18n_resources text")
        code = str(body["approval_code"])
        self.store.put(PLATFORM, "external_approval", code, {**body, "_app_id": caller.app_id})
        self.store.record(
            PLATFORM,
            f"POST {API}/approval/v4/external_approvals",
            caller.app_id,
            {**body, "external": _without_secrets(external)},
        )
        return {"approval_code": code}

    def _get_external_approval(self, request: Request, caller: _Caller) -> dict[str, Any]:
        found = self.store.get(PLATFORM, "external_approval", request.path_params["approval_code"])
        if found is None:
            raise FeishuError(1390002, "approval code not found")
        return _public(found)

    async def _sync_external_instance(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        code, instance_id = body.get("approval_code"), body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id:
            raise _approval_param_error("instance_id is required")
        if not isinstance(code, str) or self.store.get(PLATFORM, "external_approval", code) is None:
            raise FeishuError(1390002, "approval code not found")
        mode = body.get("update_mode") or "REPLACE"
        if mode not in ("REPLACE", "UPDATE"):
            raise _approval_param_error("update_mode must be REPLACE or UPDATE")
        held = self.store.get(PLATFORM, "external_instance", instance_id)
        incoming = self._external_instance(body, partial=mode == "UPDATE" and held is not None)
        with self._dedupe_lock:
            held = self.store.get(PLATFORM, "external_instance", instance_id)
            self._check_sync_interval(held)
            if mode == "UPDATE" and held is not None:
                incoming = _merge_external(held, incoming)
            _check_unique_ids(incoming)
            incoming["_synced_ms"] = now_ms()
            self.store.put(PLATFORM, "external_instance", instance_id, incoming)
            self.store.record(
                PLATFORM,
                f"POST {API}/approval/v4/external_instances",
                caller.app_id,
                dict(body),
            )
        return {"data": _public(incoming)}

    def _check_sync_interval(self, held: Mapping[str, Any] | None) -> None:
        interval = self._int_setting("external_sync_min_interval_ms", 0)
        if held is not None and interval and now_ms() - int(held["_synced_ms"]) < interval:
            raise FeishuError(
                1390014,
                "Do not synchronize the same approval instance for a short period of time!",
            )

    def _external_instance(self, body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
        """The pushed instance, checked; an UPDATE of a known instance may leave fields out."""
        status = body.get("status")
        if (status is not None or not partial) and status not in EXTERNAL_INSTANCE_STATUSES:
            raise _approval_param_error(f"status must be one of {EXTERNAL_INSTANCE_STATUSES}")
        if not partial:
            _check_links(body.get("links"), "links")
            self._external_user(body, "instance")
        instance = {k: v for k, v in body.items() if k not in ("task_list", "cc_list")}
        if body.get("user_id") or body.get("open_id"):
            instance.update(self._external_user(body, "instance"))
        for field in ("start_time", "end_time", "update_time"):
            if field in body:
                instance[field] = _int64(body[field], field)
        tasks = body.get("task_list") or []
        if not isinstance(tasks, list):
            raise _approval_param_error("task_list must be a list")
        instance["task_list"] = [self._external_task(t) for t in tasks]
        ccs = body.get("cc_list") or []
        if not isinstance(ccs, list):
            raise _approval_param_error("cc_list must be a list")
        instance["cc_list"] = [
            {**cc, **self._external_user(cc, "cc")} for cc in ccs if isinstance(cc, dict)
        ]
        return instance

    def _external_task(self, task: Any) -> dict[str, Any]:
        if not isinstance(task, dict) or not task.get("task_id"):
            raise _approval_param_error("task_list[].task_id is required")
        if task.get("status") not in EXTERNAL_TASK_STATUSES:
            raise _approval_param_error(f"task status must be one of {EXTERNAL_TASK_STATUSES}")
        _check_links(task.get("links"), "task_list[].links")
        configs = task.get("action_configs") or []
        if not isinstance(configs, list) or not all(
            isinstance(c, dict) and c.get("action_type") for c in configs
        ):
            raise _approval_param_error("action_configs[].action_type is required")
        shown = {**task, **self._external_user(task, "task")}
        for field in ("create_time", "end_time", "update_time"):
            if field in task:
                shown[field] = _int64(task[field], f"task_list[].{field}")
        return shown

    def _external_user(self, entity: Mapping[str, Any], what: str) -> dict[str, str]:
        """The user an instance, task or CC names (open_id or user_id), as both ids."""
        user = None
        if entity.get("open_id"):
            user = self._user_by("open_id", str(entity["open_id"]))
        elif entity.get("user_id"):
            user = self._user_by("user_id", str(entity["user_id"]))
        else:
            raise _approval_param_error(f"the {what} needs a user_id or an open_id")
        if user is None:
            raise _approval_param_error(f"the {what}'s user is not in this tenant")
        return {"user_id": user["user_id"], "open_id": user["open_id"]}

    async def _check_external_instances(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        wanted = body.get("instances")
        if not isinstance(wanted, list) or not wanted:
            raise _approval_param_error("instances is required")
        differ = []
        for entry in wanted:
            if not isinstance(entry, dict) or not entry.get("instance_id"):
                raise _approval_param_error("instances[].instance_id is required")
            held = self.store.get(PLATFORM, "external_instance", str(entry["instance_id"]))
            if held is None or not _same_times(held, entry):
                differ.append(entry)
        return {"diff_instances": differ}

    async def _list_external_tasks(self, request: Request, caller: _Caller) -> dict[str, Any]:
        body = await self._json(request)
        filters: dict[str, set[str]] = {}
        for field in ("approval_codes", "instance_ids", "user_ids"):
            values = body.get(field)
            if values is None:
                continue
            if not isinstance(values, list) or len(values) > EXTERNAL_TASKS_MAX_IDS:
                raise _approval_param_error(f"{field} must hold at most 20 ids")
            filters[field] = {str(v) for v in values}
        status = body.get("status")
        if status is not None and status not in EXTERNAL_TASK_STATUSES:
            raise _approval_param_error(f"status must be one of {EXTERNAL_TASK_STATUSES}")
        rows = (
            [
                found
                for i in sorted(filters["instance_ids"])
                if (found := self.store.get(PLATFORM, "external_instance", i)) is not None
            ]
            if "instance_ids" in filters
            else self.store.list(PLATFORM, "external_instance", time_field="created_ms")
        )
        items = []
        for instance in rows:
            if (
                "approval_codes" in filters
                and instance["approval_code"] not in filters["approval_codes"]
            ):
                continue
            tasks = [
                {
                    "id": t["task_id"],
                    "status": t["status"],
                    "update_time": str(t.get("update_time", 0)),
                }
                for t in instance["task_list"]
                if ("user_ids" not in filters or t["user_id"] in filters["user_ids"])
                and (status is None or t["status"] == status)
            ]
            if tasks or not ({"user_ids"} & set(filters) or status):
                items.append(
                    {
                        "instance_id": instance["instance_id"],
                        "approval_id": _digits(instance["approval_code"]),
                        "approval_code": instance["approval_code"],
                        "status": instance["status"],
                        "update_time": str(instance.get("update_time", 0)),
                        "tasks": tasks,
                    }
                )
        page, meta = self._slice(request, items, 50, 500)
        return {"data": page, **meta}


def _i18n_texts(resources: Any) -> set[str]:
    """The i18n keys a definition's i18n_resources give texts for."""
    keys: set[str] = set()
    for resource in resources if isinstance(resources, list) else []:
        texts = resource.get("texts") if isinstance(resource, dict) else None
        for text in texts if isinstance(texts, list) else []:
            if isinstance(text, dict) and text.get("key"):
                keys.add(str(text["key"]))
    return keys


def _without_secrets(external: Mapping[str, Any]) -> dict[str, Any]:
    """A definition's `external` for the ledger: the callback token and key left out."""
    hidden = ("action_callback_token", "action_callback_key")
    return {k: ("***" if k in hidden else v) for k, v in external.items()}


def _check_links(links: Any, where: str) -> None:
    if not isinstance(links, dict) or not (links.get("pc_link") or links.get("mobile_link")):
        raise _approval_param_error(f"{where} needs a pc_link or a mobile_link")


def _int64(value: Any, field: str) -> int:
    """An int64 field, sent as a number or a string of digits."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _approval_param_error(f"{field} must be an int64 in ms") from None


def _merge_external(held: Mapping[str, Any], pushed: Mapping[str, Any]) -> dict[str, Any]:
    """update_mode UPDATE: fields given replace, tasks and CCs are added or updated by id."""
    merged = {**held, **{k: v for k, v in pushed.items() if k not in ("task_list", "cc_list")}}
    for field, key in (("task_list", "task_id"), ("cc_list", "cc_id")):
        by_id = {str(item[key]): item for item in held.get(field) or []}
        for item in pushed.get(field) or []:
            by_id[str(item[key])] = {**by_id.get(str(item[key]), {}), **item}
        merged[field] = list(by_id.values())
    return merged


def _check_unique_ids(instance: Mapping[str, Any]) -> None:
    """Instance, task and CC ids must all differ, or the approval center hides the data."""
    ids = [str(instance["instance_id"])]
    ids += [str(t["task_id"]) for t in instance.get("task_list") or []]
    ids += [str(c.get("cc_id")) for c in instance.get("cc_list") or []]
    if len(ids) != len(set(ids)):
        raise _approval_param_error("instance, task and cc ids must be unique in an instance")


def _same_times(held: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether an external_instances/check entry's times are the ones held."""
    try:
        if int(entry.get("update_time", -1)) != int(held.get("update_time", 0)):
            return False
        tasks = {str(t["task_id"]): int(t.get("update_time", 0)) for t in held["task_list"]}
        return all(
            tasks.get(str(t.get("task_id"))) == int(t.get("update_time", -1))
            for t in entry.get("tasks") or []
        )
    except (TypeError, ValueError):
        raise _approval_param_error("update_time must be an int64 in ms") from None
