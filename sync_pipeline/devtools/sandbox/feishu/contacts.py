"""Feishu contact v3 (`/contact/v3/users...`, `/contact/v3/departments/.../children`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.feishu.base import (
    PLATFORM,
    FeishuBase,
    FeishuError,
    _Caller,
    _param_error,
    _public,
)


class Contacts(FeishuBase):
    """Users and departments."""

    def _department(self, dept_id: str, id_type: str) -> dict[str, Any] | None:
        if id_type == "department_id":
            return self.store.get(PLATFORM, "department", dept_id)
        found = self.store.list(
            PLATFORM, "department", equals={"open_department_id": dept_id}, limit=1
        )
        return found[0] if found else None

    def _custom_dept_id(self, request: Request, dept_id: str) -> str:
        id_type = request.query_params.get("department_id_type", "open_department_id")
        if id_type not in ("open_department_id", "department_id"):
            raise _param_error("department_id_type must be open_department_id or department_id")
        if dept_id == "0":
            return "0"
        dept = self._department(dept_id, id_type)
        if dept is None:
            raise FeishuError(40003, "internal error: department not found")  # code (unconfirmed)
        return str(dept["department_id"])

    def _find_users_by_department(self, request: Request, caller: _Caller) -> dict[str, Any]:
        dept_id = request.query_params.get("department_id", "")
        if not dept_id:
            raise _param_error("department_id is required")
        custom = self._custom_dept_id(request, dept_id)
        rows, meta = self._offset_page(request, "user", {"_dept": custom}, 10, 50)
        if request.query_params.get("department_id_type") == "department_id":
            for user in rows:
                user["department_ids"] = [user["_dept"]]
        return {"items": [_public(u) for u in rows], **meta}

    def _department_children(self, request: Request, caller: _Caller) -> dict[str, Any]:
        custom = self._custom_dept_id(request, request.path_params["department_id"])
        children = self._children_of([custom])
        if request.query_params.get("fetch_child") == "true":
            frontier = children
            while frontier:
                frontier = self._children_of([d["department_id"] for d in frontier])
                children += frontier
        page, meta = self._slice(request, children, 10, 50)
        by_type = request.query_params.get("department_id_type", "open_department_id")
        items = []
        for dept in page:
            item = _public(dept)
            if by_type == "open_department_id":
                item["parent_department_id"] = dept["_parent_open"]
            items.append(item)
        return {"items": items, **meta}

    def _children_of(self, parents: Sequence[str]) -> list[dict[str, Any]]:
        return self.store.list(
            PLATFORM,
            "department",
            time_field="created_ms",
            one_of={"parent_department_id": list(parents)},
        )
