"""DingTalk contacts (old API, `/topapi/v2/department/...`, `/topapi/v2/user/...`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.dingtalk.base import PLATFORM, DingTalkBase, OapiError


class Contacts(DingTalkBase):
    """Departments and users."""

    def _department(self, args: Mapping[str, Any]) -> int:
        dept = int(args.get("dept_id", 1) or 1)
        if self.store.get(PLATFORM, "department", str(dept)) is None:
            raise OapiError(60003, "部门不存在")
        return dept

    def department_listsub(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        dept = self._department(args)
        children = self.store.list(PLATFORM, "department", equals={"parent_id": dept})
        return {"result": children}

    def user_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        dept = self._department(args)
        cursor = int(args.get("cursor", 0) or 0)
        size = int(args.get("size", 0) or 0)
        if not 0 < size <= 100:
            raise OapiError(40035, "size must be between 1 and 100")
        members = [u for u in self.store.list(PLATFORM, "user") if dept in u["dept_id_list"]]
        page = members[cursor : cursor + size]
        result: dict[str, Any] = {"has_more": cursor + size < len(members), "list": page}
        if result["has_more"]:
            result["next_cursor"] = cursor + size
        return {"result": result}

    def user_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", str(args.get("userid", "")))
        if user is None:
            raise OapiError(60121, "找不到该用户")
        return {"result": user}
