"""Seeyon organisation model (组织模型): members and departments of the one account (单位).

Org lists answer a bare JSON array. `pageNo`/`pageSize` slice it when given (the end of the
list is a page shorter than `pageSize`, or empty); without them the whole list comes back.
Lists are ordered by sortId, then id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.seeyon.base import (
    ACCOUNT_ID,
    NOT_FOUND,
    PLATFORM,
    Call,
    JSONResponse,
    Refused,
    SeeyonBase,
)


def member_out(member: Mapping[str, Any]) -> dict[str, Any]:
    """A member as the org API shows it (the store keeps exactly that)."""
    return dict(member)


class Org(SeeyonBase):
    """orgMembers, orgMember, orgDepartments, orgDepartment."""

    def _sliced(self, call: Call, rows: list[dict[str, Any]]) -> Response:
        rows.sort(key=lambda r: (r.get("sortId", 0), r["id"]))
        if "pageNo" in call.params or "pageSize" in call.params:
            number, size = call.page()
            rows = rows[(number - 1) * size : number * size]
        return JSONResponse(rows)

    def _account(self, call: Call) -> None:
        if call.id_path("accountId") != ACCOUNT_ID:
            raise Refused(NOT_FOUND, f"orgAccount {call.path_params['accountId']} 不存在")

    def _members(self, call: Call) -> Response:
        self._account(call)
        return self._sliced(call, self.store.list(PLATFORM, "member"))

    def _members_by_code(self, call: Call) -> Response:
        code = call.path_params.get("code", "")
        return self._sliced(call, self.store.list(PLATFORM, "member", equals={"code": code}))

    def _member(self, call: Call) -> Response:
        found = self.member(call.id_path("id"))
        if found is None:
            raise Refused(NOT_FOUND, f"orgMember {call.path_params['id']} 不存在")
        return JSONResponse(member_out(found))

    def _departments(self, call: Call) -> Response:
        self._account(call)
        return self._sliced(call, self.store.list(PLATFORM, "department"))

    def _department(self, call: Call) -> Response:
        found = self.store.get(PLATFORM, "department", str(call.id_path("id")))
        if found is None:
            raise Refused(NOT_FOUND, f"orgDepartment {call.path_params['id']} 不存在")
        return JSONResponse(found)
