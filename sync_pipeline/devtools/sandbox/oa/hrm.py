"""E9 HRM (`/api/hrm/resful/...`, E9's own spelling): users and departments, paged."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.oa.base import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PLATFORM,
    Call,
    JSONResponse,
    OABase,
)


class Hrm(OABase):
    """HRM users and departments."""

    def _hrm_page(self, call: Call, kind: str, filters: Mapping[str, str]) -> Response:
        """HRM answers code "1" with data, or code "0" with errMsg (unconfirmed)."""
        raw = call.params.get("params", "")
        try:
            params = json.loads(raw) if raw.strip() else {}
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return JSONResponse({"code": "0", "errMsg": {"msg": "params must be a JSON object"}})
        try:
            page = max(1, int(params.get("curpage") or 1))
            size = int(params.get("pagesize") or DEFAULT_PAGE_SIZE)
        except (TypeError, ValueError):
            return JSONResponse({"code": "0", "errMsg": {"msg": "curpage/pagesize: integers"}})
        size = DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)
        equals = {field: str(params[key]) for key, field in filters.items() if params.get(key)}
        total = self.store.count(PLATFORM, kind, equals=equals)
        rows = self.store.list(PLATFORM, kind, equals=equals, offset=(page - 1) * size, limit=size)
        data = {"dataList": rows, "totalSize": total, "page": page, "pagesize": size}
        return JSONResponse({"code": "1", "data": data})

    def _hrm_users(self, call: Call) -> Response:
        filters = {
            "workcode": "workcode",
            "loginid": "loginid",
            "departmentid": "departmentid",
            "id": "id",
        }
        return self._hrm_page(call, "user", filters)

    def _hrm_departments(self, call: Call) -> Response:
        filters = {"departmentcode": "departmentcode", "id": "id"}
        return self._hrm_page(call, "department", filters)
