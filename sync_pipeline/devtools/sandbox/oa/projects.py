"""Sandbox-documented project progress (`/api/proj/...`): projects, progress records and
their comments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.core import now_ms
from sync_pipeline.devtools.sandbox.oa.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PLATFORM,
    Call,
    OABase,
    Refused,
    _floor_s,
    _ledger_params,
    _success,
    fmt_time,
    parse_time,
)


class Projects(OABase):
    """Projects, progress records and comments."""

    def _projects(self, call: Call) -> Response:
        return _success(self.store.list(PLATFORM, "project"))

    def _progress_list(self, call: Call) -> Response:
        equals = {"projectId": call.params["projectId"]} if call.params.get("projectId") else {}
        window = _window(call.params.get("modifiedFrom", ""), call.params.get("modifiedTo", ""))
        page_no = max(1, call.int_param("pageNo", 1))
        size = call.int_param("pageSize", DEFAULT_PAGE_SIZE)
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        from_ms, to_ms = window
        total = self.store.count(PLATFORM, "progress", equals=equals, from_ms=from_ms, to_ms=to_ms)
        rows = self.store.list(
            PLATFORM,
            "progress",
            equals=equals,
            from_ms=from_ms,
            to_ms=to_ms,
            offset=(page_no - 1) * size,
            limit=size,
        )
        return _success({"total": total, "list": [_progress_out(r) for r in rows]})

    def _progress_save(self, call: Call) -> Response:
        """Create (no recordId) or update a record; the acting user is its author."""
        at = _floor_s(now_ms())
        record_id = call.params.get("recordId", "").strip()
        try:
            percent = int(call.params.get("percent", "0") or "0")
        except ValueError:
            raise Refused("PARAM_ERROR", "percent must be an integer 0..100") from None
        if not 0 <= percent <= 100:
            raise Refused("PARAM_ERROR", "percent must be an integer 0..100")
        with self._lock:
            if record_id:
                body = self.store.get(PLATFORM, "progress", record_id)
                if body is None:
                    raise Refused("PARAM_ERROR", f"recordId {record_id} does not exist")
            else:
                project_id = call.required("projectId")
                if self.store.get(PLATFORM, "project", project_id) is None:
                    raise Refused("PARAM_ERROR", f"projectId {project_id} does not exist")
                number = int(self.store.setting(PLATFORM, "next_progress_no", "1") or "1")
                self.store.set_setting(PLATFORM, "next_progress_no", str(number + 1))
                record_id = f"{project_id}-N{number:05d}"
                body = {
                    "recordId": record_id,
                    "projectId": project_id,
                    "authorId": call.user,
                    "createTime": at,
                    "comments": [],
                }
            body.update(percent=percent, content=call.params.get("content", ""), lastModifyTime=at)
            self._put_progress(call, body)
        return _success({"recordId": record_id})

    def _progress_comment(self, call: Call) -> Response:
        record_id = call.required("recordId")
        content = call.required("content")
        at = _floor_s(now_ms())
        with self._lock:
            body = self.store.get(PLATFORM, "progress", record_id)
            if body is None:
                raise Refused("PARAM_ERROR", f"recordId {record_id} does not exist")
            comment_id = f"{record_id}-C{len(body['comments']) + 1:03d}"
            body["comments"].append(
                {
                    "commentId": comment_id,
                    "authorId": call.user,
                    "content": content,
                    "createTime": at,
                }
            )
            body["lastModifyTime"] = at
            self._put_progress(call, body)
        return _success({"commentId": comment_id})

    def _put_progress(self, call: Call, body: dict[str, Any]) -> None:
        self.store.put(
            PLATFORM,
            "progress",
            body["recordId"],
            body,
            created_ms=body["createTime"],
            updated_ms=body["lastModifyTime"],
        )
        self.store.record(PLATFORM, call.path, call.user, _ledger_params(call), None)


def _window(from_text: str, to_text: str) -> tuple[int | None, int | None]:
    try:
        from_ms = parse_time(from_text) if from_text.strip() else None
        to_ms = parse_time(to_text) if to_text.strip() else None
    except ValueError as exc:
        raise Refused("PARAM_ERROR", f"time must be yyyy-MM-dd HH:mm:ss: {exc}") from None
    return from_ms, to_ms


def _progress_out(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "createTime": fmt_time(body["createTime"]),
        "lastModifyTime": fmt_time(body["lastModifyTime"]),
        "comments": [{**c, "createTime": fmt_time(c["createTime"])} for c in body["comments"]],
    }
