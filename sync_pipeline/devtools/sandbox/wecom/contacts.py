"""WeCom contacts (通讯录, `/cgi-bin/user/...`, `/cgi-bin/department/...`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.wecom.base import PLATFORM, WeComBase, WeComError, as_int


class Contacts(WeComBase):
    """Departments and users."""

    def _department_tree(self, root: int | None) -> list[dict[str, Any]]:
        departments = self.store.list(PLATFORM, "department")
        if root is None:
            return departments
        if not any(d["id"] == root for d in departments):
            raise WeComError(60003, "department not found")
        keep, frontier = {root}, {root}
        while frontier:
            frontier = {d["id"] for d in departments if d["parentid"] in frontier} - keep
            keep |= frontier
        return [d for d in departments if d["id"] in keep]

    def department_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        root = as_int(args["id"], "id", 60003) if args.get("id") else None
        return {"department": self._department_tree(root)}

    def _users_in(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not args.get("department_id"):
            raise WeComError(60003, "department_id missing")
        root = as_int(args["department_id"], "department_id", 60003)
        fetch_child = str(args.get("fetch_child", "0")) == "1"
        tree = self._department_tree(root)  # an unknown department is an error either way
        ids = {d["id"] for d in tree} if fetch_child else {root}
        users = self.store.list(PLATFORM, "user")
        return [self._public(u) for u in users if set(u["department"]) & ids]

    def user_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"userlist": self._users_in(args)}

    def user_simplelist(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        keys = ("userid", "name", "department", "open_userid")
        return {"userlist": [{k: u[k] for k in keys} for u in self._users_in(args)]}

    def user_get(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        user = self.store.get(PLATFORM, "user", str(args.get("userid", "")))
        if user is None:
            raise WeComError(60111, "userid not found")
        return self._public(user)

    def user_list_id(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        offset = self._offset(args.get("cursor", ""), 50100)
        limit = as_int(args.get("limit", 10000), "limit", 40058)
        if not 0 < limit <= 10000:
            raise WeComError(40058, "limit must be between 1 and 10000")
        rows = self.store.list(PLATFORM, "user", offset=offset, limit=limit + 1)
        page = rows[:limit]
        dept_user = [
            {"userid": u["userid"], "department": d} for u in page for d in u["department"]
        ]
        more = len(rows) > limit
        return {"next_cursor": self._cursor(offset + limit) if more else "", "dept_user": dept_user}
